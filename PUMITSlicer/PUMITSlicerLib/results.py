"""What the module does with a finished run, GUI-free: modality of a volume, Show 3D, subject
hierarchy placement, the views that show a reconstruction and its error map, and status lines.

The widget only applies these decisions to Qt widgets and slice views.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import slicer

logger = logging.getLogger(__name__)

#: DICOM Modality (0008,0060) -> the module's modality choices.
DICOM_MODALITIES = {"CT": "CT", "MR": "MRI", "PT": "PET", "US": "US"}
#: Below this value a volume's intensities are Hounsfield units (air is -1000 HU; MRI, PET, US are >= 0).
CT_AIR_THRESHOLD = -500.0
_DEVICE_RE = re.compile(r"\bon (cuda(?::\d+)?|cpu|mps)\b")


# -- modality ------------------------------------------------------------------------------------------

def _subjectHierarchy(scene):
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene) if scene is not None else None


def dicomModality(volume) -> str | None:
    """The module modality from the DICOM Modality of ``volume``'s series (subject hierarchy attribute
    set by Slicer's DICOM import), None when the volume did not come from DICOM or the value is unknown."""
    sh = _subjectHierarchy(volume.GetScene()) if volume is not None else None
    if sh is None:
        return None
    item = sh.GetItemByDataNode(volume)
    attribute = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMSeriesModalityAttributeName()
    while item and item != sh.GetSceneItemID():
        value = sh.GetItemAttribute(item, attribute)
        if value:
            return DICOM_MODALITIES.get(value.strip().upper())
        item = sh.GetItemParent(item)
    return None


def volumeModality(volume) -> tuple[str | None, str]:
    """``(modality, how)``: from DICOM when present, else ``CT`` when the intensities are Hounsfield
    units (minimum below -500), else ``(None, "unknown")``."""
    if volume is None or volume.GetImageData() is None:
        return None, "unknown"
    modality = dicomModality(volume)
    if modality:
        return modality, "DICOM"
    voxels = slicer.util.arrayFromVolume(volume)
    if voxels.size and np.issubdtype(voxels.dtype, np.number) and float(voxels.min()) < CT_AIR_THRESHOLD:
        return "CT", "Hounsfield units"
    return None, "unknown"


def reconstructionModality(choice: str, volume) -> str:
    """The modality Reconstruct sends: the user's choice, or for ``auto`` the volume's (DICOM, HU).
    Raises :class:`PUMITSlicerError` when ``auto`` cannot tell, instead of silently normalizing as CT."""
    from PUMITSlicerLib.errors import PUMITSlicerError

    if choice and choice != "auto":
        return choice
    modality, _how = volumeModality(volume)
    if modality is None:
        raise PUMITSlicerError("The modality of this volume is unknown (no DICOM modality, not CT): choose it "
                               "in Reconstruct > Modality.")
    return modality


# -- segmentation results --------------------------------------------------------------------------------

def applyShow3D(segmentation, show: bool) -> None:
    """Show the segmentation in 3D (closed surfaces built) or not (surfaces removed, nothing computed)."""
    if segmentation is None:
        return
    if segmentation.GetDisplayNode() is None:
        segmentation.CreateDefaultDisplayNodes()
    display = segmentation.GetDisplayNode()
    if show:
        segmentation.CreateClosedSurfaceRepresentation()
    else:
        segmentation.RemoveClosedSurfaceRepresentation()
    display.SetVisibility3D(bool(show))


def placeNextToInput(inputVolume, node) -> int:
    """Put ``node``'s subject hierarchy item under the input's study (or the input's folder), so a result
    lands in the patient's study like the input. Returns the parent item id (0: left where it was)."""
    scene = inputVolume.GetScene() if inputVolume is not None else None
    sh = _subjectHierarchy(scene)
    if sh is None or node is None:
        return 0
    inputItem = sh.GetItemByDataNode(inputVolume)
    if not inputItem:
        return 0
    parent = sh.GetItemAncestorAtLevel(inputItem, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())
    if not parent:
        parent = sh.GetItemParent(inputItem)
    if not parent or parent == sh.GetSceneItemID():
        return 0
    item = sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)
    sh.SetItemParent(item, parent)
    return parent


# -- reconstruction results ------------------------------------------------------------------------------

def reconstructionViews(inputVolume, reconstruction, errorMap) -> dict[str, dict[str, Any]]:
    """Slice view setup after Reconstruct: the input in Red, the reconstruction in Yellow with the error
    map over it (foreground, half opacity) when there is one. ``{view: {background, foreground, opacity}}``."""
    def nodeId(node):
        return node.GetID() if node is not None else None

    return {"Red": {"background": nodeId(inputVolume), "foreground": None, "opacity": 0.0},
            "Yellow": {"background": nodeId(reconstruction), "foreground": nodeId(errorMap),
                       "opacity": 0.5 if errorMap is not None else 0.0}}


def reconstructionMetrics(doneData: dict[str, Any] | None, outputPath: Path | None) -> dict[str, float]:
    """The ``metrics`` of a reconstruction: from the final progress event's data, else from a JSON sidecar
    next to the output (``<stem>*.json`` holding ``"metrics"``). Empty when pumit reported none (old versions)."""
    candidates = []
    if doneData and isinstance(doneData.get("metrics"), dict):
        candidates.append(doneData["metrics"])
    if outputPath is not None:
        stem = Path(outputPath).name.split(".")[0]
        for path in sorted(Path(outputPath).parent.glob(f"{stem}*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
                candidates.append(data["metrics"])
    for metrics in candidates:
        return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {}


def formatReconstructionMetrics(metrics: dict[str, float]) -> str:
    """``Pearson 0.97, SSIM 0.91, std ratio 0.95, PSNR +6.2 dB over a constant image``; PSNR alone is
    never shown (a constant image already scores a high PSNR on a mostly dark volume)."""
    parts = []
    for key, label, fmt in (("pearson", "Pearson", "{:.3f}"), ("ssim", "SSIM", "{:.3f}"),
                            ("std_ratio", "std ratio", "{:.2f}")):
        if key in metrics and math.isfinite(metrics[key]):
            parts.append(f"{label} {fmt.format(metrics[key])}")
    gain = metrics.get("psnr_gain_db")
    if gain is None and "psnr_db" in metrics and "psnr_constant_db" in metrics:
        gain = metrics["psnr_db"] - metrics["psnr_constant_db"]
    if gain is not None and math.isfinite(gain):
        parts.append(f"PSNR {gain:+.1f} dB over a constant image")
    if not parts:
        return "no quality metrics reported by this pumit version"
    return ", ".join(parts)


def inputNotes(sidecar: Path) -> dict[str, str]:
    """``input_notes`` of a segmentation's ``.labels.json`` sidecar: where the input departs from what the
    model was made for (``modality``: e.g. a CT given to an MRI model; ``field_of_view``: a crop far smaller
    than the model's intended field of view). Empty when there are none or pumit wrote none (old versions)."""
    try:
        data = json.loads(Path(sidecar).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    notes = data.get("input_notes") if isinstance(data, dict) else None
    if not isinstance(notes, dict):
        return {}
    return {str(k): str(v) for k, v in notes.items() if str(v).strip()}


def formatInputNotes(notes: dict[str, str]) -> str:
    """The notes for the status line (``""`` when there are none): ``Note: ...; ...``."""
    return ("Note: " + "; ".join(notes.values())) if notes else ""


# -- run summary -----------------------------------------------------------------------------------------

def deviceFromMessages(messages: Iterable[str]) -> str | None:
    """The device pumit reported (``"... on cuda ..."`` / ``"on cpu"`` in its progress messages), the last one."""
    found = None
    for message in messages:
        match = _DEVICE_RE.search(message or "")
        if match:
            found = match.group(1)
    return found


def runSummary(name: str, seconds: float, device: str | None) -> str:
    """``Segmentation done in 12 s on CPU.``"""
    if not device:
        where = ""
    elif device == "cpu":
        where = "CPU"
    elif device == "mps":
        where = "Apple GPU"
    else:
        where = f"GPU ({device})"
    return f"{name} done in {seconds:.0f} s" + (f" on {where}" if where else "") + "."
