"""Issue 15 item 8 (inference): no silent nonsense from the shipped hippocampus model.

A constant (all-zero) volume is refused instead of getting labels; a CT scan given to the MRI model is
segmented with a clear modality warning. Real files: the demo hippocampus case and the TPTBox CT.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk
from inference_helpers import CT, REPO

DEMO = REPO / "training" / "pumit" / "assets" / "demo" / "hippocampus_004.nii.gz"
MODEL = "pumit-ref-hippocampus-seg-v0.1.0"


def test_all_zero_volume_is_refused(tmp_path: Path, run_cli):
    zero = tmp_path / "zero.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(DEMO)) * 0, str(zero))  # the demo's grid, every voxel 0
    code, out, err = run_cli("segment", zero, "-o", tmp_path / "seg.nii.gz", "-m", MODEL)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [lines[-1]] and "constant" in lines[-1] and lines[-1].startswith("pumit: error: ")
    assert not list(tmp_path.glob("seg*")) and not list(tmp_path.glob(".seg*"))


def test_ct_given_to_the_mri_model_is_warned_about(tmp_path: Path, run_cli):
    code, out, err = run_cli("segment", CT, "-o", tmp_path / "seg.nii.gz", "-m", MODEL)
    assert code == 0, err
    warning = [ln for ln in err.splitlines() if "trained on MRI" in ln]
    assert warning and "this input is CT" in warning[0] and "Hounsfield" in warning[0]


def test_mri_given_to_the_mri_model_has_no_modality_warning(tmp_path: Path, run_cli):
    code, out, err = run_cli("segment", DEMO, "-o", tmp_path / "seg.nii.gz", "-m", MODEL)
    assert code == 0, err
    assert "trained on" not in err


def test_mri_given_to_a_ct_model_is_warned_about_when_the_modality_is_known(tmp_path: Path, run_cli, models):
    """The tiny CT segmenter and a real MRI: warned when --modality says MRI; a guess from intensities alone
    ("not CT") is no evidence (a CT crop without air looks the same), so no warning then."""
    mri = tmp_path / "mri.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(DEMO)), str(mri))
    code, out, err = run_cli("segment", mri, "-o", tmp_path / "a.nii.gz", "-m", models["seg"], "--modality", "MRI")
    assert code == 0, err
    assert any("trained on CT images but this input is MRI" in ln for ln in err.splitlines())
    code, out, err = run_cli("segment", mri, "-o", tmp_path / "b.nii.gz", "-m", models["seg"])
    assert code == 0, err
    assert "trained on CT" not in err
