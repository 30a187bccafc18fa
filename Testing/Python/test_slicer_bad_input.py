"""Bad selections and failing runs give one clear message and leave the scene exactly as it was."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import slicer
from pumitslicer_testing import alive
from PUMITSlicerLib import PUMITSlicerError, TaskState


def refused(session, call, match: str) -> None:
    """``call`` raises PUMITSlicerError matching ``match``; no node appears, none disappears."""
    ids = session.nodeIds()
    with pytest.raises(PUMITSlicerError, match=match):
        call()
    assert session.nodeIds() == ids


def test_no_volume_selected(session, standin):
    refused(session, lambda: standin.startSegmentation(None, "m"), "Select an input volume")
    refused(session, lambda: standin.startReconstruction(None, "t"), "Select an input volume")
    params = standin.getParameterNode()
    params.modelId = "m"
    refused(session, lambda: standin.segment(params), "Select an input volume")


def test_no_model_selected(session, standin, ctVolume):
    refused(session, lambda: standin.startSegmentation(ctVolume, "  "), "Select a segmentation model")
    refused(session, lambda: standin.startReconstruction(ctVolume, ""), "Select a tokenizer model")


def test_2d_volume(session, standin):
    slice2d = slicer.util.addVolumeFromArray(np.zeros((1, 64, 64), np.int16), name="xray")
    refused(session, lambda: standin.startSegmentation(slice2d, "m"), r"'xray' is a 2D image \(64 x 64 x 1 voxels\)")


def test_4d_inputs(session, standin):
    sequence = session.scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
    refused(session, lambda: standin.startSegmentation(sequence, "m"), "'cine' is a sequence")
    multi = slicer.util.addVolumeFromArray(np.zeros((8, 16, 16, 5), np.float32), name="dce", nodeClassName="vtkMRMLVectorVolumeNode")
    refused(session, lambda: standin.startSegmentation(multi, "m"), "'dce' has 5 values per voxel")


def test_not_a_volume_and_empty_volume(session, standin):
    model = session.scene.AddNewNodeByClass("vtkMRMLModelNode", "surface")
    refused(session, lambda: standin.startSegmentation(model, "m"), "'surface' is a vtkMRMLModelNode, not a scalar volume")
    empty = session.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    refused(session, lambda: standin.startSegmentation(empty, "m"), "'empty' has no voxel data")


def test_bad_device_and_overlap(session, standin, ctVolume):
    refused(session, lambda: standin.startSegmentation(ctVolume, "m", device="TPU"), "Unknown device 'TPU'")
    refused(session, lambda: standin.startSegmentation(ctVolume, "m", overlap=1.5), "Overlap must be in")


def test_process_dying_leaves_scene_unchanged(session, standin, ctVolume, monkeypatch, tmp_path):
    monkeypatch.setenv("STANDIN_FAIL", "2:cannot read image input.nrrd: corrupt, truncated or unsupported file")
    ids = session.nodeIds()
    task = standin.startSegmentation(ctVolume, "m")
    assert task.wait(timeout=60) == TaskState.FAILED
    assert task.errorMessage == ("Segmentation failed. Bad input: cannot read image input.nrrd: corrupt, truncated "
                                 "or unsupported file (exit code 2).")
    assert session.nodeIds() == ids
    assert not task.workDir.exists()


def test_result_off_the_input_grid_is_rejected(session, logic, ctVolume, tmp_path):
    """A process that 'succeeds' with a wrongly placed output: refused, nothing added."""
    script = tmp_path / "bad_cli.py"
    script.write_text(
        "import json, sys, SimpleITK as sitk\n"
        "a = sys.argv[1:]; out = a[a.index('-o') + 1]\n"
        "im = sitk.ReadImage(a[1]); lab = sitk.Cast(im > 0, sitk.sitkUInt8)\n"
        "lab.SetOrigin([o + 7.0 for o in im.GetOrigin()])\n"
        "sitk.WriteImage(lab, out)\n"
        "open(out[:-5] + '.labels.json', 'w').write(json.dumps({'model': 'x', 'labels': [{'value': 1, 'name': 'a', 'color': [1, 2, 3]}]}))\n"
        "print(json.dumps({'stage': 'done', 'fraction': 1.0, 'message': 'ok'}))\n")
    logic.pumitCommand = [sys.executable, str(script)]
    ids = session.nodeIds()
    task = logic.startSegmentation(ctVolume, "m")
    assert task.wait(timeout=60) == TaskState.FAILED
    assert "not on the input's voxel grid" in task.errorMessage
    assert session.nodeIds() == ids


def test_missing_sidecar_is_reported(session, logic, ctVolume, tmp_path):
    script = tmp_path / "no_sidecar.py"
    script.write_text("import sys, SimpleITK as sitk\na = sys.argv[1:]\nim = sitk.ReadImage(a[1])\n"
                      "sitk.WriteImage(sitk.Cast(im > 0, sitk.sitkUInt8), a[a.index('-o') + 1])\n")
    logic.pumitCommand = [sys.executable, str(script)]
    ids = session.nodeIds()
    task = logic.startSegmentation(ctVolume, "m")
    assert task.wait(timeout=60) == TaskState.FAILED
    assert "wrote no label description" in task.errorMessage
    assert session.nodeIds() == ids


def test_input_deleted_while_running(session, standin, ctVolume, monkeypatch):
    monkeypatch.setenv("STANDIN_SLEEP", "0.2")
    task = standin.startSegmentation(ctVolume, "m")
    session.scene.RemoveNode(ctVolume)
    ids = session.nodeIds()
    assert task.wait(timeout=60) == TaskState.FAILED
    assert "input volume was removed from the scene" in task.errorMessage
    assert session.nodeIds() == ids


def test_cancel_mid_run_leaves_scene_unchanged_and_kills_the_tree(session, standin, ctVolume, monkeypatch):
    monkeypatch.setenv("STANDIN_SLEEP", "0.5")
    monkeypatch.setenv("STANDIN_CHILD", "1")
    params = standin.getParameterNode()  # created before the snapshot, as when the module is opened
    params.inputVolume, params.modelId = ctVolume, "m"
    ids = session.nodeIds()
    task = standin.segment(params)
    events = []
    task.progressCallbacks.append(events.append)
    while len(events) < 2:
        assert task.poll()
    grandchild = events[0].data["pid"]
    task.cancel()
    assert task.wait(timeout=30) == TaskState.CANCELLED
    assert session.nodeIds() == ids
    assert params.outputSegmentation is None
    assert not alive(task.process.pid) and not alive(grandchild)


def test_one_job_at_a_time(session, standin, ctVolume, monkeypatch):
    monkeypatch.setenv("STANDIN_SLEEP", "0.5")
    task = standin.startSegmentation(ctVolume, "m")
    refused(session, lambda: standin.startReconstruction(ctVolume, "t"), "Segmentation is still running")
    task.cancel()
    task.wait(timeout=30)
