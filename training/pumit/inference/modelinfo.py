"""Loading a model for inference and reading its metadata with sensible defaults.

The metadata convention (``config.json`` → ``"meta"``, written by the trainers)::

    {"name": "knee-seg", "version": "1.0.0",
     "labels": {"0": "background", "1": "femur", ...},     # keyed by class (network output channel)
     "label_values": {"1": 47, ...},                  # optional: label-map value of a class (default: the class)
     "colors": {"1": [r, g, b], ...},                 # 0-255
     "terminology": {"1": "SCT^71341001^Femur"},     # optional, free text per label
     "terminology_modifiers": {"1": "SCT^7771000^Left"},   # optional: laterality etc. of that code
     "input": {"channels": 1, "modality": "MRI",
               "spacing_range_mm": [[lo, hi], [lo, hi], [lo, hi]],   # model order (thickness, H, W)
               "normalization": {...IntensitySpec...},
               "roi": [D, H, W],                     # default sliding-window size (voxels)
               "orientation": "RAS"}}                # "RAS" (canonical, pumit.imageio) or "voxel"

Every key is optional: labels default to ``background``/``label_N``, colors to a fixed palette, the
normalization to the modality's default (:meth:`IntensitySpec.for_modality`, percentile when unknown),
the spacing range to "any spacing" (no resampling), the ROI to a spacing-dependent default and the
orientation to the canonical one (:data:`pumit.imageio.CANONICAL_ORIENTATION`: ``D`` → Superior, ``H`` →
Anterior, ``W`` → Right; for images stored in RAS voxel order, as the NIfTI the reference models were
trained on, it is the stored voxel order, so models older than the field see what they saw in training).
"""

from __future__ import annotations

import colorsys
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from pumit.errors import CancelledError, InputError, ModelError
from pumit.imageio import CANONICAL_ORIENTATION, ORIENTATIONS
from pumit.intensity import IntensitySpec
from pumit.modality import canonical_modality
from pumit.models import load_pretrained

#: ``task`` → the model types (``config.json`` ``model_type``) accepted for it.
TASK_MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "segment": ("segmentation",),
    "reconstruct": ("tokenizer",),
    "classify": ("classification",),
}

#: Default label colors (RGB 0-255), after 3D Slicer's generic anatomy colors; index = label value.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79),
    (221, 130, 101), (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0),
    (255, 250, 220), (230, 220, 70), (200, 200, 235), (250, 250, 210), (244, 214, 49),
    (0, 151, 206), (183, 156, 220), (183, 214, 211), (152, 189, 207), (178, 212, 242),
)


def default_color(value: int) -> tuple[int, int, int]:
    """A distinct RGB (0-255) color for label ``value``: a fixed palette, then golden-ratio hues."""
    if 0 <= value < len(_PALETTE):
        return _PALETTE[value]
    h = (value * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.55 + 0.3 * ((value // 7) % 2), 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


@dataclass(frozen=True)
class LabelInfo:
    """One output class: integer ``value`` in the label map, display ``name``, RGB ``color`` (0-255),
    optional ``terminology`` code (``SCHEME^VALUE^MEANING``) and its ``modifier`` (e.g. ``SCT^7771000^Left``)."""

    value: int
    name: str
    color: tuple[int, int, int]
    terminology: str | None = None
    modifier: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": self.value, "name": self.name, "color": list(self.color)}
        if self.terminology:
            d["terminology"] = self.terminology
            if self.modifier:
                d["terminology_modifier"] = self.modifier
        return d


@dataclass(frozen=True)
class InputRequirements:
    """What a model expects of its input (``meta.input``), defaults filled in.

    ``spacing_range`` is ``((lo, hi),) * 3`` in mm in model order ``(thickness, H, W)``, or ``None``
    (any spacing). ``roi`` is the default sliding-window size ``(D, H, W)`` in voxels, or ``None``.
    ``orientation`` is how the model's array is oriented (:func:`pumit.imageio.plan_layout`).
    """

    channels: int = 1
    modality: str | None = None
    spacing_range: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] | None = None
    normalization: IntensitySpec = field(default_factory=IntensitySpec)
    roi: tuple[int, int, int] | None = None
    normalization_by_modality: dict[str, IntensitySpec] = field(default_factory=dict)
    orientation: str = CANONICAL_ORIENTATION

    def normalization_for(self, modality: str | None) -> IntensitySpec:
        """The normalization for an input of ``modality`` (a model trained on several modalities records one
        per modality in ``input.normalization_by_modality``); the model's default otherwise."""
        if modality:
            key = canonical_modality(modality)
            if key in self.normalization_by_modality:
                return self.normalization_by_modality[key]
        return self.normalization


@dataclass
class LoadedModel:
    """A model ready for inference: the module (eval mode, on the CPU until moved), its id and metadata."""

    module: nn.Module
    model_id: str
    path: Path
    task: str
    meta: dict[str, Any]
    inputs: InputRequirements
    labels: list[LabelInfo]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def required_divisor(self, spacing: tuple[float, float, float]) -> tuple[int, int, int]:
        """Shape divisor ``(d, h, w)`` of the model at ``spacing`` (model order)."""
        m = self.module
        if hasattr(m, "required_divisor"):
            return tuple(int(v) for v in m.required_divisor(spacing))  # type: ignore[return-value]
        vit = getattr(m, "vit", None)
        if vit is not None and hasattr(vit, "token_grid"):
            from pumit.spacing import down_depth_stride

            p = int(vit.patch_size)
            return (down_depth_stride(spacing, p), p, p)
        return (1, 1, 1)


def _model_id(arg: str, path: Path, meta: dict[str, Any], store: Any) -> str:
    from pumit.store import is_full_id

    if not Path(arg).expanduser().exists():
        try:
            return str(store.info(arg).id)
        except CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the id is only informative here
            return arg
    stem = path.name[: -len(".safetensors")] if path.name.lower().endswith(".safetensors") else path.name
    if is_full_id(stem):
        return stem
    name, version = meta.get("name"), meta.get("version")
    if name and version:
        return f"{name}-v{str(version).lstrip('v')}"
    return stem


def load_model(
    model: str | os.PathLike | nn.Module,
    task: str,
    *,
    meta: dict[str, Any] | None = None,
    store: Any | None = None,
) -> LoadedModel:
    """Load ``model`` (a store id ``name-vX.Y.Z``, a bare name = latest version, a model folder, a
    ``.safetensors`` file, or an already built ``nn.Module`` with a ``.meta`` dict) for ``task``
    (``"segment"``, ``"reconstruct"`` or ``"classify"``).

    Raises :class:`~pumit.errors.ModelError` (exit code 3) for an unknown id, a corrupt checkpoint or
    a model of another task (e.g. a tokenizer given to ``segment``).
    """
    if task not in TASK_MODEL_TYPES:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASK_MODEL_TYPES)}")
    allowed = TASK_MODEL_TYPES[task]
    if isinstance(model, nn.Module):
        module, path = model, Path("<in-memory>")
        mtype = getattr(module, "model_type", None)
        if mtype not in allowed:
            raise ModelError(f"the given {mtype or type(module).__name__} model cannot be used for {task}; "
                             f"a {' or '.join(allowed)} model is needed")
        meta = dict(meta if meta is not None else getattr(module, "meta", {}) or {})
        model_id = str(meta.get("name") or type(module).__name__)
        module.eval()
    else:
        if store is None:
            from pumit.store import ModelStore

            store = ModelStore()
        arg = os.fspath(model)
        if not arg.strip():
            raise InputError("no model given; pass --model ID_OR_PATH (see: pumit models list)")
        path = Path(store.resolve(arg))
        module = load_pretrained(path, expected_type=allowed, map_location="cpu")
        meta = dict(getattr(module, "meta", {}) or {})
        model_id = _model_id(arg, path, meta, store)
    num_classes = _num_outputs(module, task)
    inputs = parse_input_requirements(meta, _model_channels(module))
    labels = parse_labels(meta, num_classes, task) if num_classes else []
    return LoadedModel(module=module, model_id=model_id, path=path, task=task, meta=meta, inputs=inputs, labels=labels)


def _num_outputs(module: nn.Module, task: str) -> int:
    if task == "reconstruct":
        return 0
    n = getattr(module, "num_classes", None)
    if n is None:
        n = getattr(getattr(module, "config", None), "num_classes", None)
    if not isinstance(n, int) or n < 1:
        raise ModelError(f"cannot tell the number of classes of this {task} model")
    return n


def _model_channels(module: nn.Module) -> int:
    cfg = getattr(module, "config", None)
    for c in (getattr(getattr(cfg, "vit", None), "in_channels", None), getattr(cfg, "in_channels", None)):
        if isinstance(c, int):
            return c
    return 1


def _as_int_key(key: Any, what: str) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        raise ModelError(f"model metadata {what!r} has a non-integer key {key!r}") from None


def parse_labels(meta: dict[str, Any], num_classes: int, task: str = "segment") -> list[LabelInfo]:
    """Labels ``0 … num_classes-1`` from ``meta`` (``labels``, ``colors``, ``terminology``,
    ``terminology_modifiers``), with defaults."""
    names = meta.get("labels") or {}
    colors = meta.get("colors") or {}
    terms = meta.get("terminology") or {}
    modifiers = meta.get("terminology_modifiers") or {}
    if isinstance(names, list):  # tolerate ["background", "liver", ...]
        names = {str(i): n for i, n in enumerate(names)}
    for what, d in (("labels", names), ("colors", colors), ("terminology", terms),
                    ("terminology_modifiers", modifiers)):
        if not isinstance(d, dict):
            raise ModelError(f"model metadata {what!r} must be an object mapping label values to entries, "
                             f"got {type(d).__name__}")
    names_i = {_as_int_key(k, "labels"): str(v) for k, v in names.items()}
    colors_i = {_as_int_key(k, "colors"): v for k, v in colors.items()}
    terms_i = {_as_int_key(k, "terminology"): str(v) for k, v in terms.items() if v}
    mods_i = {_as_int_key(k, "terminology_modifiers"): str(v) for k, v in modifiers.items() if v}
    values = _label_values(meta.get("label_values"), num_classes)
    out: list[LabelInfo] = []
    for v in range(num_classes):
        default = "background" if (v == 0 and task == "segment") else f"label_{v}"
        out.append(LabelInfo(values[v], names_i.get(v) or default, _color(colors_i.get(v), v), terms_i.get(v),
                             mods_i.get(v) if terms_i.get(v) else None))
    return out


def _label_values(spec: Any, num_classes: int) -> list[int]:
    """Label-map value of each class: ``meta.label_values`` ``{"class": value}`` (e.g. the MUSE ROI indices of
    a parcellation trained on renumbered labels; ``labels``/``colors``/``terminology`` stay keyed by class),
    else the class index itself. Values must be distinct integers in ``0..65535``."""
    values = list(range(num_classes))
    if not spec:
        return values
    if not isinstance(spec, dict):
        raise ModelError(f"model metadata 'label_values' must map classes to label values, got {type(spec).__name__}")
    for k, v in spec.items():
        c = _as_int_key(k, "label_values")
        if not 0 <= c < num_classes or isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
            raise ModelError(f"model metadata 'label_values' entry {k!r}: {v!r} must map a class 0..{num_classes - 1} "
                             "to an integer label value 0..65535")
        values[c] = v
    if len(set(values)) != len(values):
        raise ModelError("model metadata 'label_values' gives two classes the same label value")
    return values


def _color(value: Any, label: int) -> tuple[int, int, int]:
    if value is None:
        return default_color(label)
    try:
        rgb = [float(c) for c in value]
    except (TypeError, ValueError):
        raise ModelError(f"model metadata color of label {label} must be [r, g, b], got {value!r}") from None
    if len(rgb) != 3 or not all(math.isfinite(c) for c in rgb):
        raise ModelError(f"model metadata color of label {label} must be [r, g, b], got {value!r}")
    if all(0.0 <= c <= 1.0 for c in rgb) and any(0.0 < c < 1.0 for c in rgb):  # 0-1 floats (Slicer style)
        rgb = [c * 255.0 for c in rgb]
    return tuple(round(min(max(c, 0.0), 255.0)) for c in rgb)  # type: ignore[return-value]


def meta_triple(spec: dict[str, Any], key: str, cast: type, minimum: float, shape_rule: str,
                range_rule: str) -> tuple | None:
    """``spec[key]`` as a 3-tuple of ``cast`` values ``>= minimum`` (``None`` when absent). Raises
    :class:`ModelError` naming ``input.<key>`` with ``shape_rule`` (not 3 numbers) or ``range_rule``."""
    value = spec.get(key)
    if value is None:
        return None
    try:
        out = tuple(cast(v) for v in value)
    except (TypeError, ValueError):
        raise ModelError(f"model metadata 'input.{key}' {shape_rule}, got {value!r}") from None
    if len(out) != 3 or min(out) < minimum:
        raise ModelError(f"model metadata 'input.{key}' {range_rule}, got {value!r}")
    return out


def parse_input_requirements(meta: dict[str, Any], model_channels: int) -> InputRequirements:
    """``meta["input"]`` with defaults (see the module docstring). The model's own channel count wins."""
    spec = meta.get("input") or {}
    if not isinstance(spec, dict):
        raise ModelError(f"model metadata 'input' must be an object, got {type(spec).__name__}")
    modality = spec.get("modality") or meta.get("modality")
    norm = spec.get("normalization")
    try:
        normalization = IntensitySpec.from_dict(norm) if norm else IntensitySpec.for_modality(modality)
    except (TypeError, ValueError) as e:
        raise ModelError(f"model metadata 'input.normalization' is invalid: {e}") from None
    by_modality = spec.get("normalization_by_modality") or {}
    try:
        normalization_by_modality = {canonical_modality(k): IntensitySpec.from_dict(v) for k, v in by_modality.items()}
    except (TypeError, ValueError, AttributeError) as e:
        raise ModelError(f"model metadata 'input.normalization_by_modality' is invalid: {e}") from None
    rng = spec.get("spacing_range_mm")
    spacing_range = None
    if rng is not None:
        try:
            pairs = tuple((float(lo), float(hi)) for lo, hi in rng)
        except (TypeError, ValueError):
            raise ModelError(f"model metadata 'input.spacing_range_mm' must be [[lo, hi]] * 3, got {rng!r}") from None
        if len(pairs) != 3 or any(not (0 < lo <= hi) for lo, hi in pairs):
            raise ModelError(f"model metadata 'input.spacing_range_mm' must be 3 pairs 0 < lo <= hi, got {rng!r}")
        spacing_range = pairs
    roi = meta_triple(spec, "roi", int, 1, "must be [D, H, W]", "must be 3 positive sizes [D, H, W]")
    orientation = spec.get("orientation") or CANONICAL_ORIENTATION
    if orientation not in ORIENTATIONS:
        raise ModelError(f"model metadata 'input.orientation' must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
    return InputRequirements(
        channels=model_channels,
        modality=str(modality) if modality else None,
        spacing_range=spacing_range,  # type: ignore[arg-type]
        normalization=normalization,
        roi=roi,  # type: ignore[arg-type]
        normalization_by_modality=normalization_by_modality,
        orientation=str(orientation),
    )
