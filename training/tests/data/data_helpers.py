"""Helpers of the data-pipeline tests (imported by name, like store_helpers): real files only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

REPO_ROOT = Path(__file__).resolve().parents[3]
TPTBOX = REPO_ROOT / "Testing" / "Data" / "tptbox"
CT = TPTBOX / "sub-ct_label-22_ct.nii.gz"
CT_VERT = TPTBOX / "sub-ct_seg-vert_label-22_msk.nii.gz"


def dicom_file(name: str) -> Path:
    """A pydicom / pydicom-data test file (never downloaded: skip if it is not installed)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed (pip install pydicom-data)")
    return Path(path)


def shared_data_dir() -> Path:
    """``$PUMIT_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("PUMIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def subsample(path: Path, out: Path, axis: str, step: int = 4) -> Path:
    """Write ``path`` keeping every ``step``-th slice along image axis ``axis`` (x/y/z), spacing scaled."""
    image = sitk.ReadImage(str(path))
    k = "xyz".index(axis)
    index = [slice(None)] * 3
    index[k] = slice(None, None, step)
    sub = image[tuple(index)]  # SimpleITK slicing keeps origin/direction, multiplies the spacing
    sitk.WriteImage(sub, str(out))
    return out
