"""Segment / reconstruct through the logic on a real scene, with the CLI stand-in (known answer:
label 1 where the input is above its mean), so geometry errors show as mismatched voxels.

The input is exported via storage nodes (RAS -> LPS file), processed by a child process with
SimpleITK, and read back onto the input's grid; any flip, shift or axis swap breaks equality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import slicer
from pumitslicer_testing import DATA, ijkToRAS, rasCentroid, rotation
from PUMITSlicerLib import PUMITSlicerError, TaskState
from PUMITSlicerLib.segmentations import MODEL_ID_ATTRIBUTE, sidecarPath


def segmentMask(segmentation, volume) -> np.ndarray:
    segmentId = segmentation.GetSegmentation().GetNthSegmentID(0)
    return slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0


def run(task):
    state = task.wait(timeout=120)
    assert state == TaskState.SUCCEEDED, task.errorMessage
    return task.result


def test_oblique_volume_lands_on_the_same_anatomy(session, standin, ctVolume):
    voxels = slicer.util.arrayFromVolume(ctVolume)
    expected = voxels > voxels.mean()
    straight = run(standin.startSegmentation(ctVolume, "standin-model"))

    oblique = slicer.util.addVolumeFromArray(voxels.copy(), ijkToRAS=rotation(35, (1, 2, 0.5)) @ ijkToRAS(ctVolume), name="oblique")
    rotated = run(standin.startSegmentation(oblique, "standin-model"))

    for segmentation, volume in ((straight, ctVolume), (rotated, oblique)):
        mask = segmentMask(segmentation, volume)
        assert np.array_equal(mask, expected), "segment voxels must match the input voxels they were computed from"
        names = [segmentation.GetSegmentation().GetNthSegment(i).GetName() for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
        assert names == ["bright"]
        color = segmentation.GetSegmentation().GetNthSegment(0).GetColor()
        assert np.allclose(color, (250 / 255, 200 / 255, 20 / 255))
        assert segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is volume
        assert segmentation.GetAttribute(MODEL_ID_ATTRIBUTE) == "standin-model"
    # the same anatomy: the rotated result is the straight result moved by the rotation, in RAS
    R = rotation(35, (1, 2, 0.5))
    c0 = rasCentroid(segmentMask(straight, ctVolume), ijkToRAS(ctVolume))
    c1 = rasCentroid(segmentMask(rotated, oblique), ijkToRAS(oblique))
    assert np.allclose(R[:3, :3] @ c0 + R[:3, 3], c1, atol=1e-3)


def test_volume_under_linear_transform(session, standin, ctVolume):
    transform = session.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    toParent = rotation(20, (0, 0, 1))
    toParent[:3, 3] = [10, -5, 3]
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(toParent))
    ctVolume.SetAndObserveTransformNodeID(transform.GetID())
    before = ijkToRAS(ctVolume)
    segmentation = run(standin.startSegmentation(ctVolume, "m"))
    assert np.array_equal(ijkToRAS(ctVolume), before), "the input is never hardened in place"
    assert segmentation.GetParentTransformNode() is transform, "the result follows the input's transform"
    voxels = slicer.util.arrayFromVolume(ctVolume)
    assert np.array_equal(segmentMask(segmentation, ctVolume), voxels > voxels.mean())


def test_non_linear_transform_is_refused(session, standin, ctVolume):
    grid = session.scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    ctVolume.SetAndObserveTransformNodeID(grid.GetID())
    ids = session.nodeIds()
    with pytest.raises(PUMITSlicerError, match="non-linear transform"):
        standin.startSegmentation(ctVolume, "m")
    assert session.nodeIds() == ids


def test_existing_output_segmentation_is_replaced_only_on_success(session, standin, ctVolume):
    output = session.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    output.GetSegmentation().AddEmptySegment("old", "old")
    result = run(standin.startSegmentation(ctVolume, "m", outputSegmentation=output))
    assert result is output
    assert output.GetSegmentation().GetNumberOfSegments() == 1
    assert output.GetSegmentation().GetNthSegment(0).GetName() == "bright"


def test_parameter_node_entry_point_sets_the_output(session, standin, ctVolume):
    params = standin.getParameterNode()
    params.inputVolume = ctVolume
    params.modelId = "m"
    params.device = "CPU"
    task = standin.segment(params)
    assert "--device" in task.process.args and task.process.args[task.process.args.index("--device") + 1] == "cpu"
    segmentation = run(task)
    assert params.outputSegmentation is segmentation


def test_reconstruction_has_the_input_geometry(session, standin, ctVolume):
    oblique = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(ctVolume).copy(),
                                             ijkToRAS=rotation(-25, (0, 1, 1)) @ ijkToRAS(ctVolume), name="obl")
    reconstruction, error = run(standin.startReconstruction(oblique, "tok"))
    for node in (reconstruction, error):
        assert node.GetScene() is session.scene
        assert np.allclose(ijkToRAS(node), ijkToRAS(oblique))
        assert node.GetImageData().GetDimensions() == oblique.GetImageData().GetDimensions()
    assert np.allclose(slicer.util.arrayFromVolume(reconstruction), slicer.util.arrayFromVolume(oblique) + 1)
    assert np.allclose(slicer.util.arrayFromVolume(error), 1)
    assert reconstruction.GetDisplayNode().GetWindow() == pytest.approx(oblique.GetDisplayNode().GetWindow())

    params = standin.getParameterNode()
    params.inputVolume, params.tokenizerId, params.computeErrorMap = oblique, "tok", False
    only = run(standin.reconstruct(params))
    assert only[1] is None and params.reconstructedVolume is only[0]


def test_exported_file_has_the_lps_geometry_of_the_ras_volume(session, ctVolume, tmp_path):
    """What pumit reads: the NRRD's ITK (LPS) geometry is the volume's world RAS geometry with x, y negated."""
    import SimpleITK as sitk
    from PUMITSlicerLib.volumes import writeVolume

    oblique = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(ctVolume).copy(),
                                             ijkToRAS=rotation(40, (1, 0, 1)) @ ijkToRAS(ctVolume), name="obl")
    image = sitk.ReadImage(str(writeVolume(oblique, tmp_path / "x.nrrd")))
    lps = np.diag([-1.0, -1.0, 1.0]) @ ijkToRAS(oblique)[:3]
    spacing = np.array(image.GetSpacing())
    assert np.allclose(np.array(image.GetDirection()).reshape(3, 3) * spacing, lps[:, :3], atol=1e-6)
    assert np.allclose(image.GetOrigin(), lps[:, 3], atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(image), slicer.util.arrayFromVolume(oblique))


def test_sidecar_path_follows_the_cli_contract():
    assert sidecarPath(Path("/t/seg.nii.gz")) == Path("/t/seg.labels.json")
    assert sidecarPath(Path("/t/a.b/seg.nrrd")) == Path("/t/a.b/seg.labels.json")
    assert sidecarPath("x.seg.nrrd") == Path("x.labels.json")
    try:
        from pumit.inference import sidecar_path
    except ImportError:
        pytest.skip("pumit.inference.sidecar_path not available yet")
    for name in ("/t/seg.nii.gz", "/t/seg.nrrd", "/t/a.b/c.mha"):
        assert sidecarPath(name) == Path(sidecar_path(name))


def test_labels_without_description_and_absent_labels(session, ctVolume, tmp_path):
    """Values the sidecar does not name get 'Label N'; described labels absent from the image add no segment."""
    from PUMITSlicerLib.segmentations import SegmentLabel, importLabelmap
    from PUMITSlicerLib.volumes import readVolume, worldIJKToRAS, writeArrayAsVolume

    labels = np.zeros(tuple(reversed(ctVolume.GetImageData().GetDimensions())), np.uint16)
    labels[10:20, 10:20, 10:20] = 1
    labels[30:35, 5:10, 20:30] = 300
    path = writeArrayAsVolume(labels, tmp_path / "l.nrrd", worldIJKToRAS(ctVolume), labelmap=True)
    described = [SegmentLabel(1, "one", (1, 2, 3), "SCT^421060004^Spine"),
                 SegmentLabel(7, "absent", (9, 9, 9))]
    segmentation = importLabelmap(session.scene, readVolume(path, labelmap=True), described, ctVolume)
    s = segmentation.GetSegmentation()
    assert [s.GetNthSegment(i).GetName() for i in range(s.GetNumberOfSegments())] == ["one", "Label 300"]
    entry = slicer.vtkSlicerTerminologyEntry()
    assert session.terminologies.DeserializeTerminologyEntry(s.GetNthSegment(0).GetTerminology(), entry)
    assert entry.GetTerminologyContextName() == "Segmentation category and type - DICOM master list"
    assert (entry.GetTypeObject().GetCodeValue(), entry.GetTypeObject().GetCodeMeaning()) == ("421060004", "Spine")
    for i, value in enumerate((1, 300)):
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, s.GetNthSegmentID(i), ctVolume) > 0
        assert np.array_equal(mask, labels == value)


def test_terminology_codes_resolve_in_the_context_that_holds_them(session):
    """Hippocampus, femur and spine are in the DICOM master list, not in General Anatomy: the entry names
    the dictionary and category where Slicer's terminology logic finds the code (was: always General Anatomy)."""
    from PUMITSlicerLib.segmentations import slicerTerminology
    from PUMITSlicerLib.terminology import DICOM_MASTER, GENERAL_ANATOMY

    terms = session.terminologies
    for code, context in (("SCT^5366008^Hippocampus", DICOM_MASTER), ("SCT^71341001^Femur", DICOM_MASTER),
                          ("SCT^421060004^Spine", DICOM_MASTER), ("SCT^10200004^Liver", GENERAL_ANATOMY)):
        text = slicerTerminology(code)  # the application's logic (slicer.modules.terminologies)
        entry = slicer.vtkSlicerTerminologyEntry()
        assert text and terms.DeserializeTerminologyEntry(text, entry), code
        scheme, value, meaning = code.split("^")
        assert entry.GetTerminologyContextName() == context, code
        assert entry.GetCategoryObject().GetCodeValue() == "123037004", code
        got = entry.GetTypeObject()
        assert (got.GetCodingSchemeDesignator(), got.GetCodeValue(), got.GetCodeMeaning()) == (scheme, value, meaning)
    full = slicerTerminology("SCT^71341001^Femur")
    assert slicerTerminology(full) == full, "a full entry is kept"
    assert slicerTerminology("SCT^99999999^Not a loaded code") is None, "an unknown code is not invented"
    assert slicerTerminology("the femur") is None and slicerTerminology(None) is None


def test_laterality_modifier_is_set_where_the_type_offers_it(session, ctVolume, tmp_path):
    """A label's laterality (the brain model's ``terminology_modifiers``, e.g. left amygdala) becomes the type
    modifier of the Slicer entry, so Slicer names it "Left Amygdala"; a type without that modifier keeps a
    valid entry without it, and a sidecar's ``terminology_modifier`` reaches the segment."""
    import json

    from PUMITSlicerLib.segmentations import importLabelmap, readLabelSidecar, slicerTerminology
    from PUMITSlicerLib.volumes import readVolume, worldIJKToRAS, writeArrayAsVolume

    terms = session.terminologies
    for modifier, meaning in (("SCT^7771000^Left", "Left"), ("SCT^24028007^Right", "Right")):
        entry = slicer.vtkSlicerTerminologyEntry()
        assert terms.DeserializeTerminologyEntry(slicerTerminology("SCT^4958002^Amygdala", None, modifier), entry)
        assert entry.GetTypeObject().GetCodeMeaning() == "Amygdala"
        got = entry.GetTypeModifierObject()
        assert (got.GetCodingSchemeDesignator(), got.GetCodeValue(), got.GetCodeMeaning()) == \
            ("SCT", modifier.split("^")[1], meaning)
    # hippocampus in this DICOM-master extract lists no modifiers: the entry is the plain type, still valid
    entry = slicer.vtkSlicerTerminologyEntry()
    assert terms.DeserializeTerminologyEntry(slicerTerminology("SCT^5366008^Hippocampus", None, "SCT^7771000^Left"),
                                             entry)
    assert entry.GetTypeObject().GetCodeValue() == "5366008" and not entry.GetTypeModifierObject().GetCodeValue()
    assert slicerTerminology("SCT^4958002^Amygdala", None, "left") == slicerTerminology("SCT^4958002^Amygdala")

    # through a sidecar as pumit segment writes it (LabelInfo.to_dict), into a segment
    from pumit.inference.modelinfo import parse_labels

    meta = {"labels": {"1": "Amygdala_L"}, "terminology": {"1": "SCT^4958002^Amygdala"},
            "terminology_modifiers": {"1": "SCT^7771000^Left"}}
    sidecar = tmp_path / "l.labels.json"
    sidecar.write_text(json.dumps({"model": "m", "labels": [lb.to_dict() for lb in parse_labels(meta, 2)]}))
    _, described = readLabelSidecar(sidecar)
    assert described[0].modifier == "SCT^7771000^Left"
    labels = np.zeros(tuple(reversed(ctVolume.GetImageData().GetDimensions())), np.uint16)
    labels[10:20, 10:20, 10:20] = 1
    path = writeArrayAsVolume(labels, tmp_path / "l.nrrd", worldIJKToRAS(ctVolume), labelmap=True)
    segment = importLabelmap(session.scene, readVolume(path, labelmap=True), described, ctVolume
                             ).GetSegmentation().GetNthSegment(0)
    entry = slicer.vtkSlicerTerminologyEntry()
    assert terms.DeserializeTerminologyEntry(segment.GetTerminology(), entry)
    assert entry.GetTypeModifierObject().GetCodeMeaning() == "Left"


def test_real_tptbox_label_map_round_trip(session, ctVolume, tmp_path):
    """A real vertebra mask loaded like Add Data, written for pumit and read back, keeps every voxel."""
    from PUMITSlicerLib.segmentations import SegmentLabel, importLabelmap
    from PUMITSlicerLib.volumes import readVolume, writeVolume

    mask = session.loadVolume(DATA / "sub-ct_seg-vert_label-22_msk.nii.gz", "vert", labelmap=True)
    path = writeVolume(mask, tmp_path / "m.nrrd", labelmap=True)
    values = np.unique(slicer.util.arrayFromVolume(mask))[1:]
    segmentation = importLabelmap(session.scene, readVolume(path, labelmap=True),
                                  [SegmentLabel(int(v), f"V{v}", (200, 100, 50)) for v in values], ctVolume)
    for i, v in enumerate(values):
        seg = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentation.GetSegmentation().GetNthSegmentID(i), ctVolume)
        assert np.array_equal(seg > 0, slicer.util.arrayFromVolume(mask) == v)
