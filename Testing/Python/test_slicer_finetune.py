"""Fine-tuning: the MSD dataset written from the user's (volume, segmentation) pairs, consistent label
ids across cases, clear refusals, the user's segmentations untouched, the new model selected."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from pumitslicer_testing import DATA, GROUPS, twoAnnotatedCases
from PUMITSlicerLib import PUMITSlicerError, TaskState, formatProgress
from PUMITSlicerLib.dataset import writeTrainingDataset


@pytest.fixture
def cases(session):
    return twoAnnotatedCases(session)


def snapshot(segmentation, volume) -> dict:
    s = segmentation.GetSegmentation()
    return {s.GetNthSegmentID(i): (s.GetNthSegment(i).GetName(),
                                   slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, s.GetNthSegmentID(i), volume).copy())
            for i in range(s.GetNumberOfSegments())}


def test_dataset_layout_labels_and_geometry(session, cases, tmp_path):
    before = [snapshot(seg, vol) for vol, seg in cases]
    path, names = writeTrainingDataset(cases, tmp_path / "ds", modality="MRI", name="spine")
    assert names == ["vertebral body", "posterior elements"], "label ids follow the first case's segment order"
    dataset = json.loads(path.read_text())
    assert dataset["labels"] == {"0": "background", "1": "vertebral body", "2": "posterior elements"}
    assert dataset["modality"] == {"0": "MRI"} and dataset["numTraining"] == 2
    for (volume, segmentation), entry in zip(cases, dataset["training"]):
        image = sitk.ReadImage(str(tmp_path / "ds" / entry["image"]))
        label = sitk.ReadImage(str(tmp_path / "ds" / entry["label"]))
        assert np.array_equal(sitk.GetArrayFromImage(image), slicer.util.arrayFromVolume(volume))
        for attribute in ("GetOrigin", "GetSpacing", "GetDirection", "GetSize"):
            assert np.allclose(getattr(image, attribute)(), getattr(label, attribute)(), atol=1e-5)
        source = sitk.ReadImage(str(DATA / ("sub-ct_seg-subreg_label-22_msk.nii.gz" if volume.GetName() == "ct"
                                            else "sub-mri_seg-subreg_label-6_msk.nii.gz")))
        truth = sitk.GetArrayFromImage(source)
        labels = sitk.GetArrayFromImage(label)
        assert np.array_equal(labels == 1, np.isin(truth, GROUPS["vertebral body"]))
        assert np.array_equal(labels == 2, np.isin(truth, GROUPS["posterior elements"]))
        assert np.allclose(label.GetOrigin(), source.GetOrigin(), atol=1e-4)
    after = [snapshot(seg, vol) for vol, seg in cases]
    for b, a in zip(before, after):
        assert b.keys() == a.keys()
        assert all(b[k][0] == a[k][0] and np.array_equal(b[k][1], a[k][1]) for k in b), "user segmentations unchanged"


def test_different_segment_names_are_refused(session, cases, tmp_path):
    cases[1][1].GetSegmentation().GetNthSegment(0).SetName("arch")
    with pytest.raises(PUMITSlicerError, match=r"Segment names differ between cases: 'mri segmentation' has missing "
                                               r"'posterior elements'; extra 'arch' compared with 'ct segmentation'"):
        writeTrainingDataset(cases, tmp_path / "ds")


def test_segmentation_without_segments_and_empty_segment(session, cases, tmp_path):
    volume = cases[0][0]
    empty = session.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "nothing")
    with pytest.raises(PUMITSlicerError, match="Segmentation 'nothing' has no segments"):
        writeTrainingDataset([(volume, empty)], tmp_path / "a")
    cases[1][1].GetSegmentation().AddEmptySegment("", "tumor")
    cases[0][1].GetSegmentation().AddEmptySegment("", "tumor")
    with pytest.raises(PUMITSlicerError, match="Segment 'tumor' of 'ct segmentation' is empty"):
        writeTrainingDataset(cases, tmp_path / "b")
    duplicate = session.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "dup")
    duplicate.GetSegmentation().AddEmptySegment("", "a")
    duplicate.GetSegmentation().AddEmptySegment("", "a")
    with pytest.raises(PUMITSlicerError, match="several segments named 'a'"):
        writeTrainingDataset([(volume, duplicate)], tmp_path / "c")
    with pytest.raises(PUMITSlicerError, match="Add at least one"):
        writeTrainingDataset([], tmp_path / "d")


def test_fine_tune_with_stand_in_selects_the_new_model(session, cases, standin):
    logic = standin
    params = logic.getParameterNode()
    params.fineTuneVolumes = [v for v, _ in cases]
    params.fineTuneSegmentations = [s for _, s in cases]
    params.modelId, params.fineTuneName, params.fineTuneEpochs = "base-v1.0.0", "my-spine", 3
    ids = session.nodeIds()
    task = logic.fineTune(params)
    events = []
    task.progressCallbacks.append(events.append)
    assert task.wait(timeout=120) == TaskState.SUCCEEDED, task.errorMessage
    assert task.result == "my-spine-v1.0.0" and params.modelId == "my-spine-v1.0.0"
    assert formatProgress(events[2]) == "training, epoch 3/3, Dice 0.800"
    assert session.nodeIds() == ids, "fine-tuning adds no node"


def test_fine_tune_refusals(session, cases, logic):
    params = logic.getParameterNode()
    params.fineTuneVolumes = [cases[0][0]]
    params.fineTuneSegmentations = []
    params.modelId, params.fineTuneName = "base", "x"
    with pytest.raises(PUMITSlicerError, match="exactly one segmentation"):
        logic.fineTune(params)
    with pytest.raises(PUMITSlicerError, match="lower-case letters"):
        logic.startFineTuning(cases, "base", "My Model!")
    with pytest.raises(PUMITSlicerError, match="Select the model to start"):
        logic.startFineTuning(cases, "", "x")
