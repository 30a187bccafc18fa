"""Fine-tuning pairs kept in the parameter node: two node lists of the same length, matched by position.

Works on any object with ``fineTuneVolumes`` / ``fineTuneSegmentations`` list attributes: Slicer's
``parameterNodeWrapper`` returns them as ``ObservedList``, which supports ``+=``, ``append`` and the
assignment of a new plain list, but raises ``NotImplementedError`` on ``+``. So this module only
assigns new plain lists (one write per list) and never concatenates.
"""

from __future__ import annotations

from PUMITSlicerLib.errors import PUMITSlicerError


def pairs(parameters) -> list[tuple[object, object]]:
    """The training pairs ``(volume, segmentation)``; raises if the two lists got out of step."""
    volumes, segmentations = list(parameters.fineTuneVolumes), list(parameters.fineTuneSegmentations)
    if len(volumes) != len(segmentations):
        raise PUMITSlicerError("Each training volume needs exactly one segmentation.")
    return list(zip(volumes, segmentations))


def addPair(parameters, volume, segmentation) -> int:
    """Append ``(volume, segmentation)``; returns the new number of pairs.

    Refuses a missing node, a non-volume / non-segmentation, and a pair that is already listed.
    """
    if volume is None or segmentation is None:
        raise PUMITSlicerError("Select a volume and its segmentation, then press Add pair.")
    if not volume.IsA("vtkMRMLScalarVolumeNode") or not segmentation.IsA("vtkMRMLSegmentationNode"):
        raise PUMITSlicerError("A training pair is a scalar volume and a segmentation.")
    current = pairs(parameters)
    if any(v is volume and s is segmentation for v, s in current):
        raise PUMITSlicerError(f"'{volume.GetName()}' with '{segmentation.GetName()}' is already a training pair.")
    parameters.fineTuneVolumes = [v for v, _ in current] + [volume]
    parameters.fineTuneSegmentations = [s for _, s in current] + [segmentation]
    return len(current) + 1


def removePair(parameters, row: int) -> bool:
    """Remove row ``row`` (0-based, the table's current row) from both lists; False if there is no such row.

    Works on lists that got out of step (a node deleted from the scene drops out of its list), so the
    user can always clean up the table."""
    volumes, segmentations = list(parameters.fineTuneVolumes), list(parameters.fineTuneSegmentations)
    if not 0 <= row < max(len(volumes), len(segmentations)):
        return False
    parameters.fineTuneVolumes = [v for i, v in enumerate(volumes) if i != row]
    parameters.fineTuneSegmentations = [s for i, s in enumerate(segmentations) if i != row]
    return True


def pairRows(parameters) -> list[tuple[str, str]]:
    """Table rows ``(volume name, segmentation name)``; ``?`` for a node deleted from the scene."""
    volumes, segmentations = list(parameters.fineTuneVolumes), list(parameters.fineTuneSegmentations)
    rows = []
    for i in range(max(len(volumes), len(segmentations))):
        names = []
        for nodes in (volumes, segmentations):
            node = nodes[i] if i < len(nodes) else None
            names.append(node.GetName() if node is not None else "?")
        rows.append((names[0], names[1]))
    return rows
