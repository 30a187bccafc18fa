"""How much a coarser model grid costs the brain parcellation before any learning (issue 12 design choice).

    python experiments/brain_grid_ceiling.py --out experiments/results/brain_grid_ceiling.json

For each validation subject the DLMUSE map (2 mm) is turned into one-hot scores, resampled to a coarser grid
exactly as ``pumit segment`` resamples an input (trilinear, corner-aligned: a perfect model's scores on that
grid), and brought back to the 2 mm grid in the two ways inference can: the scores trilinearly before the argmax
(:func:`pumit.inference.preprocess.upsampled_argmax`) or the coarse label map by nearest neighbour
(:func:`pumit.inference.preprocess.labels_to_native`). The mean Dice over the ROIs against the original map is
the ceiling a model on that grid can reach.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pumit.metrics import dice_scores  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "ixi_t1_dlmuse"))
    ap.add_argument("--subjects", default=str(HERE / "data" / "brain_val.txt"))
    ap.add_argument("--spacings", nargs="+", type=float, default=[3.0, 4.0])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import SimpleITK as sitk
    import torch
    import torch.nn.functional as F

    from pumit.inference.preprocess import labels_to_native, resampled_grid, upsampled_argmax

    subjects = Path(a.subjects).read_text().split()
    subjects = subjects[: a.limit] if a.limit else subjects
    rows: dict[str, dict[str, list[float]]] = {f"{s:g}": {"trilinear_scores": [], "nearest_labels": []} for s in a.spacings}
    for sid in subjects:
        seg = sitk.ReadImage(str(Path(a.data) / "dlmuse_seg" / f"{sid}_T1_DLMUSE.nii.gz"))
        truth = sitk.GetArrayFromImage(seg).astype(np.int64)
        values = [int(v) for v in np.unique(truth) if v]
        lut = np.zeros(int(truth.max()) + 1, dtype=np.int64)
        lut[values] = np.arange(1, len(values) + 1)
        classes = torch.from_numpy(lut[truth])
        onehot = F.one_hot(classes, len(values) + 1).permute(3, 0, 1, 2).float()
        back = np.array([0] + values)
        spacing = tuple(float(s) for s in reversed(seg.GetSpacing()))
        for s in a.spacings:
            shape, _ = resampled_grid(tuple(truth.shape), spacing, (s, s, s))  # type: ignore[arg-type]
            coarse = F.interpolate(onehot[None], size=shape, mode="trilinear", align_corners=False)[0]
            soft = back[upsampled_argmax(coarse, tuple(truth.shape)).numpy()]
            near = back[labels_to_native(coarse.argmax(0).numpy(), tuple(truth.shape))]
            for key, pred in (("trilinear_scores", soft), ("nearest_labels", near)):
                rows[f"{s:g}"][key].append(dice_scores(pred, truth, {v: str(v) for v in values})["mean"])
        print(sid, {k: {m: round(v[-1], 3) for m, v in r.items()} for k, r in rows.items()}, flush=True)
    out = {"subjects": len(subjects), "subject_list": a.subjects, "native_spacing_mm": 2.0,
           "ceiling_mean_dice": {k: {m: {"mean": round(statistics.fmean(v), 4),
                                         "sd": round(statistics.stdev(v), 4) if len(v) > 1 else 0.0}
                                     for m, v in r.items()} for k, r in rows.items()}}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["ceiling_mean_dice"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
