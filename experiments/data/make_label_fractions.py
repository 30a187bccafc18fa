"""Label-efficiency data lists for MSD Task04 Hippocampus (committed outputs: experiments/data/hippocampus_*.txt).

Validation split: the data pipeline's seeded hash split (`pumit data index --split-seed 0 --val-fraction 0.2`):
a case is `val` when sha256("0:Hippocampus/<relative path>") / 2^64 < 0.2. It is fixed and identical for every
arm. Training subsets: the `train` cases in a seeded random order (numpy default_rng(0)); the first 20 %, 50 %,
100 % are used, so the subsets are nested.

    python experiments/data/make_label_fractions.py runs/data/hippo/manifest.jsonl
writes experiments/data/hippocampus_{val,train_020,train_050,train_100}.txt (case names) and, next to the
processed manifest, manifest_frac{020,050,100}.jsonl (the fraction's train cases + all val cases).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FRACTIONS = (0.2, 0.5, 1.0)


def case(r: dict) -> str:
    return Path(r["source"]["image"]).name.replace(".nii.gz", "")


def main(manifest: str) -> None:
    src = Path(manifest)
    rows = [json.loads(l) for l in src.read_text().splitlines() if l.strip()]
    train = sorted((r for r in rows if r["split"] == "train"), key=case)
    val = sorted((r for r in rows if r["split"] == "val"), key=case)
    order = np.random.default_rng(0).permutation(len(train))
    (HERE / "hippocampus_val.txt").write_text("".join(case(r) + "\n" for r in val))
    for frac in FRACTIONS:
        n = max(1, int(round(frac * len(train))))
        sub = [train[i] for i in order[:n]]
        tag = f"{int(frac * 100):03d}"
        (HERE / f"hippocampus_train_{tag}.txt").write_text("".join(case(r) + "\n" for r in sorted(sub, key=case)))
        out = src.parent / f"manifest_frac{tag}.jsonl"
        out.write_text("".join(json.dumps(r) + "\n" for r in sub + val))
        print(f"{tag}%: {n} train + {len(val)} val -> {out}")


if __name__ == "__main__":
    main(sys.argv[1])
