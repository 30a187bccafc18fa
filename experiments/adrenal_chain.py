"""AdrenalMNIST3D classification on the tokenizer-v0.3 chain (issue 10, item 6): every arm with a learning-rate
search at seed 0 (chosen by the best **validation** AUC, never test), then seeds 1 and 2 at the chosen rate (at each
rate of an exact tie: no tie-break).

Arms (the budget of experiments/configs/classify.yaml for all: 8 epochs x 38 steps of batch 32, AdamW, warm-up 30
+ cosine, 28^3 resized to 32^3; the epoch with the best validation AUC is evaluated once on the official test split):

* ``scratch``: SPAD-ViT (tiny, patch 8, embed 96, depth 4) from random weights (``pumit train classify``);
* ``mim3-t01``: the same from the MIM backbone pre-trained against pumit-ref-tokenizer-v0.3.0 with sharpened
  targets (``runs/ref/mim3-t01/model``, experiments/configs/mim_v3.yaml + ``--target-temperature 0.1``);
* ``mim4-t01``: the same against pumit-ref-tokenizer-v0.4.0 (stride 2; ``runs/ref/mim4-t01/model``);
* ``resnet18``: MONAI ResNet-18 3D, ``widen_factor`` 0.25 (experiments/baseline_resnet3d.py, same data pipeline).

    python experiments/adrenal_chain.py --arms scratch mim3-t01 --stage search   # one process per core
    python experiments/adrenal_chain.py --arms resnet18 --stage search
    python experiments/adrenal_chain.py --arms scratch mim3-t01 resnet18 --stage seeds
    python experiments/adrenal_chain.py --table [--update docs/results.md]

Each run is appended to ``experiments/results/cls3-adrenal-ARM.json`` as it ends (written atomically); a run
already there is skipped, so the command can be stopped and restarted. Run folders: ``runs/cls3/ARM-lrLR-sSEED``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from collect_results import classify_run_metrics

from pumit.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
RUNS = ROOT / "runs" / "cls3"
DATA = ROOT.parent / "shared" / "data" / "adrenalmnist3d" / "adrenalmnist3d.npz"
#: pre-trained arm: its MIM backbone (experiments/configs/mim_v3.yaml + --target-temperature 0.1)
BACKBONES = {"mim3-t01": ROOT / "runs" / "ref" / "mim3-t01" / "model",   # against pumit-ref-tokenizer-v0.3.0
             "mim4-t01": ROOT / "runs" / "ref" / "mim4-t01" / "model"}   # against pumit-ref-tokenizer-v0.4.0
LRS = (3e-4, 1e-3, 3e-3)
SEEDS = (1, 2)
#: arm: label in the table
ARMS = {
    "scratch": "SPAD-ViT, from scratch",
    "mim3-t01": "SPAD-ViT, MIM pre-trained (tokenizer v0.3, T = 0.1)",
    "mim4-t01": "SPAD-ViT, MIM pre-trained (tokenizer v0.4, T = 0.1)",
    "resnet18": "MONAI ResNet-18 3D (widen 0.25), from scratch",
}
#: the official test split: 229 of 298 negative
MAJORITY = {"test_acc": 229 / 298, "test_auc": 0.5}
BEGIN, END = "<!-- cls3:begin -->", "<!-- cls3:end -->"


def results_file(arm: str) -> Path:
    return RESULTS / f"cls3-adrenal-{arm}.json"


def load(arm: str) -> list[dict]:
    f = results_file(arm)
    return json.loads(f.read_text())["runs"] if f.is_file() else []


def save(arm: str, runs: list[dict]) -> None:
    atomic_write_text(results_file(arm), json.dumps({"arm": arm, "label": ARMS[arm], "runs": runs}, indent=1) + "\n")


def command(arm: str, lr: float, seed: int, out: Path) -> list[str]:
    py = sys.executable
    if arm == "resnet18":
        return [py, str(ROOT / "experiments" / "baseline_resnet3d.py"), "--data", str(DATA), "--output", str(out),
                "--lr", str(lr), "--seed", str(seed)]
    cmd = [str(Path(py).with_name("pumit")), "train", "classify", "--config", str(ROOT / "experiments/configs/classify.yaml"),
           "--data", str(DATA), "--output", str(out), "--lr", str(lr), "--seed", str(seed), "--register", "false",
           "--progress", "none"]
    if arm in BACKBONES:
        backbone = BACKBONES[arm]
        if not (backbone / "config.json").is_file():
            raise SystemExit(f"adrenal_chain: the MIM backbone {backbone} is missing: train it first "
                             "(experiments/configs/mim_v3.yaml, --target-temperature 0.1)")
        cmd += ["--base-model", str(backbone)]
    return cmd


def read_result(arm: str, out: Path) -> dict:
    """Best-validation-AUC epoch, its val metrics and the test metrics of one finished run."""
    if arm == "resnet18":
        r = json.loads((out / "result.json").read_text())
        hist = [{"epoch": h["epoch"], "auc": h["val_auc"], "acc": h["val_acc"]} for h in r["history"]]
        return {"best_epoch": r["best_epoch"], "val": r["val"], "test": r["test"], "val_history": hist}
    m = classify_run_metrics(out)
    if m is None or m["val"] is None or m["test"] is None:
        raise RuntimeError(f"adrenal_chain: {out} has no validation/test metrics")
    return {k: m[k] for k in ("best_epoch", "val", "test", "val_history")}


def run_one(arm: str, lr: float, seed: int) -> None:
    runs = load(arm)
    if any(r["lr"] == lr and r["seed"] == seed for r in runs):
        return
    out = RUNS / f"{arm}-lr{lr:g}-s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"[adrenal_chain] {arm} lr {lr:g} seed {seed} -> {out}", flush=True)
    c0, t0 = os.times(), time.perf_counter()
    with open(out / "train.log", "a") as log:
        rc = subprocess.run(command(arm, lr, seed, out), stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))).returncode
    wall, c1 = time.perf_counter() - t0, os.times()
    if rc != 0:
        raise SystemExit(f"adrenal_chain: {arm} lr {lr:g} seed {seed} failed (exit {rc}); see {out / 'train.log'}")
    res = {"arm": arm, "lr": lr, "seed": seed, **read_result(arm, out), "wall_s": round(wall, 1),
           "cpu_s": round(c1.children_user - c0.children_user + c1.children_system - c0.children_system, 1),
           "threads": int(os.environ.get("OMP_NUM_THREADS", "1")), "loadavg_end": list(os.getloadavg()),
           "run": str(out.relative_to(ROOT))}
    save(arm, load(arm) + [res])
    print(f"[adrenal_chain]   val AUC {res['val']['auc']:.3f}, test AUC {res['test']['auc']:.3f} "
          f"ACC {res['test']['acc']:.3f} ({res['cpu_s']:.0f} CPU s)", flush=True)


def best_lrs(arm: str) -> list[float]:
    """The seed-0 learning rates with the best validation AUC: more than one on an exact tie (98 validation images
    give few distinct AUC values), and then every tied rate gets seeds 1-2 and its own row (no tie-break)."""
    s0 = [r for r in load(arm) if r["seed"] == 0]
    if {r["lr"] for r in s0} != set(LRS):
        raise SystemExit(f"adrenal_chain: the seed-0 search of {arm} is not complete (run --stage search first)")
    return _tied(s0)


def _tied(s0: list[dict]) -> list[float]:
    top = max(r["val"]["auc"] for r in s0)
    return sorted(r["lr"] for r in s0 if r["val"]["auc"] >= top - 1e-9)


def table() -> str:
    """Markdown table: per arm the chosen rate, mean +- sd over seeds 0-2 of val/test AUC and ACC, the search."""
    lines = [BEGIN, "Generated by `python experiments/adrenal_chain.py --table --update docs/results.md` from "
             "`experiments/results/cls3-adrenal-*.json`. Mean ± sd over training seeds 0, 1, 2 at each arm's learning "
             "rate chosen by seed-0 **validation** AUC (the search: last column; rates tied on it each get a row).", "",
             "| arm | lr | seeds | val AUC | test AUC | test ACC | CPU s per run | seed-0 val AUC / test AUC by lr |",
             "|---|---|---|---|---|---|---|---|",
             f"| majority class (always negative) | | | 0.500 | {MAJORITY['test_auc']:.3f} | {MAJORITY['test_acc']:.3f} | | |"]

    def ms(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"

    for arm, label in ARMS.items():
        runs = load(arm)
        s0 = sorted((r for r in runs if r["seed"] == 0), key=lambda r: r["lr"])
        if not s0:
            continue
        tied = _tied(s0)
        search = ", ".join(f"{r['lr']:g}: {r['val']['auc']:.3f} / {r['test']['auc']:.3f}" for r in s0)
        for lr in tied:
            sel = sorted((r for r in runs if r["lr"] == lr), key=lambda r: r["seed"])
            tie = " (tied on seed-0 val AUC)" if len(tied) > 1 else ""
            lines.append(f"| {label}{tie} | {lr:g} | {', '.join(str(r['seed']) for r in sel)} | "
                         f"{ms([r['val']['auc'] for r in sel])} | **{ms([r['test']['auc'] for r in sel])}** | "
                         f"{ms([r['test']['acc'] for r in sel])} | {statistics.median(r['cpu_s'] for r in sel):.0f} | {search} |")
    return "\n".join(lines + [END])


def update(doc: Path, text: str) -> None:
    body = doc.read_text()
    if BEGIN not in body or END not in body:
        raise SystemExit(f"adrenal_chain: {doc} has no {BEGIN} ... {END} block")
    head, rest = body.split(BEGIN, 1)
    doc.write_text(head + text + rest.split(END, 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--stage", choices=("search", "seeds"))
    ap.add_argument("--table", action="store_true", help="print the results table")
    ap.add_argument("--update", type=Path, help="with --table: replace the table block in this Markdown file")
    a = ap.parse_args()
    if a.stage == "search":
        for arm in a.arms:
            for lr in LRS:
                run_one(arm, lr, 0)
    elif a.stage == "seeds":
        for arm in a.arms:
            for lr in best_lrs(arm):
                for seed in SEEDS:
                    run_one(arm, lr, seed)
    if a.table:
        t = table()
        update(a.update, t) if a.update else print(t)


if __name__ == "__main__":
    main()
