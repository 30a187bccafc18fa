"""A segmentation model's intended input (``meta.input.dimensionality`` / ``min_field_of_view_mm`` / ``modality``,
:mod:`pumit.inference.intended`) against real images: a 2D image given to a 3D model is refused (exit 2,
one line naming the intended input, nothing written); a CT given to an MRI model and a crop far smaller
than the intended field of view are segmented, with a note in the sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from inference_helpers import CT, MRI, make_segmenter
from pumit.errors import InputError, ModelError
from pumit.inference import segment
from pumit.inference.intended import intended_input
from pumit.inference.outputs import sidecar_path

IXI = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ixi_t1_dlmuse"
DESCRIPTION = "whole-head T1-weighted MRI, 3D"


def brain_like_meta(min_fov: list[float]) -> dict:
    return {"name": "tiny-brain", "version": "0.0.1", "labels": {"0": "background", "1": "a", "2": "b"},
            "input": {"channels": 1, "modality": "MRI", "dimensionality": "3d", "min_field_of_view_mm": min_fov,
                      "description": DESCRIPTION, "roi": [32, 32, 32]}}


@pytest.fixture(scope="module")
def brain_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real segmenter declaring a 3D MRI input of at least 60 mm on every axis."""
    return make_segmenter(tmp_path_factory.mktemp("m") / "tiny-brain", brain_like_meta([60.0, 60.0, 60.0]))


def write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def test_2d_image_is_refused_naming_the_intended_input(brain_model, tmp_path, run_cli):
    mri = sitk.ReadImage(str(MRI))
    slice2d = write(mri[:, :, mri.GetSize()[2] // 2], tmp_path / "slice.nii.gz")
    assert sitk.ReadImage(str(slice2d)).GetDimension() == 2
    out = tmp_path / "labels.nii.gz"
    with pytest.raises(InputError, match="3D volumes.*whole-head T1-weighted MRI.*2D"):
        segment(slice2d, out, brain_model)
    code, stdout, err = run_cli("segment", slice2d, "-o", out, "--model", brain_model)
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and lines[-1].startswith("pumit: error: ") and "whole-head T1-weighted MRI" in lines[-1]
    assert "Traceback" not in err
    assert not out.exists() and not sidecar_path(out).exists(), "no partial output"


def test_ct_given_to_mri_model_is_segmented_with_a_warning_in_the_sidecar(brain_model, tmp_path, run_cli):
    ct = write(sitk.ReadImage(str(CT)), tmp_path / "ct.nii.gz")  # 110 x 70 x 110 mm: not a small crop
    out = tmp_path / "ct_labels.nii.gz"
    code, _, err = run_cli("segment", ct, "-o", out, "--model", brain_model)
    assert code == 0, err
    assert "trained on MRI" in err and "CT" in err
    side = json.loads(sidecar_path(out).read_text())
    assert set(side["input_notes"]) == {"modality"}
    assert "CT" in side["input_notes"]["modality"] and DESCRIPTION in side["input_notes"]["modality"]
    labels, image = sitk.ReadImage(str(out)), sitk.ReadImage(str(ct))
    assert labels.GetSize() == image.GetSize() and labels.GetOrigin() == image.GetOrigin()


def test_small_crop_is_segmented_with_a_field_of_view_note(brain_model, tmp_path, run_cli):
    mri = sitk.ReadImage(str(MRI))
    crop = write(mri[10:42, 10:42, 20:52], tmp_path / "crop.nii.gz")  # 32 voxels of 1.5 mm = 48 mm < 60 mm
    out = tmp_path / "crop_labels.nii.gz"
    code, _, err = run_cli("segment", crop, "-o", out, "--model", brain_model)
    assert code == 0, err
    side = json.loads(sidecar_path(out).read_text())
    note = side["input_notes"]["field_of_view"]
    assert "48 mm < 60 mm" in note and DESCRIPTION in note and "modality" not in side["input_notes"]
    assert "field of view" in err
    labels = sitk.ReadImage(str(out))
    assert labels.GetSize() == (32, 32, 32) and labels.GetSpacing() == mri.GetSpacing()


def test_whole_image_within_the_field_of_view_has_no_note(brain_model, tmp_path, run_cli):
    full = write(sitk.ReadImage(str(MRI)), tmp_path / "mri.nii.gz")  # 102 x 78 x 100 mm
    out = tmp_path / "mri_labels.nii.gz"
    code, _, err = run_cli("segment", full, "-o", out, "--model", brain_model)
    assert code == 0, err
    assert "input_notes" not in json.loads(sidecar_path(out).read_text())


def test_models_without_the_fields_accept_any_input(models, tmp_path):
    mri = sitk.ReadImage(str(MRI))
    crop = write(mri[10:42, 10:42, 20:52], tmp_path / "crop.nii.gz")
    result = segment(crop, tmp_path / "l.nii.gz", models["seg"])  # the CT model of the other tests: no dimensionality/fov
    assert set(result.input_notes) <= {"modality"}
    assert "field_of_view" not in result.input_notes
    assert intended_input({})["dimensionality"] == "any" and intended_input({})["min_fov"] is None


def test_malformed_intended_input_is_a_model_problem(tmp_path, run_cli):
    bad = make_segmenter(tmp_path / "bad", {**brain_like_meta([60, 60, 60]),
                                            "input": {"dimensionality": "4d", "modality": "MRI"}})
    mri = write(sitk.ReadImage(str(MRI)), tmp_path / "mri.nii.gz")
    with pytest.raises(ModelError, match="dimensionality"):
        segment(mri, tmp_path / "x.nii.gz", bad)
    code, _, err = run_cli("segment", mri, "-o", tmp_path / "x.nii.gz", "--model", bad)
    assert code == 3 and err.strip().splitlines()[-1].startswith("pumit: error: ")


@pytest.mark.skipif(not IXI.is_dir(), reason=f"IXI T1 + DLMUSE data not found at {IXI} (../shared/data)")
def test_ixi_head_versus_a_crop_of_it(tmp_path, run_cli):
    """With the brain model's intended field of view ([110, 150, 120] mm, docs/brain.md): a whole IXI head has
    no note; a 40-voxel (80 mm) cube cut out of it gets one naming all three axes."""
    model = make_segmenter(tmp_path / "brain-fov", brain_like_meta([110.0, 150.0, 120.0]))
    head_path = sorted((IXI / "t1").glob("*_T1.nii.gz"))[0]
    head = sitk.ReadImage(str(head_path))
    out = tmp_path / "head_labels.nii.gz"
    code, _, err = run_cli("segment", head_path, "-o", out, "--model", model)
    assert code == 0, err
    assert "input_notes" not in json.loads(sidecar_path(out).read_text())
    crop = write(head[40:80, 40:80, 25:65], tmp_path / "cube.nii.gz")
    out2 = tmp_path / "cube_labels.nii.gz"
    code, _, err = run_cli("segment", crop, "-o", out2, "--model", model)
    assert code == 0, err
    note = json.loads(sidecar_path(out2).read_text())["input_notes"]["field_of_view"]
    assert note.count("80 mm <") == 3
    assert np.array_equal(np.array(sitk.ReadImage(str(out2)).GetSize()), np.array([40, 40, 40]))
