"""The model browser's data: installed and built-in models, listed without torch, and a default per volume.

``pumit models list --json`` only reads JSON (no torch), so the list is filled when the module is
entered, before any PyTorch install. Where even that cannot run (Slicer's Python lacks a package the
store needs before the first dependency install), the built-in models shipped inside the extension's
``pumit`` copy are read straight from their ``config.json`` files.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PUMITSlicerLib.errors import PUMITSlicerError

logger = logging.getLogger(__name__)

#: pumit modality names -> the module's modality choices (``Choice`` of the parameter node).
MODALITY_NAMES = {"ct": "CT", "mri": "MRI", "mr": "MRI", "pet": "PET", "pt": "PET", "us": "US"}
_VERSION_RE = re.compile(r"-v(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class ModelInfo:
    """One row of the model browser."""

    id: str
    modelType: str  # "segmentation", "tokenizer", ...
    task: str
    modalities: tuple[str, ...]  # module names ("CT", "MRI", ...); empty: not stated
    description: str
    sizeBytes: int
    builtin: bool = False
    spacing: tuple[float, float, float] | None = None  # mm the model works at; None: the input's own
    minFieldOfViewMm: tuple[float, float, float] | None = None  # the smallest image extent it is meant for (mm)

    def fits(self, extentMm: tuple[float, ...] | None) -> bool:
        """Whether an image of ``extentMm`` (any axis order) covers the field of view the model is meant for
        (compared sorted, so the axis order does not matter); True when either is unknown."""
        if self.minFieldOfViewMm is None or not extentMm:
            return True
        return all(e >= m for e, m in zip(sorted(extentMm), sorted(self.minFieldOfViewMm)))

    @property
    def sizeText(self) -> str:
        """``4.3 MB`` (powers of 1024)."""
        size = float(self.sizeBytes)
        for unit in ("B", "KB", "MB", "GB"):
            if size < 1024 or unit == "GB":
                return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            size /= 1024
        return f"{size:.1f} GB"

    @property
    def modalityText(self) -> str:
        return ", ".join(self.modalities) if self.modalities else "any"

    @property
    def version(self) -> tuple[int, int, int]:
        match = _VERSION_RE.search(self.id)
        return tuple(int(g) for g in match.groups()) if match else (0, 0, 0)

    def row(self) -> tuple[str, str, str, str]:
        """Table columns: model, task, modality, size."""
        return self.id, self.task, self.modalityText, self.sizeText


def _modalities(inputMeta: dict[str, Any]) -> tuple[str, ...]:
    names = []
    single = inputMeta.get("modality")
    if isinstance(single, str):
        names.append(single)
    names += list((inputMeta.get("normalization_by_modality") or {}).keys())
    out = []
    for name in names:
        module = MODALITY_NAMES.get(str(name).lower())
        if module and module not in out:
            out.append(module)
    return tuple(out)


def modelInfo(entry: dict[str, Any], *, builtin: bool = False) -> ModelInfo:
    """A :class:`ModelInfo` from a ``pumit models list --json`` entry (or a built-in model's ``meta``)."""
    inputMeta = entry.get("input") if isinstance(entry.get("input"), dict) else {}
    return ModelInfo(id=str(entry.get("id", "")), modelType=str(entry.get("model_type", "")),
                     task=str(entry.get("task") or ""), modalities=_modalities(inputMeta),
                     description=str(entry.get("description") or ""), sizeBytes=int(entry.get("size") or 0),
                     builtin=builtin or bool(entry.get("builtin")), spacing=_spacing(inputMeta.get("spacing")),
                     minFieldOfViewMm=_spacing(inputMeta.get("min_field_of_view_mm")))


def _spacing(value) -> tuple[float, float, float] | None:
    try:
        spacing = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return spacing if len(spacing) == 3 and all(v > 0 for v in spacing) else None


def builtinModels(packageDir: Path | None) -> list[ModelInfo]:
    """The models shipped inside ``packageDir/pumit/assets/models`` (read-only JSON, no pumit import)."""
    if packageDir is None:
        return []
    models = []
    for config in sorted((Path(packageDir) / "pumit" / "assets" / "models").glob("*/config.json")):
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            meta = data.get("meta", {})
            size = sum(p.stat().st_size for p in config.parent.iterdir() if p.is_file())
            models.append(modelInfo({"id": config.parent.name, "model_type": data.get("model_type", ""),
                                     "task": meta.get("task"), "input": meta.get("input", {}),
                                     "description": meta.get("description"), "size": size}, builtin=True))
        except (OSError, ValueError, AttributeError) as e:
            logger.warning("Skipping unreadable built-in model %s: %s", config.parent.name, e)
    return models


def listModelInfos(logic, modelType: str | None = None) -> tuple[list[ModelInfo], str]:
    """``(models, note)``: the store's models through the CLI (no torch); if the CLI cannot run yet,
    the built-in ones and a note saying why the list may be incomplete."""
    from PUMITSlicerLib.logic import bundledPackageDir

    try:
        models, note = [modelInfo(e) for e in logic.listModels()], ""
    except PUMITSlicerError as e:
        logger.info("Listing the model store failed (%s); showing the built-in models", e)
        models = builtinModels(bundledPackageDir())
        note = "Built-in models only: the model store can be read once the Python packages are installed."
    return [m for m in models if modelType is None or m.modelType == modelType], note


def defaultModel(models: list[ModelInfo], modality: str | None, extentMm: tuple[float, ...] | None = None
                 ) -> ModelInfo | None:
    """The model to preselect for a volume of ``modality`` (module name, None: unknown) and physical
    extent ``extentMm`` (mm, None: unknown): the newest version among those made for that modality, else the
    newest one made for any modality. A volume of unknown modality gets the newest of all; a known modality
    never gets a model made for another one (None: the user chooses). Among candidates, a model whose
    declared field of view the volume covers (a whole-head model for a whole head) comes first, and a model
    whose field of view the volume does not cover (a whole-head model for a crop) comes last."""
    def newest(candidates):
        if not candidates:
            return None
        return max(candidates, key=lambda m: (m.fits(extentMm), m.fits(extentMm) and m.minFieldOfViewMm is not None,
                                              m.version, m.id))

    return (newest([m for m in models if modality and modality in m.modalities])
            or newest([m for m in models if not m.modalities])
            or (newest(models) if modality is None else None))


def volumeExtentMm(volumeNode) -> tuple[float, float, float] | None:
    """Physical extent (mm) of a scalar volume node along its three voxel axes, or None without image data."""
    image = volumeNode.GetImageData() if volumeNode is not None else None
    if image is None:
        return None
    dims, spacing = image.GetDimensions(), volumeNode.GetSpacing()
    return tuple(float(n) * float(s) for n, s in zip(dims, spacing))  # type: ignore[return-value]


def chooseDefaultModels(parameters, segmentationModels: list[ModelInfo], tokenizers: list[ModelInfo],
                        autoChosen: dict[str, str]) -> dict[str, str]:
    """Preselect ``modelId`` / ``tokenizerId`` for ``parameters.inputVolume``: a parameter that is empty,
    or still holds the previous automatic choice, gets :func:`defaultModel` for the volume's modality
    (emptied when none suits it); a model the user picked is kept. Returns the new automatic choices
    (pass them back next time)."""
    from PUMITSlicerLib.results import volumeModality

    modality, _how = volumeModality(parameters.inputVolume)
    extent = volumeExtentMm(parameters.inputVolume)
    chosen = {}
    for name, models in (("modelId", segmentationModels), ("tokenizerId", tokenizers)):
        current = getattr(parameters, name)
        if current and current != autoChosen.get(name):
            continue
        pick = defaultModel(models, modality, extent)
        if pick is not None:
            if pick.id != current:
                setattr(parameters, name, pick.id)
            chosen[name] = pick.id
        elif current:  # the previous automatic choice does not suit this volume
            setattr(parameters, name, "")
    return chosen
