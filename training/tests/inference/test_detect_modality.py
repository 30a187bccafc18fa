"""detect_modality recognises CT from Hounsfield units on real images and defaults the rest to MRI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pumit.intensity import normalize, IntensitySpec
from pumit.modality import DEFAULT_MODALITY, MODALITIES, detect_modality

DEMO = Path(__file__).resolve().parents[2] / "pumit" / "assets" / "demo"


def _read(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)


def test_spine_ct_in_hu_is_ct():
    modality, reason = detect_modality(_read(DEMO / "spine_ct.nii.gz"))
    assert modality == "ct"
    assert "Hounsfield" in reason


@pytest.mark.parametrize("name", ["spine_t2w_mri.nii.gz", "hippocampus_004.nii.gz"])
def test_mri_gets_the_documented_default(name):
    modality, reason = detect_modality(_read(DEMO / name))
    assert modality == DEFAULT_MODALITY == "mri"
    assert modality in MODALITIES and "not CT" in reason


def test_dicom_ct_slices_with_padding_are_ct_and_dicom_mr_is_not():
    from pydicom.data import get_testdata_file

    assert detect_modality(_read(get_testdata_file("CT_small.dcm")))[0] == "ct"
    assert detect_modality(_read(get_testdata_file("MR_small.dcm")))[0] == "mri"
    try:  # a 512² CT slice whose out-of-field region is padded far below -1000 HU (pydicom-data)
        import data_store.data as ds
    except ImportError:
        pytest.skip("pydicom-data is not installed")
    padded = Path(list(ds.__path__)[0]) / "693_UNCI.dcm"
    if not padded.is_file():
        pytest.skip("pydicom-data has no 693_UNCI.dcm")
    assert detect_modality(_read(padded))[0] == "ct"


def test_normalized_or_shifted_mri_is_not_ct():
    mri = _read(DEMO / "spine_t2w_mri.nii.gz")
    zs = normalize(mri, IntensitySpec("zscore"))[0]  # values in [-1, 1]
    assert detect_modality(zs)[0] == "mri"
    assert detect_modality(mri - 100.0)[0] == "mri"  # a small negative offset is not HU
    assert detect_modality(np.zeros((4, 4, 4), np.float32))[0] == "mri"
    assert detect_modality(np.zeros((8, 8, 3), np.uint8))[0] == "photo"
