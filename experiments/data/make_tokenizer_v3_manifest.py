"""Training manifest of the v0.3 tokenizer from the processed index (``pumit data preprocess`` of
``make_tokenizer_v3_index.py``'s output), balanced by repetition/subsampling since the trainer samples uniformly:

* every IXI T1, MSD Hippocampus and nibabel item once;
* a seeded subsample of ``--adrenal`` AdrenalMNIST3D train volumes (binary masks: 1188 would dominate);
* every other package image (tptbox CT/MRI, pydicom / pydicom-data CT, MRI, X-ray, ultrasound; 2D and 3D)
  ``--repeat`` times (there are only a few of them);
* 2D thickness harmonized as in ``harmonize_planar.py`` (one spacing rule per batch).

    python experiments/data/make_tokenizer_v3_manifest.py runs/data/tok3/manifest.jsonl runs/data/tok3/train.jsonl \
        --exclude itk-examples

The shipped v0.3 tokenizer and its MIM backbones were trained on the 538-item list of a machine without Debian's
``insighttoolkit5-examples``; ``--exclude itk-examples`` gives that list where the package is installed (with them:
598 items, the 10 ITK images repeated 6x).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ONCE = {"ixi_t1", "Hippocampus", "nibabel"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--adrenal", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exclude", nargs="*", default=[], metavar="DATASET",
                    help="datasets left out (the shipped v0.3 list: itk-examples, absent from the machine it was made on)")
    a = ap.parse_args()
    rows = [json.loads(l) for l in Path(a.src).read_text().splitlines() if l.strip()]
    rows = [r for r in rows if r["dataset"] not in set(a.exclude)]
    adrenal = [r for r in rows if r["dataset"] == "adrenalmnist3d"]
    random.Random(a.seed).shuffle(adrenal)
    out = [r for r in rows if r["dataset"] in ONCE] + adrenal[: a.adrenal]
    out += [r for r in rows if r["dataset"] not in ONCE | {"adrenalmnist3d"}] * a.repeat
    for r in out:
        if r.get("planar"):
            s = r["spacing"]
            r["spacing"] = [min(s[1], s[2]) * 2 ** 27.5, s[1], s[2]]
    Path(a.dst).write_text("".join(json.dumps(r) + "\n" for r in out))
    print(f"{len(out)} items -> {a.dst}")


if __name__ == "__main__":
    main()
