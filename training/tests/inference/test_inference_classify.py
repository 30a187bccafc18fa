"""`pumit classify`: probabilities as JSON on stdout or in a file."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk
from inference_helpers import DIRECTIONS, ct_crop, files_in, with_geometry
from pumit.inference import InferenceSettings, classify_image, load_model


def test_classify_stdout_json(tmp_path, models, run_cli):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    code, stdout, stderr = run_cli("classify", src, "--model", models["cls"], "--device", "cpu", "--progress", "none")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["model"] == "tiny-cls-v2.1.0"
    probs = result["probabilities"]
    assert [p["value"] for p in probs] == [0, 1, 2]
    assert [p["name"] for p in probs] == ["normal", "fracture", "implant"]
    assert sum(p["probability"] for p in probs) == pytest.approx(1.0, abs=1e-6)
    best = max(probs, key=lambda p: p["probability"])
    assert result["prediction"] == {"value": best["value"], "name": best["name"], "probability": best["probability"]}


def test_classify_to_file(tmp_path, models, run_cli):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    out = tmp_path / "res" / "cls.json"
    code, stdout, stderr = run_cli("classify", src, "--model", models["cls"], "-o", out, "--device", "cpu")
    assert code == 0, stderr
    assert stdout == ""
    assert json.loads(out.read_text())["model"] == "tiny-cls-v2.1.0"
    assert files_in(out.parent) == ["cls.json"]


def test_classification_ignores_orientation(models):
    """Same voxels with another direction: identical probabilities (the model sees the same array)."""
    model = load_model(models["cls"], "classify")
    arr = sitk.GetArrayFromImage(ct_crop())
    probs = [
        classify_image(with_geometry(arr, (1.0, 1.0, 2.0), DIRECTIONS[o], (1, 2, 3)), model,
                       settings=InferenceSettings(device="cpu")).probabilities
        for o in ("LPS", "oblique")
    ]
    assert probs[0] == probs[1]
