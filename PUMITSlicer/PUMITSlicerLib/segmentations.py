"""Label maps <-> segmentation nodes, with the model's segment names, colors and terminology.

* :func:`importLabelmap` turns a result label map (read from the pumit process's output, not in the
  scene) into a segmentation node on the *input volume's* geometry: its segments share one
  labelmap layer whose voxel ``(i, j, k)`` is the model's answer for the input's voxel ``(i, j, k)``.
  The node is completely built before it enters the scene (all or nothing).
* :func:`segmentationToLabelArray` exports selected segments as a label array on a volume's voxel
  grid (segmentation and volume transforms accounted for); the segmentation is not modified.

Label descriptions come from the sidecar JSON the ``pumit segment`` command writes next to its
output: ``{"model": id, "labels": [{"value": 1, "name": ..., "color": [r, g, b], "terminology": ...,
"terminology_modifier": ...}]}`` (the last two optional: a code and its laterality, e.g. ``SCT^7771000^Left``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from PUMITSlicerLib.errors import PUMITSlicerError
from PUMITSlicerLib.terminology import resolveTerminology, terminologyLogic

logger = logging.getLogger(__name__)

#: Multi-part suffixes replaced as a whole when deriving the sidecar name (as ``pumit.imageio.full_suffix``).
_MULTI_SUFFIXES = (".nii.gz", ".seg.nrrd", ".tar.gz")
#: Attribute set on result segmentation nodes: the id of the model that produced them.
MODEL_ID_ATTRIBUTE = "PUMIT.ModelId"
#: Colors for label values the sidecar does not describe (RGB 0-255).
_FALLBACK_COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


@dataclass(frozen=True)
class SegmentLabel:
    """One output class of a model: label ``value`` in the label map, segment ``name``, ``color`` RGB 0-255
    and an optional terminology (a Slicer entry string or a ``SCHEME^VALUE^MEANING`` code) with an optional
    ``modifier`` code of that type (laterality: ``SCT^24028007^Right`` / ``SCT^7771000^Left``)."""

    value: int
    name: str
    color: tuple[int, int, int]
    terminology: str | None = None
    modifier: str | None = None


def sidecarPath(outputPath: str | Path) -> Path:
    """Path of the labels sidecar of a ``pumit segment`` output: the full suffix replaced by ``.labels.json``."""
    p = Path(outputPath)
    name = p.name
    suffix = next((s for s in _MULTI_SUFFIXES if name.lower().endswith(s)), p.suffix)
    return p.with_name(name[: len(name) - len(suffix)] + ".labels.json")


def readLabelSidecar(path: str | Path) -> tuple[str, list[SegmentLabel]]:
    """Read a labels sidecar; returns ``(model id, labels)``. Label 0 (background) is ignored."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["labels"]
        labels = []
        for entry in entries:
            value = int(entry["value"])
            if value == 0:
                continue
            name = str(entry.get("name") or f"Label {value}")
            color = entry.get("color") or _FALLBACK_COLORS[value % len(_FALLBACK_COLORS)]
            rgb = tuple(int(c) for c in color)
            if value < 0 or len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError(f"bad value or color in {entry}")
            terminology = entry.get("terminology") or None
            modifier = entry.get("terminology_modifier") or None
            labels.append(SegmentLabel(value, name, rgb, str(terminology) if terminology else None,
                                       str(modifier) if terminology and modifier else None))
    except FileNotFoundError as e:
        raise PUMITSlicerError(f"The pumit process wrote no label description ({path.name}).") from e
    except (ValueError, KeyError, TypeError) as e:
        raise PUMITSlicerError(f"The label description {path.name} written by pumit is invalid: {e}") from e
    if len({lb.value for lb in labels}) != len(labels):
        raise PUMITSlicerError(f"The label description {path.name} lists a label value twice.")
    return str(data.get("model", "")), labels


def slicerTerminology(text: str | None, logic=None, modifier: str | None = None) -> str | None:
    """A Slicer terminology entry for a sidecar's ``terminology`` (and ``terminology_modifier``), resolved
    against the loaded terminologies (see :func:`PUMITSlicerLib.terminology.resolveTerminology`)."""
    return resolveTerminology(text, logic, modifier)


def _labelCounts(image: vtk.vtkImageData) -> np.ndarray:
    voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    if voxels.dtype.kind not in "ui" or (voxels.size and voxels.min() < 0):
        raise PUMITSlicerError("The segmentation result is not a label map of non-negative integers.")
    return np.bincount(voxels.ravel()) if voxels.size else np.zeros(1, int)


def buildSegmentation(labelImage: vtk.vtkImageData, ijkToRAS: vtk.vtkMatrix4x4, labels: list[SegmentLabel]) -> slicer.vtkSegmentation:
    """A segmentation with one segment per label value present in ``labelImage`` (geometry ``ijkToRAS``),
    all sharing one labelmap layer. Values without a description become ``Label N`` with a warning;
    described labels absent from the image are left out (an empty segment is never created)."""
    counts = _labelCounts(labelImage)
    present = [int(v) for v in np.nonzero(counts)[0] if v != 0]
    described = {lb.value: lb for lb in labels}
    terms = terminologyLogic()
    missing = [lb.name for lb in labels if lb.value not in present]
    if missing:
        logger.info("Labels not found in this image: %s", ", ".join(missing))
    orientedImage = slicer.vtkOrientedImageData()
    orientedImage.ShallowCopy(labelImage)
    orientedImage.SetImageToWorldMatrix(ijkToRAS)
    segmentation = slicer.vtkSegmentation()
    labelmapName = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    segmentation.SetSourceRepresentationName(labelmapName)
    segmentation.SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
        slicer.vtkSegmentationConverter.SerializeImageGeometry(orientedImage))
    for value in present:
        label = described.get(value)
        if label is None:
            logger.warning("Label value %d has no name in the model's label description", value)
            label = SegmentLabel(value, f"Label {value}", _FALLBACK_COLORS[value % len(_FALLBACK_COLORS)])
        segment = slicer.vtkSegment()
        segment.SetName(label.name)
        segment.SetColor(*(c / 255.0 for c in label.color))
        segment.SetLabelValue(value)
        terminology = slicerTerminology(label.terminology, terms, label.modifier) if label.terminology else None
        if terminology:
            segment.SetTerminology(terminology)
        segment.AddRepresentation(labelmapName, orientedImage)
        segmentation.AddSegment(segment, f"{_segmentIdBase(label.name)}_{value}")
    return segmentation


def _segmentIdBase(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name) or "segment"


def importLabelmap(
    scene,
    labelNode,
    labels: list[SegmentLabel],
    inputVolume,
    *,
    outputSegmentation=None,
    modelId: str = "",
) -> slicer.vtkMRMLSegmentationNode:
    """Put the label map of ``labelNode`` (not in the scene, already checked to be on the input's grid)
    into ``outputSegmentation`` (its segments are replaced) or a new node named after the input.

    The segments get the input's *local* ``IJKToRAS`` and the node the input's parent transform,
    so the segmentation overlays the input exactly and follows it if the transform changes.
    """
    ijkToRAS = vtk.vtkMatrix4x4()
    inputVolume.GetIJKToRASMatrix(ijkToRAS)
    segmentation = buildSegmentation(labelNode.GetImageData(), ijkToRAS, labels)
    if segmentation.GetNumberOfSegments() == 0:
        raise PUMITSlicerError("The model found none of its structures in this volume (the result is empty).")
    created = outputSegmentation is None
    node = slicer.vtkMRMLSegmentationNode() if created else outputSegmentation
    if created:
        node.SetName(scene.GenerateUniqueName(f"{inputVolume.GetName()} segmentation"))
        scene.AddNode(node)
    try:
        wasModifying = node.StartModify()
        node.SetAndObserveSegmentation(segmentation)
        node.SetAndObserveTransformNodeID(inputVolume.GetTransformNodeID())
        node.SetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole(), inputVolume.GetID())
        node.SetAttribute(MODEL_ID_ATTRIBUTE, modelId)
        node.EndModify(wasModifying)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
    except Exception:
        if created:
            scene.RemoveNode(node)
        raise
    return node


def segmentNames(segmentationNode) -> list[str]:
    """Names of the segments of a segmentation node, in display order."""
    segmentation = segmentationNode.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def segmentationToLabelArray(segmentationNode, volumeNode, names: list[str]) -> np.ndarray:
    """Label array ``(k, j, i)`` on ``volumeNode``'s voxel grid: segment ``names[n]`` -> value ``n + 1``.

    Where segments overlap, the later name wins. Raises if a segment is missing or has no voxel
    inside the volume. Nothing is added to the scene and the segmentation is not modified.
    """
    segmentation = segmentationNode.GetSegmentation()
    ids = vtk.vtkStringArray()
    for segmentName in names:
        segmentId = segmentation.GetSegmentIdBySegmentName(segmentName)
        if not segmentId:
            raise PUMITSlicerError(f"'{segmentationNode.GetName()}' has no segment named '{segmentName}'.")
        ids.InsertNextValue(segmentId)
    merged = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GenerateMergedLabelmapInReferenceGeometry(
        segmentationNode, volumeNode, ids, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, merged, None)
    dims = volumeNode.GetImageData().GetDimensions()
    labels = np.zeros(tuple(reversed(dims)), np.uint8 if len(names) < 256 else np.uint16)
    extent = merged.GetExtent()
    if merged.GetPointData().GetScalars() is not None and extent[1] >= extent[0]:
        mergedDims = merged.GetDimensions()
        voxels = numpy_support.vtk_to_numpy(merged.GetPointData().GetScalars()).reshape(tuple(reversed(mergedDims)))
        # place the merged extent into the volume's extent (0..dims-1), clipping what lies outside
        lo = [max(extent[2 * a], 0) for a in range(3)]
        hi = [min(extent[2 * a + 1], dims[a] - 1) for a in range(3)]
        if all(h >= low for low, h in zip(lo, hi)):
            src = tuple(slice(lo[a] - extent[2 * a], hi[a] - extent[2 * a] + 1) for a in (2, 1, 0))
            dst = tuple(slice(lo[a], hi[a] + 1) for a in (2, 1, 0))
            labels[dst] = voxels[src]
    counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
    for value, segmentName in enumerate(names, start=1):
        if counts[value] == 0:
            raise PUMITSlicerError(
                f"Segment '{segmentName}' of '{segmentationNode.GetName()}' is empty (no voxel inside "
                f"volume '{volumeNode.GetName()}'). Paint it or delete it from every case.")
    return labels
