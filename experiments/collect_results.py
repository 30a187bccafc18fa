"""Collect the reference runs into results JSON + markdown + PNG plots.

    python experiments/collect_results.py

Reads runs/ref/* (see run_all.sh); writes
  benchmarks/results/reference/results.json, results.md, dice_vs_label_fraction.png, recon/<name>.png
  experiments/results/<run>.json (the per-run record committed next to the configs)
"""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs/ref"
OUT = ROOT / "benchmarks/results/reference"
EXP = ROOT / "experiments/results"
FRACS = (("020", 0.2), ("050", 0.5), ("100", 1.0))
PAPER = {"btcv_label_efficiency": {"20": [70.98, 77.84], "40": [75.11, 81.28], "60": [80.73, 84.87],
                                   "80": [84.73, 86.96], "100": [84.86, 87.31]},
         "adrenal": {"PUMIT": [87.8, 81.2], "ResNet-50+3D": [82.8, 74.5], "EVA-02-B": [86.7, 79.5]}}


def wall_seconds(log: Path) -> float | None:
    if not log.is_file():
        return None
    m = re.search(r"^real\s+(\d+)m([\d.]+)s", log.read_text(errors="replace"), re.M)
    return round(int(m.group(1)) * 60 + float(m.group(2)), 1) if m else None


def cpu_seconds(log: Path) -> float | None:
    if not log.is_file():
        return None
    t = log.read_text(errors="replace")
    tot = 0.0
    for key in ("user", "sys"):
        m = re.search(rf"^{key}\s+(\d+)m([\d.]+)s", t, re.M)
        if not m:
            return None
        tot += int(m.group(1)) * 60 + float(m.group(2))
    return round(tot, 1)


def metrics_rows(run: Path) -> list[dict[str, str]]:
    files = sorted(run.glob("logs/csv/*/metrics.csv"))
    rows: list[dict[str, str]] = []
    for f in files:
        with open(f) as fh:
            rows += [{k: v for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]
    return rows


def model_meta(run: Path) -> dict:
    p = run / "model/config.json"
    return json.loads(p.read_text()).get("meta", {}) if p.is_file() else {}


def seg_results() -> dict:
    runs = []
    for arm in ("scratch", "pretrained"):
        for tag, frac in FRACS:
            run = RUNS / f"seg-{arm}-f{tag}"
            rows = [r for r in metrics_rows(run) if "val/dice" in r]
            if not rows:
                continue
            last = rows[-1]
            n_train = len((ROOT / f"experiments/data/hippocampus_train_{tag}.txt").read_text().split())
            train_loss = [float(r["train/loss"]) for r in metrics_rows(run) if "train/loss" in r]
            runs.append({
                "arm": arm, "fraction": frac, "fraction_tag": tag, "n_train": n_train, "n_val": 51,
                "step": int(last["step"]) + 1,
                "dice": {"anterior": float(last["val/dice/label_1"]), "posterior": float(last["val/dice/label_2"]),
                         "mean": float(last["val/dice"])},
                "final_train_loss": train_loss[-1] if train_loss else None,
                "wall_s": wall_seconds(RUNS / f"seg-{arm}-f{tag}.log"), "cpu_s": cpu_seconds(RUNS / f"seg-{arm}-f{tag}.log"),
                "run": f"runs/ref/seg-{arm}-f{tag}",
            })
    return {"dataset": "MSD Task04 Hippocampus (208 labeled cases available here)",
            "validation": "51 cases: seeded hash split of the data pipeline (seed 0, val fraction 0.2); "
                          "experiments/data/hippocampus_val.txt",
            "metric": "Dice per class on whole validation volumes (sliding window 32x48x32, overlap 0.5), "
                      "averaged over cases (MONAI compute_dice); last checkpoint (no model selection on validation)",
            "budget": "500 steps, batch 2, AdamW lr 1e-3 wd 0.05, warm-up 25 + cosine to 1 %, grad clip 1.0, seed 0, same for every arm",
            "runs": runs}


def classify_run_metrics(run: Path) -> dict | None:
    """A ``pumit train classify`` run's validation history, its best-validation-AUC epoch with that epoch's val
    metrics, and the test metrics (``None`` where the run logged none)."""
    rows = metrics_rows(run)
    if not rows:
        return None
    val = [r for r in rows if "val/auc" in r]
    test = [r for r in rows if "test/auc" in r]
    best = max(val, key=lambda r: float(r["val/auc"])) if val else None
    return {"val_history": [{"epoch": int(r["epoch"]), "auc": float(r["val/auc"]), "acc": float(r["val/acc"])} for r in val],
            "best_epoch": int(best["epoch"]) if best else None,
            "val": {"auc": float(best["val/auc"]), "acc": float(best["val/acc"])} if best else None,
            "test": {"auc": float(test[-1]["test/auc"]), "acc": float(test[-1]["test/acc"])} if test else None}


def cls_results() -> dict:
    arms = []
    for arm in ("scratch", "pretrained"):
        run = RUNS / f"cls-{arm}"
        m = classify_run_metrics(run)
        if m is None:
            continue
        arms.append({
            "arm": f"SPAD-ViT ({arm})", "val_history": m["val_history"], "best_epoch": m["best_epoch"],
            "val": m["val"], "test": m["test"],
            "wall_s": wall_seconds(RUNS / f"cls-{arm}.log"), "cpu_s": cpu_seconds(RUNS / f"cls-{arm}.log"),
            "crosscheck": json.loads((run / "eval.json").read_text()) if (run / "eval.json").is_file() else None,
            "run": f"runs/ref/cls-{arm}"})
    rn = RUNS / "cls-resnet18/result.json"
    if rn.is_file():
        r = json.loads(rn.read_text())
        arms.append({"arm": "MONAI ResNet-18 3D, widen_factor 0.25 (scratch)", "val_history": r["history"], "best_epoch": r["best_epoch"],
                     "val": r["val"], "test": r["test"], "params": r["params"],
                     "wall_s": wall_seconds(RUNS / "cls-resnet18.log"), "cpu_s": cpu_seconds(RUNS / "cls-resnet18.log"),
                     "run": "runs/ref/cls-resnet18"})
    return {"dataset": "AdrenalMNIST3D 28^3 (MedMNIST v2), official train 1188 / val 98 / test 298",
            "protocol": "8 epochs, batch 32, AdamW lr 5e-4 wd 0.01, warm-up 30 + cosine, input resized to 32^3, seed 0; "
                        "checkpoint with the best validation AUC evaluated once on the test split",
            "arms": arms}


def recon_results(run: str = "recon-eval", tokenizer: str = "runs/ref/tokenizer2/model", sub: str = "recon") -> dict:
    p = RUNS / run / "recon.json"
    if not p.is_file():
        return {}
    items = json.loads(p.read_text())
    if sub:
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    for it in items:
        png = RUNS / run / "montages" / f"{it['name']}.png"
        if sub and png.is_file():
            shutil.copyfile(png, OUT / sub / png.name)
            it["montage"] = f"{sub}/{png.name}"
        it["path"] = str(it["path"]).replace(str(ROOT) + "/", "")
    return {"tokenizer": tokenizer, "metric": "PSNR (dB), peak = the input's value range", "items": items}


def pretrain_results() -> dict:
    out = {}
    for job in ("tokenizer", "mim", "tokenizer2"):
        rows = metrics_rows(RUNS / job)
        meta = model_meta(RUNS / job)
        val = [r for r in rows if any(k.startswith("val/") for k in r)]
        out[job] = {"steps": meta.get("training", {}).get("steps"), "best_metric": meta.get("training", {}).get("best_metric"),
                    "final_val": {k: float(v) for k, v in (val[-1] if val else {}).items() if k.startswith("val/")},
                    "wall_s": wall_seconds(RUNS / f"{job}.log"), "cpu_s": cpu_seconds(RUNS / f"{job}.log"),
                    "data_counts": meta.get("training", {}).get("data", {}).get("counts")}
    return out


def plot_dice(seg: dict) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    for i, key in enumerate(("mean", "anterior", "posterior")):
        ax = fig.add_subplot(1, 3, i + 1)
        for arm, style in (("scratch", "o--"), ("pretrained", "s-")):
            rs = sorted((r for r in seg["runs"] if r["arm"] == arm), key=lambda r: r["fraction"])
            if rs:
                ax.plot([100 * r["fraction"] for r in rs], [r["dice"][key] for r in rs], style, label=arm)
        ax.set_xlabel("% of training cases (157 = 100 %)")
        ax.set_ylabel(f"Dice ({key})")
        ax.set_xticks([20, 50, 100])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("MSD Hippocampus label efficiency (51 validation cases, same 500-step budget)", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "dice_vs_label_fraction.png")


def markdown(res: dict) -> str:
    L = ["# Reference results (CPU, small models)", "",
         "Generated by `experiments/collect_results.py` from the runs of `experiments/run_all.sh` (seed 0). "
         "See `docs/results.md` for the discussion.", ""]
    seg = res["segmentation"]
    L += ["## Label efficiency: MSD Hippocampus segmentation (Dice on 51 validation cases)", "",
          f"Budget: {seg['budget']}. Validation: {seg['validation']}.", "",
          "| training cases | arm | anterior | posterior | mean | wall time (s) |", "|---|---|---|---|---|---|"]
    for r in sorted(seg["runs"], key=lambda r: (r["fraction"], r["arm"])):
        L.append(f"| {int(r['fraction'] * 100)} % ({r['n_train']}) | {r['arm']} | {r['dice']['anterior']:.4f} | "
                 f"{r['dice']['posterior']:.4f} | **{r['dice']['mean']:.4f}** | {r['wall_s']} |")
    L += ["", "![Dice vs label fraction](dice_vs_label_fraction.png)", ""]
    cls = res["classification"]
    L += ["## AdrenalMNIST3D classification (official test split)", "", f"Protocol: {cls['protocol']}.", "",
          "| model | best epoch | val AUC | val ACC | **test AUC** | **test ACC** | wall time (s) |", "|---|---|---|---|---|---|---|"]
    for a in cls["arms"]:
        v, t = a.get("val") or {}, a.get("test") or {}
        L.append(f"| {a['arm']} | {a['best_epoch']} | {v.get('auc', float('nan')):.4f} | {v.get('acc', float('nan')):.4f} | "
                 f"{t.get('auc', float('nan')):.4f} | {t.get('acc', float('nan')):.4f} | {a['wall_s']} |")
    L += ["", "Paper (context only, ViT-B pre-trained on 9M slices, 100 epochs, 160^3 input): PUMIT 87.8 / 81.2, "
          "ResNet-50+3D 82.8 / 74.5, EVA-02-B 86.7 / 79.5 (AUC / ACC, %).", ""]
    rec = res.get("reconstruction") or {}
    rec1 = {it["name"]: it for it in (res.get("reconstruction_stage1") or {}).get("items", [])}
    if rec:
        L += ["## Tokenizer reconstruction (PSNR, dB)", "",
              "Shipped tokenizer = stage 2 (`runs/ref/tokenizer2`); stage 1 (`runs/ref/tokenizer`) is the MIM target.", "",
              "| image | modality | seen in pre-training | PSNR stage 2 (shipped) | PSNR stage 1 (MIM target) | montage |",
              "|---|---|---|---|---|---|"]
        for it in rec["items"]:
            ps = f"{it['psnr_db']:.2f}" if "psnr_db" in it else f"error: {it.get('error')}"
            p1 = rec1.get(it["name"], {}).get("psnr_db")
            mo = f"[png]({it['montage']})" if it.get("montage") else ""
            L.append(f"| {it['name']} | {it['modality']} | {'yes' if it['seen'] else 'no'} | {ps} | "
                     f"{'' if p1 is None else f'{p1:.2f}'} | {mo} |")
        L.append("")
    pre = res.get("pretraining") or {}
    if pre:
        L += ["## Pre-training runs", "", "| job | steps | final validation | wall time (s) | CPU time (s) |", "|---|---|---|---|---|"]
        for job, p in pre.items():
            fv = ", ".join(f"{k} {v:.4f}" for k, v in p["final_val"].items())
            L.append(f"| {job} | {p['steps']} | {fv} | {p['wall_s']} | {p['cpu_s']} |")
        L.append("")
    return "\n".join(L) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    EXP.mkdir(parents=True, exist_ok=True)
    res = {"note": "CPU reference runs, 2 shared cores; small models; seed 0. Not comparable in scale with the paper.",
           "pretraining": pretrain_results(), "segmentation": seg_results(), "classification": cls_results(),
           "reconstruction": recon_results(),
           "reconstruction_stage1": recon_results("recon-eval-stage1", "runs/ref/tokenizer/model", ""),
           "paper_reference": PAPER}
    (OUT / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    (OUT / "results.md").write_text(markdown(res))
    if res["segmentation"]["runs"]:
        plot_dice(res["segmentation"])
    for r in res["segmentation"]["runs"]:
        (EXP / f"seg-{r['arm']}-f{r['fraction_tag']}.json").write_text(json.dumps(r, indent=2) + "\n")
    for a in res["classification"]["arms"]:
        (EXP / f"{a['run'].split('/')[-1]}.json").write_text(json.dumps(a, indent=2) + "\n")
    for job, p in res["pretraining"].items():
        (EXP / f"{job}.json").write_text(json.dumps(p, indent=2) + "\n")
    if res["reconstruction"]:
        (EXP / "reconstruction.json").write_text(json.dumps(res["reconstruction"], indent=2) + "\n")
    if res["reconstruction_stage1"]:
        (EXP / "reconstruction_stage1.json").write_text(json.dumps(res["reconstruction_stage1"], indent=2) + "\n")
    print((OUT / "results.md").read_text())


if __name__ == "__main__":
    main()
