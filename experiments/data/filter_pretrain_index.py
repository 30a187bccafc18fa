"""Keep only the items allowed for self-supervised pre-training from an index manifest.

    python experiments/data/filter_pretrain_index.py IN.jsonl OUT.jsonl

* AdrenalMNIST3D: the official ``train`` split only (val / test are never seen in pre-training).
* MSD Hippocampus: the ``train`` side of the seeded hash split (seed 0, val fraction 0.2) only, so that the
  validation cases of the label-efficiency experiment are not even seen unlabeled.
* Everything else (package test images): all items. Labels are dropped (pre-training is unsupervised).
Every kept item is marked ``split: train``.
"""
from __future__ import annotations

import json
import sys


def main(src: str, dst: str) -> None:
    kept = dropped = 0
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            r = json.loads(line)
            if r.get("dataset") in ("Hippocampus", "adrenalmnist3d") and r.get("split") != "train":
                dropped += 1
                continue
            r.pop("label", None)
            r.pop("label_values", None)
            r.pop("target", None)
            r["split"] = "train"
            out.write(json.dumps(r) + "\n")
            kept += 1
    print(f"kept {kept}, dropped {dropped} (held-out splits)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
