"""Collect the tokenizer ablations (experiments/tokenizer_ablations.sh) into experiments/results/tokenizer_v3_ablations.json.

    python experiments/collect_tokenizer_ablations.py ARM [ARM ...]

Per arm: held-out reconstruction summary (eval_reconstruction.py) and the last logged training values (L1,
per-token entropy, perplexity, codes used) and validation L1 / soft-vs-hard decoding from the CSV log.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def last_logged(run: Path) -> dict:
    logs = sorted((run / "logs" / "csv").glob("version_*/metrics.csv"))
    if not logs:
        return {}
    rows = list(csv.DictReader(logs[-1].open()))
    out: dict = {}
    train = [r for r in rows if r.get("train/l1")]
    tail = train[-10:]
    for k in ("train/l1", "train/token_entropy", "train/perplexity", "train/codes_used"):
        vals = [float(r[k]) for r in tail if r.get(k)]
        if vals:
            out[k.split("/")[1] + "_last10"] = round(sum(vals) / len(vals), 4)
    val = [r for r in rows if r.get("val/l1")]
    if val:
        for k in ("val/l1", "val/l1_hard", "val/pearson", "val/token_entropy"):
            if val[-1].get(k):
                out[k.replace("/", "_")] = round(float(val[-1][k]), 4)
    out["steps"] = int(float(rows[-1]["step"])) + 1 if rows and rows[-1].get("step") else None
    return out


def main(arms: list[str]) -> None:
    res = {}
    for arm in arms:
        s = ROOT / f"runs/ref/recon-abl-{arm}/summary.json"
        res[arm] = {"held_out": json.loads(s.read_text()) if s.is_file() else None,
                    "training": last_logged(ROOT / f"runs/ref/tok3-abl-{arm}")}
    dst = ROOT / "experiments/results/tokenizer_v3_ablations.json"
    dst.write_text(json.dumps(res, indent=2) + "\n")
    print(f"| arm | IXI Pearson | hippocampus Pearson | CT Pearson | IXI std ratio | hippo std ratio | token entropy | perplexity |")
    for arm, r in res.items():
        h, t = r["held_out"] or {}, r["training"]
        g = lambda grp, k: f"{h[grp][k]:.3f}" if grp in h else "–"
        print(f"| {arm} | {g('ixi', 'pearson_mean')} | {g('hippocampus', 'pearson_mean')} | {g('ct', 'pearson_mean')} | "
              f"{g('ixi', 'std_ratio_mean')} | {g('hippocampus', 'std_ratio_mean')} | {t.get('token_entropy_last10', '–')} | "
              f"{t.get('perplexity_last10', '–')} |")
    print(f"-> {dst}")


if __name__ == "__main__":
    main(sys.argv[1:])
