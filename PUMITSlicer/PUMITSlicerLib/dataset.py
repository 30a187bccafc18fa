"""Write the user's annotated cases as a small MSD-style dataset for ``pumit train segment``.

Layout (Medical Segmentation Decathlon)::

    DATASET/
      dataset.json          {"labels": {"0": "background", "1": NAME, ...}, "modality": {"0": "CT"}, "training": [...]}
      imagesTr/case_000.nii.gz
      labelsTr/case_000.nii.gz

Each label map is computed on its volume's voxel grid and both files are written with the volume's
world geometry (RAS in Slicer, LPS in the files). Segment names map to the same label value in every
case; cases whose segment names differ are refused. The user's nodes are only read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PUMITSlicerLib.errors import PUMITSlicerError
from PUMITSlicerLib.segmentations import segmentationToLabelArray, segmentNames
from PUMITSlicerLib.volumes import (
    validateVolume,
    worldIJKToRAS,
    writeArrayAsVolume,
    writeVolume,
)

#: A training case: (vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode).
TrainingPair = tuple[Any, Any]


def labelNamesForCases(pairs: Sequence[TrainingPair]) -> list[str]:
    """Segment names shared by all cases, in the first case's order (label value = position + 1).

    Raises :class:`PUMITSlicerError` for no cases, a missing node, a segmentation without segments,
    a name used twice in one segmentation, or names that differ between cases.
    """
    if not pairs:
        raise PUMITSlicerError("Add at least one (volume, segmentation) pair to fine-tune on.")
    reference: list[str] | None = None
    referenceNode = None
    for volume, segmentation in pairs:
        if segmentation is None or not segmentation.IsA("vtkMRMLSegmentationNode"):
            raise PUMITSlicerError("Every training case needs a segmentation: select one for each volume.")
        validateVolume(volume, "training volume")
        names = segmentNames(segmentation)
        if not names:
            raise PUMITSlicerError(f"Segmentation '{segmentation.GetName()}' has no segments.")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PUMITSlicerError(
                f"Segmentation '{segmentation.GetName()}' has several segments named {', '.join(map(repr, duplicates))}. "
                "Give every segment a unique name.")
        if reference is None:
            reference, referenceNode = names, segmentation
        elif set(names) != set(reference):
            missing = sorted(set(reference) - set(names))
            extra = sorted(set(names) - set(reference))
            details = []
            if missing:
                details.append(f"missing {', '.join(map(repr, missing))}")
            if extra:
                details.append(f"extra {', '.join(map(repr, extra))}")
            raise PUMITSlicerError(
                f"Segment names differ between cases: '{segmentation.GetName()}' has {'; '.join(details)} "
                f"compared with '{referenceNode.GetName()}'. Use the same segment names in every case.")
    return list(reference or [])


def writeTrainingDataset(
    pairs: Sequence[TrainingPair], folder: str | Path, *, modality: str = "CT", name: str = "PUMITSlicer"
) -> tuple[Path, list[str]]:
    """Write ``pairs`` as an MSD dataset in ``folder``; returns (path of dataset.json, label names)."""
    names = labelNamesForCases(pairs)
    folder = Path(folder)
    training = []
    for index, (volume, segmentation) in enumerate(pairs):
        labels = segmentationToLabelArray(segmentation, volume, names)
        ijkToRAS = worldIJKToRAS(volume)
        case = f"case_{index:03d}.nii.gz"
        writeVolume(volume, folder / "imagesTr" / case, ijkToRAS=ijkToRAS)
        writeArrayAsVolume(labels, folder / "labelsTr" / case, ijkToRAS, labelmap=True)
        training.append({"image": f"./imagesTr/{case}", "label": f"./labelsTr/{case}"})
    description = {
        "name": name,
        "description": "Cases annotated in 3D Slicer, exported by PUMITSlicer for fine-tuning",
        "tensorImageSize": "3D",
        "modality": {"0": modality},
        "labels": {"0": "background", **{str(i): n for i, n in enumerate(names, start=1)}},
        "numTraining": len(training),
        "numTest": 0,
        "training": training,
        "test": [],
    }
    path = folder / "dataset.json"
    path.write_text(json.dumps(description, indent=1), encoding="utf-8")
    return path, names
