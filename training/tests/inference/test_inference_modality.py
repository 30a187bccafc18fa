"""Models trained on several modalities normalize each input as its modality was normalized in training."""

import numpy as np
import SimpleITK as sitk
from pumit.inference.modelinfo import parse_input_requirements
from pumit.inference.preprocess import image_modality, prepare_input
from pumit.intensity import IntensitySpec, normalize
from pumit.imageio import read_image

META = {"input": {"normalization": IntensitySpec("percentile").to_dict(),
                  "normalization_by_modality": {"CT": IntensitySpec("ct").to_dict(), "MR": IntensitySpec("zscore").to_dict()}}}


def _mri(tptbox_dir):
    return sitk.ReadImage(str(tptbox_dir / "sub-mri_label-6_T2w.nii.gz"))


def test_modality_selects_the_training_normalization(tptbox_dir):
    req = parse_input_requirements(META, 1)
    assert set(req.normalization_by_modality) == {"ct", "mri"}  # names canonicalized (DICOM codes accepted)
    image = _mri(tptbox_dir)
    raw = sitk.GetArrayFromImage(image).astype(np.float32)
    as_mri = prepare_input(image, req, modality="mri").array[0]
    detected = prepare_input(image, req)  # a NIfTI does not say its modality: detected from intensities (not CT -> mri)
    as_default = prepare_input(image, req, modality="other").array[0]  # --modality overrides: the model default
    np.testing.assert_allclose(np.sort(as_mri.ravel()), np.sort(normalize(raw, IntensitySpec("zscore"))[0].ravel()), atol=1e-6)
    np.testing.assert_allclose(np.sort(detected.array[0].ravel()), np.sort(as_mri.ravel()), atol=1e-6)
    assert detected.modality == "mri" and "detected" in detected.normalization_reason
    np.testing.assert_allclose(np.sort(as_default.ravel()), np.sort(normalize(raw, IntensitySpec("percentile"))[0].ravel()), atol=1e-6)
    assert not np.allclose(np.sort(as_mri.ravel()), np.sort(as_default.ravel()))
    assert req.normalization_for("PET") == req.normalization  # not trained on: the default


def test_dicom_modality_tag_is_used(tmp_path):
    from pydicom.data import get_testdata_file

    image = read_image(get_testdata_file("CT_small.dcm"))
    assert image_modality(image) == "CT"
    req = parse_input_requirements(META, 1)
    prep = prepare_input(image, req)
    raw = sitk.GetArrayFromImage(image).astype(np.float32)
    np.testing.assert_allclose(prep.array[0, 0], normalize(raw[0], IntensitySpec("ct"))[0], atol=1e-6)


def test_nifti_ct_without_modality_gets_the_ct_window(tptbox_dir):
    image = sitk.ReadImage(str(tptbox_dir / "sub-ct_label-22_ct.nii.gz"))
    req = parse_input_requirements(META, 1)
    prep = prepare_input(image, req)
    raw = sitk.GetArrayFromImage(image).astype(np.float32)
    assert prep.modality == "ct" and prep.normalization.scheme == "ct"
    assert "Hounsfield" in prep.normalization_record()["reason"]
    np.testing.assert_allclose(np.sort(prep.array[0].ravel()), np.sort(normalize(raw, IntensitySpec("ct"))[0].ravel()), atol=1e-6)


def test_8bit_picture_without_modality_is_a_photo(tmp_path):
    from pumit.imageio import read_image

    p = tmp_path / "pic.png"
    sitk.WriteImage(sitk.GetImageFromArray((np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)), str(p))
    image = read_image(p)
    prep = prepare_input(image, parse_input_requirements(META, 1))
    assert prep.modality == "photo" and "PNG" in prep.normalization_reason
    assert prep.normalization.scheme == "percentile"  # the model has no photo normalization: its default
