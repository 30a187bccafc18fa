"""Benchmark inputs built from the real spine CT in ``Testing/Data/tptbox`` (never noise).

``ct_volume(shape)`` mirror-tiles the real CT (73 × 47 × 73 voxels at 1.5 mm) 2 × 2 in-plane, then
resizes it with trilinear interpolation to the requested ``(D, H, W)`` and stores it as a NIfTI in
int16 Hounsfield units with a typical abdominal-CT spacing (2.5 mm slices, 0.8 mm in-plane, unless
given). Its intensities and anatomy are real; only the grid is synthetic. ``D`` is the slice axis.

``patches(...)`` cuts normalised ``(B, 1, D, H, W)`` float tensors from the same CT for the model
benchmarks (resized to the requested patch shape).
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from benchmarks.common import REPO_ROOT

REAL_CT = REPO_ROOT / "Testing" / "Data" / "tptbox" / "sub-ct_label-22_ct.nii.gz"
CT_SPACING = (2.5, 0.8, 0.8)  # (thickness, in-plane H, in-plane W) mm of the CT-sized benchmark volume
CT_WINDOW = (-175.0, 250.0)


@lru_cache(maxsize=1)
def real_ct_array() -> np.ndarray:
    """The real CT as a float32 ``(z, y, x)`` array in HU."""
    if not REAL_CT.is_file():
        raise FileNotFoundError(f"benchmark CT not found: {REAL_CT}")
    return sitk.GetArrayFromImage(sitk.ReadImage(str(REAL_CT))).astype(np.float32)


def _tiled(a: np.ndarray) -> np.ndarray:
    """Mirror-tile 2 × 2 in-plane (y, x) so that resizing to 512² stretches the anatomy less."""
    a = np.concatenate([a, a[:, ::-1]], axis=1)
    return np.concatenate([a, a[:, :, ::-1]], axis=2)


def resize_real_ct(shape: tuple[int, int, int]) -> np.ndarray:
    """The tiled real CT resized to ``shape`` ``(D, H, W)`` (float32 HU)."""
    t = torch.from_numpy(np.ascontiguousarray(_tiled(real_ct_array())))[None, None]
    return F.interpolate(t, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)[0, 0].numpy()


def ct_volume(shape: tuple[int, int, int], folder: str | Path | None = None, spacing: tuple[float, float, float] = CT_SPACING) -> Path:
    """Write the CT-sized volume ``(D, H, W)`` as ``ct_<D>x<H>x<W>.nii.gz`` (int16 HU) and return its path.

    The image axis order is ITK's ``(x, y, z)`` = ``(W, H, D)`` so that :func:`pumit.imageio.to_model_layout`
    picks ``z`` (the thick axis) as depth and gives back exactly ``(D, H, W)``.
    """
    folder = Path(folder) if folder is not None else Path(tempfile.gettempdir()) / "pumit-benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    d, h, w = shape
    path = folder / f"ct_{d}x{h}x{w}_{spacing[0]:g}-{spacing[1]:g}mm.nii.gz"
    if path.is_file():
        return path
    arr = np.clip(np.rint(resize_real_ct(shape)), -1024, 3071).astype(np.int16)
    img = sitk.GetImageFromArray(arr)  # numpy (z, y, x) = (D, H, W)
    img.SetSpacing((spacing[2], spacing[1], spacing[0]))
    tmp = path.with_name(path.name + ".tmp.nii.gz")
    sitk.WriteImage(img, str(tmp), useCompression=True)
    tmp.replace(path)
    return path


def normalised_ct(shape: tuple[int, int, int]) -> torch.Tensor:
    """``(1, 1, D, H, W)`` float32 in ``[-1, 1]`` (CT soft-tissue window) from the real CT."""
    a = resize_real_ct(shape)
    lo, hi = CT_WINDOW
    a = np.clip((a - (lo + hi) / 2) / ((hi - lo) / 2), -1, 1).astype(np.float32)
    return torch.from_numpy(a)[None, None]


def patches(batch: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """``(batch, 1, D, H, W)`` patches of the real CT (a 2D input is ``D = 1``: one slice).

    Each sample is the resized CT flipped/rolled differently so the batch is not B copies of one image.
    """
    g = torch.Generator().manual_seed(seed)
    if shape[0] == 1:  # 2D: a slice of a 3D resize
        vol = normalised_ct((8, shape[1], shape[2]))
    else:
        vol = normalised_ct(shape)
    out = []
    for i in range(batch):
        v = vol
        if shape[0] == 1:
            v = v[:, :, i % v.shape[2]: i % v.shape[2] + 1]
        if torch.rand((), generator=g) < 0.5:
            v = v.flip(-1)
        shift = int(torch.randint(0, max(shape[2] // 4, 1), (), generator=g))
        out.append(v.roll(shift, dims=-1))
    return torch.cat(out, 0).contiguous()
