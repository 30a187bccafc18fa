"""MSD-style folder of the IXI T1 + DLMUSE data for ``pumit data index`` / ``pumit train segment`` (issue 12).

    python experiments/data/make_brain_dataset.py ../shared/data/ixi_t1_dlmuse runs/data/brain/msd

Writes ``OUT/imagesTr/<ID>.nii.gz`` (the T1, copied unchanged), ``OUT/labelsTr/<ID>.nii.gz`` (the DLMUSE map
with each MUSE index replaced by its ``class`` of the label table
``training/pumit/assets/labels/muse_dlmuse_labels.csv``, same grid; the trainer needs values ``0..K-1``)
and ``OUT/dataset.json`` (``labels``: class → MUSE name, ``label_values``: class → MUSE index, licence).
Every subject is listed; the train/val split is applied later from the committed lists
(``make_brain_fractions.py``). A map holding a value missing from the table is refused.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "training" / "pumit" / "assets" / "labels" / "muse_dlmuse_labels.csv"


def read_table(path: Path = TABLE) -> list[dict]:
    """Rows of the label table (``class`` and ``value`` as int)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["class"], r["value"] = int(r["class"]), int(r["value"])
    return rows


def class_lut(rows: list[dict]) -> np.ndarray:
    """``lut[muse_index] = class`` (uint8), 255 for indices not in the table."""
    lut = np.full(256, 255, dtype=np.uint8)
    for r in rows:
        lut[r["value"]] = r["class"]
    return lut


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="../shared/data/ixi_t1_dlmuse")
    ap.add_argument("out")
    a = ap.parse_args(argv)
    src, out = Path(a.source), Path(a.out)
    rows = read_table()
    if len(rows) > 255:
        raise SystemExit("more than 255 classes do not fit the uint8 remapping")
    lut = class_lut(rows)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    ids = sorted(p.name[: -len("_T1.nii.gz")] for p in (src / "t1").glob("*_T1.nii.gz"))
    training = []
    for sid in ids:
        lab = sitk.ReadImage(str(src / "dlmuse_seg" / f"{sid}_T1_DLMUSE.nii.gz"))
        arr = sitk.GetArrayFromImage(lab)
        new = lut[arr]
        if (new == 255).any():
            raise SystemExit(f"{sid}: label values {sorted(set(np.unique(arr[new == 255]).tolist()))} are not in {TABLE}")
        img = sitk.GetImageFromArray(new)
        img.CopyInformation(lab)
        sitk.WriteImage(img, str(out / "labelsTr" / f"{sid}.nii.gz"), useCompression=True)
        shutil.copyfile(src / "t1" / f"{sid}_T1.nii.gz", out / "imagesTr" / f"{sid}.nii.gz")
        training.append({"image": f"./imagesTr/{sid}.nii.gz", "label": f"./labelsTr/{sid}.nii.gz"})
    ds = {
        "name": "IXI-DLMUSE",
        "description": f"{len(ids)} IXI T1 (2 mm, whole head) with DLMUSE parcellations; label value = class of "
                       "training/pumit/assets/labels/muse_dlmuse_labels.csv (label_values: class -> MUSE ROI index). "
                       "Automatic labels, not manual (../shared/data/ixi_t1_dlmuse/SOURCE.md). Modified: labels renumbered.",
        "licence": "images CC BY-SA 3.0 (IXI); labels UPenn SBIA Contribution and Software License Agreement v1.1, "
                   "Part B travels with every copy (meta/UPSTREAM_SBIA_LICENSE.md)",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {str(r["class"]): r["name"] for r in rows},
        "label_values": {str(r["class"]): r["value"] for r in rows},
        "numTraining": len(ids),
        "numTest": 0,
        "training": training,
    }
    (out / "dataset.json").write_text(json.dumps(ds, indent=1) + "\n")
    print(f"wrote {len(ids)} subjects, {len(rows)} classes to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
