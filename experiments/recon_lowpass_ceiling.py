"""Low-pass ceiling of a stride-s tokenizer (issue 10, item 3): how well the mean of each token's region can
correlate with the image, on the held-out images of ``reconstruction_v0.3.0.json``.

Each image (as read, its own units; Pearson is unchanged by the tokenizer's affine normalization) is average-pooled
in s × s × s blocks (depth, H, W; edge-padded to a multiple of s) and trilinearly upsampled back; the Pearson
correlation with the input is what a reconstruction that knows only each token's mean intensity reaches. A
tokenizer above it has learned detail within a token; one far below it has not learned the means.

    python experiments/recon_lowpass_ceiling.py [--out experiments/results/reconstruction_lowpass_ceiling.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from pumit.atomic import atomic_write_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the items' paths are relative to the repository root
STRIDES = (2, 4, 8)
GROUPS = ("ixi", "hippocampus")


def lowpass_pearson(image: np.ndarray, stride: int) -> float:
    """Pearson(image, trilinear upsampling of its stride^3 block means); ``image`` (D, H, W)."""
    x = torch.from_numpy(image.astype(np.float32))[None, None]
    pad = [(-n) % stride for n in image.shape]
    xp = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]), mode="replicate")
    up = F.interpolate(F.avg_pool3d(xp, stride), size=xp.shape[2:], mode="trilinear", align_corners=False)
    up = up[..., : image.shape[0], : image.shape[1], : image.shape[2]]
    return float(np.corrcoef(up.flatten().numpy(), x.flatten().numpy())[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recon", default=str(HERE / "results" / "reconstruction_v0.3.0.json"))
    ap.add_argument("--out", default=str(HERE / "results" / "reconstruction_lowpass_ceiling.json"))
    a = ap.parse_args()
    rec = json.loads(Path(a.recon).read_text())
    out: dict = {"source": Path(a.recon).name, "method": "Pearson of the stride^3 block-mean image, trilinear upsampled",
                 "groups": {}}
    for grp in GROUPS:
        items = [i for i in rec["items"] if i["group"] == grp]
        per = {s: [lowpass_pearson(sitk.GetArrayFromImage(sitk.ReadImage(str(ROOT / i["path"]))), s) for i in items] for s in STRIDES}
        out["groups"][grp] = {"n": len(items), **{f"stride{s}": round(float(np.mean(v)), 4) for s, v in per.items()},
                              "tokenizer": round(float(np.mean([i["metrics"]["pearson"] for i in items])), 4)}
    atomic_write_text(a.out, json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["groups"]))


if __name__ == "__main__":
    main()
