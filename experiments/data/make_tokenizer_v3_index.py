"""Index of the images the v0.3 tokenizer is trained on, with every evaluation image held out.

    python experiments/data/make_tokenizer_v3_index.py runs/data/index_all.jsonl runs/data/index_ixi.jsonl \
        -o runs/data/index_tok3.jsonl

Kept (all marked ``split: train``, labels dropped):

* IXI T1 (``ixi_t1_dlmuse/t1``, 2 mm whole head): the ``train`` side of the seeded hash split (seed 0, 10 % val);
  the held-out subjects are written to ``experiments/data/ixi_t1_holdout.txt`` and never trained on.
* MSD Hippocampus: every case except those in ``experiments/data/hippocampus_val.txt`` (the label-efficiency
  validation cases, also the reconstruction test cases).
* AdrenalMNIST3D: the official ``train`` split only.
* Every package image of ``pretrain_sources.jsonl`` (2D and 3D, CT, MRI, X-ray, ultrasound).

The held-out CT images of ``experiments/eval_reconstruction.py`` (pydicom ``J2K_pixelrep_mismatch.dcm``,
pydicom-data ``explicit_VR-UN.dcm``) are not in ``pretrain_sources.jsonl``; they are refused here if they appear.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELD_OUT_FILES = ("J2K_pixelrep_mismatch.dcm", "explicit_VR-UN.dcm")
HIPPO_VAL = Path("experiments/data/hippocampus_val.txt")
IXI_HOLDOUT = Path("experiments/data/ixi_t1_holdout.txt")


def _records(path: str) -> list[dict]:
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip() and not l.startswith("#")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("index_all")
    ap.add_argument("index_ixi")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    hippo_val = {l.strip() for l in HIPPO_VAL.read_text().split() if l.strip()}
    kept: list[dict] = []
    holdout: list[str] = []
    for r in _records(a.index_ixi):
        if r.get("split") != "train":
            holdout.append(Path(r["image"]).name.replace("_T1.nii.gz", ""))
            continue
        kept.append(r)
    for r in _records(a.index_all):
        name = Path(r["image"]).name
        if name in HELD_OUT_FILES:
            raise SystemExit(f"held-out evaluation image {name} is in the pre-training sources")
        if r.get("dataset") == "Hippocampus" and name.replace(".nii.gz", "") in hippo_val:
            continue
        if r.get("dataset") == "adrenalmnist3d" and r.get("split") != "train":
            continue
        kept.append(r)
    with open(a.output, "w") as out:
        for r in kept:
            for k in ("label", "label_values", "target"):
                r.pop(k, None)
            r["split"] = "train"
            out.write(json.dumps(r) + "\n")
    IXI_HOLDOUT.write_text("\n".join(sorted(holdout)) + "\n")
    print(f"kept {len(kept)}; IXI held out: {len(holdout)} subjects -> {IXI_HOLDOUT}")


if __name__ == "__main__":
    main()
