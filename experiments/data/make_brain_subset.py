"""An MSD-style subset of the IXI T1 + DLMUSE parcellation data (../shared/data/ixi_t1_dlmuse, SOURCE.md) for the
decoder comparison of issue 13 (experiments/decoder_compare.py).

Subjects: the 148 IDs sorted, in a seeded random order (numpy default_rng(0)); the first ``--n`` are used.
Labels: the DLMUSE ROI indices occurring in *any* of the chosen subjects are mapped to contiguous values
1..K in increasing index order (0 = background); names from meta/muse_dict.csv (indices missing there, e.g.
46 and 69, are named ``MUSE_<index>``). Images are copied unchanged; label maps are rewritten with the new
values on the same grid. Writes OUT/imagesTr, OUT/labelsTr, OUT/dataset.json (with ``label_map``: new value
→ MUSE index) and OUT/subjects.txt.

    python experiments/data/make_brain_subset.py ../shared/data/ixi_t1_dlmuse runs/data/brain26 --n 26
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=26)
    args = ap.parse_args(argv)
    src, out = Path(args.source), Path(args.out)
    ids = sorted(p.name[: -len("_T1.nii.gz")] for p in (src / "t1").glob("*_T1.nii.gz"))
    order = np.random.default_rng(0).permutation(len(ids))
    chosen = sorted(ids[i] for i in order[: args.n])
    names = {}
    with open(src / "meta" / "muse_dict.csv", newline="") as f:
        for row in csv.DictReader(f):
            names[int(row["Index"])] = row["Name"]
    labels = {sid: sitk.ReadImage(str(src / "dlmuse_seg" / f"{sid}_T1_DLMUSE.nii.gz")) for sid in chosen}
    values = sorted(set().union(*(np.unique(sitk.GetArrayViewFromImage(im)).tolist() for im in labels.values())) - {0})
    lut = np.zeros(max(values) + 1, dtype=np.uint8 if len(values) < 255 else np.uint16)
    for new, old in enumerate(values, start=1):
        lut[old] = new
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for sid in chosen:
        shutil.copyfile(src / "t1" / f"{sid}_T1.nii.gz", out / "imagesTr" / f"{sid}.nii.gz")
        im = labels[sid]
        arr = lut[sitk.GetArrayFromImage(im)]
        new = sitk.GetImageFromArray(arr)
        new.CopyInformation(im)
        sitk.WriteImage(new, str(out / "labelsTr" / f"{sid}.nii.gz"), useCompression=True)
        training.append({"image": f"./imagesTr/{sid}.nii.gz", "label": f"./labelsTr/{sid}.nii.gz"})
    ds = {
        "name": "IXI-DLMUSE-subset",
        "description": f"{len(chosen)} IXI T1 (2 mm) subjects with DLMUSE parcellations remapped to 0..{len(values)} "
                       "(automatic labels, not manual; see ../shared/data/ixi_t1_dlmuse/SOURCE.md)",
        "licence": "images CC BY-SA 3.0; labels UPenn SBIA licence v1.1 (meta/UPSTREAM_SBIA_LICENSE.md)",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", **{str(i): names.get(v, f"MUSE_{v}") for i, v in enumerate(values, start=1)}},
        "label_map": {str(i): v for i, v in enumerate(values, start=1)},
        "numTraining": len(chosen),
        "numTest": 0,
        "training": training,
    }
    (out / "dataset.json").write_text(json.dumps(ds, indent=1) + "\n")
    (out / "subjects.txt").write_text("".join(s + "\n" for s in chosen))
    print(f"wrote {len(chosen)} subjects, {len(values)} foreground labels to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
