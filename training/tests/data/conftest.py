"""Fixtures of the data-pipeline tests: real images only (shared data, tptbox, pydicom test files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from data_helpers import CT, CT_VERT, subsample
from PIL import Image


@pytest.fixture
def hippocampus(shared_data: Path) -> Path:
    d = shared_data / "msd_task04_hippocampus"
    if not (d / "dataset.json").is_file():
        pytest.skip(f"{d} is absent")
    return d


@pytest.fixture
def adrenal_npz(shared_data: Path) -> Path:
    f = shared_data / "adrenalmnist3d" / "adrenalmnist3d.npz"
    if not f.is_file():
        pytest.skip(f"{f} is absent")
    return f


@pytest.fixture
def aniso_x(tmp_path: Path) -> tuple[Path, Path]:
    """The tptbox CT and its vertebra mask with every 4th slice along x: spacing (6, 1.5, 1.5) mm (x, y, z)."""
    return (subsample(CT, tmp_path / "aniso_ct.nii.gz", "x"), subsample(CT_VERT, tmp_path / "aniso_vert.nii.gz", "x"))


@pytest.fixture
def ct_png(tmp_path: Path) -> tuple[Path, tuple[int, int, int, int]]:
    """An 8-bit PNG of a real CT slice (soft-tissue window) inside a black border; returns the path and the
    (top, bottom, left, right) border widths."""
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(CT)))  # (z, y, x) HU
    sl = arr[arr.shape[0] // 2].astype(np.float32)
    grey = np.clip((sl + 175.0) / 425.0 * 255.0, 1, 255).astype(np.uint8)  # >= 1: the whole slice is foreground
    border = (5, 7, 3, 11)
    canvas = np.zeros((grey.shape[0] + border[0] + border[1], grey.shape[1] + border[2] + border[3]), np.uint8)
    canvas[border[0]:border[0] + grey.shape[0], border[2]:border[2] + grey.shape[1]] = grey
    out = tmp_path / "photos" / "ct_slice.png"
    out.parent.mkdir()
    Image.fromarray(canvas).save(out)
    return out, border


@pytest.fixture
def small_msd(tmp_path: Path, hippocampus: Path) -> Path:
    """An MSD folder with 4 real hippocampus cases (copied) and the original dataset.json fields."""
    meta = json.loads((hippocampus / "dataset.json").read_text())
    root = tmp_path / "Task04_small"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    items = meta["training"][:4]
    for it in items:
        shutil.copy(hippocampus / it["image"], root / it["image"])
        shutil.copy(hippocampus / it["label"], root / it["label"])
    meta["training"] = items
    meta["numTraining"] = len(items)
    (root / "dataset.json").write_text(json.dumps(meta))
    return root
