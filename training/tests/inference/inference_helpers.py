"""Helpers for the inference tests: tiny real models, real images in several geometries, a CLI runner."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from pumit.models import (
    ClassifierConfig,
    SegmenterConfig,
    SpadViTClassifier,
    SpadViTSegmenter,
    TokenizerConfig,
    UniversalTokenizer,
    ViTConfig,
    save_pretrained,
)

REPO = Path(__file__).resolve().parents[3]
TPTBOX = REPO / "Testing" / "Data" / "tptbox"
CT = TPTBOX / "sub-ct_label-22_ct.nii.gz"
MRI = TPTBOX / "sub-mri_label-6_T2w.nii.gz"
HIPPOCAMPUS = Path("/work/shared/data/msd_task04_hippocampus")

SEG_META: dict[str, Any] = {
    "name": "tiny-seg",
    "version": "1.0.0",
    "labels": {"0": "background", "1": "vertebra", "2": "disc"},
    "colors": {"1": [230, 80, 40]},
    "terminology": {"1": "SCT^123037004^Body structure"},
    "input": {"channels": 1, "modality": "CT", "roi": [32, 32, 32]},
}


def tiny_vit(depth: int = 4) -> ViTConfig:
    return ViTConfig(embed_dim=32, depth=depth, num_heads=2, patch_size=8)


def make_segmenter(folder: Path, meta: dict[str, Any] | None = None, *, seed: int = 0, num_classes: int = 3) -> Path:
    """A random-init SpadViTSegmenter (patch 8, divisor 16 in-plane) saved with ``meta``."""
    torch.manual_seed(seed)
    model = SpadViTSegmenter(SegmenterConfig(vit=tiny_vit(), num_classes=num_classes, adapter_channels=(8, 8, 8, 8),
                                             stem_channels=(4,)))
    return save_pretrained(model, folder, meta=SEG_META if meta is None else meta)


def make_tokenizer(folder: Path, meta: dict[str, Any] | None = None, *, seed: int = 0, **config: Any) -> Path:
    torch.manual_seed(seed)
    model = UniversalTokenizer(TokenizerConfig.preset("tiny", **{"codebook_size": 64, **config}))
    return save_pretrained(model, folder, meta=meta if meta is not None else {"name": "tiny-tok", "version": "1.0.0",
                                                                               "input": {"modality": "MRI"}})


def make_classifier(folder: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = SpadViTClassifier(ClassifierConfig(vit=tiny_vit(depth=2), num_classes=3))
    return save_pretrained(model, folder, meta={"name": "tiny-cls", "version": "2.1.0",
                                                "labels": {"0": "normal", "1": "fracture", "2": "implant"}})


def ct_crop() -> sitk.Image:
    """A real CT crop ``(x, y, z) = (40, 32, 32)`` at 1.5 mm with the file's (non-identity) direction."""
    img = sitk.ReadImage(str(CT))
    return img[20:60, 6:38, 20:52]


def mri_crop() -> sitk.Image:
    img = sitk.ReadImage(str(MRI))
    return img[10:42, 10:42, 20:52]


def with_geometry(array: np.ndarray, spacing, direction, origin, pixel=None) -> sitk.Image:
    """An image with numpy ``array`` (z, y, x) and the given geometry (ITK/LPS conventions)."""
    img = sitk.GetImageFromArray(array if pixel is None else array.astype(pixel))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=float).ravel()))
    img.SetOrigin(tuple(float(v) for v in origin))
    return img


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """An oblique rotation matrix (radians about x, y, z)."""
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


DIRECTIONS = {
    "LPS": np.eye(3),
    "RAS": np.diag([-1.0, -1.0, 1.0]),
    "oblique": rotation(0.3, -0.2, 0.5),
}


def geometry(img: sitk.Image) -> tuple:
    return img.GetSize(), img.GetOrigin(), img.GetSpacing(), img.GetDirection()


def assert_same_grid(a: sitk.Image, b: sitk.Image, atol: float = 1e-5) -> None:
    """Same size exactly; origin, spacing and direction equal up to file-format float rounding."""
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6, atol=atol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol)


def write_dicom_series(image: sitk.Image, folder: Path, *, modality: str = "CT") -> Path:
    """Write a 3D int16 image as a DICOM series (one file per slice) with real geometry tags."""
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.Cast(image, sitk.sitkInt16)
    direction = img.GetDirection()
    study = "1.2.826.0.1.3680043.2.1125.1.11608962641993666019702920539307840"
    series = "1.2.826.0.1.3680043.2.1125.1.21608962641993666019702920539307841"
    common = {
        "0008|0060": modality,
        "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",
        "0010|0010": "Test^Phantom",
        "0010|0020": "PUMIT-TEST",
        "0020|000d": study,
        "0020|000e": series,
        "0020|0037": "\\".join(f"{v:.10f}" for v in (direction[0], direction[3], direction[6],
                                                        direction[1], direction[4], direction[7])),
        "0008|103e": "pumit test series",
        "0028|1050": "40",
        "0028|1051": "400",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        for tag, value in common.items():
            sl.SetMetaData(tag, value)
        pos = img.TransformIndexToPhysicalPoint((0, 0, k))
        sl.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in pos))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0018|0050", f"{img.GetSpacing()[2]:.6f}")
        sl.SetMetaData("0028|0030", f"{img.GetSpacing()[1]:.6f}\\{img.GetSpacing()[0]:.6f}")
        sl.SetMetaData("0008|0018", f"{series}.{k + 1}")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    return folder


def files_in(folder: Path) -> list[str]:
    """All file names under ``folder`` (including hidden temporaries)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
