"""The brain parcellation model's metadata (``experiments/brain_package.py``: label table + intended input) with a
real (random-weight, tiny) segmenter on real images: label maps carry the MUSE ROI indices (``meta.label_values``)
with the table's names, colours and SNOMED CT codes in the sidecar; a whole IXI head has no field-of-view note, a
crop of it does; malformed ``label_values`` are a model problem (exit 3)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from inference_helpers import MRI, make_segmenter
from pumit.errors import ModelError
from pumit.inference import load_model, segment
from pumit.inference.outputs import sidecar_path

REPO = Path(__file__).resolve().parents[3]
IXI = REPO.parent / "shared" / "data" / "ixi_t1_dlmuse"
sys.path.insert(0, str(REPO / "experiments"))

from brain_package import INTENDED_INPUT, brain_meta  # noqa: E402


def small_meta(label_values: dict) -> dict:
    return {"name": "tiny-values", "version": "0.0.1", "labels": {"0": "background", "1": "Hippocampus_R", "2": "Hippocampus_L"},
            "label_values": label_values, "terminology": {"1": "SCT^5366008^Hippocampus"}, "input": {"roi": [32, 32, 32]}}


def test_label_values_are_written_instead_of_classes(tmp_path, run_cli):
    model = make_segmenter(tmp_path / "m", small_meta({"1": 47, "2": 48}))
    mri = sitk.ReadImage(str(MRI))
    src = tmp_path / "mri.nii.gz"
    sitk.WriteImage(mri, str(src))
    out = tmp_path / "lab.nii.gz"
    code, _, err = run_cli("segment", src, "-o", out, "--model", model)
    assert code == 0, err
    values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(out)))).tolist())
    assert values and values <= {0, 47, 48} and values - {0}, "random weights still predict some foreground"
    side = json.loads(sidecar_path(out).read_text())
    assert [(l["value"], l["name"]) for l in side["labels"]] == [(47, "Hippocampus_R"), (48, "Hippocampus_L")]
    assert side["labels"][0]["terminology"] == "SCT^5366008^Hippocampus"


@pytest.mark.parametrize("bad", [{"1": 5, "2": 5}, {"7": 3}, {"1": -1}, {"1": "47"}, [47, 48]])
def test_malformed_label_values_are_refused(tmp_path, run_cli, bad):
    model = make_segmenter(tmp_path / "m", small_meta(bad))
    with pytest.raises(ModelError, match="label_values"):
        load_model(model, "segment")
    src = tmp_path / "mri.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(MRI)), str(src))
    code, _, err = run_cli("segment", src, "-o", tmp_path / "x.nii.gz", "--model", model)
    assert code == 3 and err.strip().splitlines()[-1].startswith("pumit: error: ")


@pytest.mark.skipif(not IXI.is_dir(), reason=f"IXI T1 + DLMUSE data not found at {IXI} (../shared/data)")
def test_brain_meta_on_a_real_ixi_head_and_a_crop(tmp_path, run_cli):
    meta = {"name": "tiny-brain", "version": "0.0.1", **brain_meta(),
            "input": {**INTENDED_INPUT, "normalization": {"scheme": "zscore"}, "roi": [48, 64, 64]}}
    model = make_segmenter(tmp_path / "brain", meta, num_classes=len(meta["labels"]))
    muse = set(meta["label_values"].values())
    head_path = sorted((IXI / "t1").glob("*_T1.nii.gz"))[0]
    out = tmp_path / "head.nii.gz"
    code, _, err = run_cli("segment", head_path, "-o", out, "--model", model)
    assert code == 0, err
    labels, head = sitk.ReadImage(str(out)), sitk.ReadImage(str(head_path))
    assert labels.GetSize() == head.GetSize() and labels.GetDirection() == head.GetDirection()
    assert set(np.unique(sitk.GetArrayFromImage(labels)).tolist()) <= muse
    side = json.loads(sidecar_path(out).read_text())
    assert "input_notes" not in side
    by_value = {l["value"]: l for l in side["labels"]}
    assert set(by_value) == muse - {0}
    assert by_value[47]["name"] == "Hippocampus_R" and by_value[47]["terminology"] == "SCT^5366008^Hippocampus"
    assert by_value[4]["name"] == "3rdVentricle" and by_value[4]["terminology"] == "SCT^49841001^Third ventricle"
    crop = tmp_path / "crop.nii.gz"
    sitk.WriteImage(head[30:90, 30:90, 20:70], str(crop))  # 120 x 120 x 100 mm
    code, _, err = run_cli("segment", crop, "-o", tmp_path / "crop_lab.nii.gz", "--model", model)
    assert code == 0, err
    note = json.loads(sidecar_path(tmp_path / "crop_lab.nii.gz").read_text())["input_notes"]["field_of_view"]
    assert "whole-head T1-weighted MRI" in note and "< 150 mm" in note
