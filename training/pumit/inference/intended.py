"""A segmentation model's intended input (``meta.input``) checked against the image it is given.

The fields (all optional; a model without them accepts anything, as before)::

    "input": {"modality": "MRI",                         # what the model was trained on
              "dimensionality": "3d",                    # "3d" (volumes only), "2d" (single slices) or "any"
              "min_field_of_view_mm": [110, 150, 120],   # smallest extent it is meant for, model order (D, H, W)
              "description": "whole-head T1-weighted MRI"}  # named in messages

Decisions (documented in docs/brain.md, "Intended input"):

* **2D image given to a 3D model** (or a volume to a 2D model): an :class:`~pumit.errors.InputError`
  (exit code 2) naming the intended input. A 3D network run on one slice does not produce a usable map, so
  no output is written.
* **CT given to an MRI model** (or the reverse; the modality comes from ``--modality``, the DICOM tag or
  :func:`pumit.modality.detect_modality` when it finds Hounsfield units): segmented with a warning (printed
  by :func:`pumit.inference.segment.check_segmentable`, same rule) that is also recorded in the sidecar.
* **A field of view smaller than ``min_field_of_view_mm`` on any axis** (a crop of the head): segmented
  where it can be, with a note in the sidecar naming the axes, the image's extent and the intended one.

Extents are ``native_shape × native_spacing`` in model layout (``D`` → superior, ``H`` → anterior, ``W`` →
right for canonically oriented models, :mod:`pumit.imageio`), in millimetres.
"""

from __future__ import annotations

from typing import Any

from pumit.errors import InputError, ModelError
from pumit.inference.modelinfo import meta_triple

DIMENSIONALITIES = ("3d", "2d", "any")
_AXES = ("D (superior-inferior)", "H (anterior-posterior)", "W (left-right)")


def intended_input(meta: dict[str, Any]) -> dict[str, Any]:
    """``{"modality", "dimensionality", "min_fov", "description"}`` of ``meta["input"]`` with defaults
    (``dimensionality`` "any", ``min_fov`` None). Raises :class:`ModelError` for malformed fields."""
    spec = meta.get("input") or {}
    if not isinstance(spec, dict):
        raise ModelError(f"model metadata 'input' must be an object, got {type(spec).__name__}")
    dim = str(spec.get("dimensionality") or "any").lower()
    if dim not in DIMENSIONALITIES:
        raise ModelError(f"model metadata 'input.dimensionality' must be one of {', '.join(DIMENSIONALITIES)}, got {dim!r}")
    fov = meta_triple(spec, "min_field_of_view_mm", float, 0.0, "must be [D, H, W] mm", "must be 3 sizes >= 0 mm")
    modality = spec.get("modality") or meta.get("modality")
    description = str(spec.get("description") or "").strip()
    if not description:
        description = " ".join(p for p in ((dim.upper() if dim != "any" else ""), str(modality or "").upper()) if p) or "its training images"
    return {"modality": modality, "dimensionality": dim, "min_fov": fov, "description": description}


def check_intended_input(prep: Any, model: Any) -> dict[str, str]:
    """Notes ``{"modality": ..., "field_of_view": ...}`` (only those that apply) on how ``prep`` (a
    :class:`~pumit.inference.preprocess.PreparedInput`) departs from ``model``'s (a
    :class:`~pumit.inference.modelinfo.LoadedModel`) intended input, for the sidecar; raises
    :class:`InputError` when the dimensionality does not match (see the module docstring)."""
    want = intended_input(getattr(model, "meta", {}) or {})
    name, what = getattr(model, "model_id", "the model"), want["description"]
    planar = bool(prep.layout.planar)
    if want["dimensionality"] == "3d" and planar:
        raise InputError(f"model {name} segments 3D volumes (intended input: {what}); this image is 2D (a single "
                         "slice); give the whole volume (a NIfTI/NRRD file or the DICOM series folder)")
    if want["dimensionality"] == "2d" and not planar:
        raise InputError(f"model {name} segments 2D images (intended input: {what}); this image is a 3D volume "
                         f"of {prep.native_shape[0]} slices")
    notes: dict[str, str] = {}
    from pumit.modality import canonical_modality

    wanted = canonical_modality(want["modality"]) if want["modality"] else None
    got = getattr(prep, "modality", None)
    why = getattr(prep, "normalization_reason", "") or ""
    evidence = got == "ct" or "detected" not in why  # as check_segmentable: a detected 'mri' is only the default
    if wanted in ("ct", "mri") and got in ("ct", "mri") and got != wanted and evidence:
        notes["modality"] = (f"input modality {got.upper()} ({why.split('; the model')[0]}) but "
                     f"model {name} was trained on {wanted.upper()} (intended input: {what}); the labels are likely "
                     "meaningless")
    if want["min_fov"] is not None and not planar:
        extent = [n * s for n, s in zip(prep.native_shape, prep.native_spacing)]
        small = [i for i, (e, m) in enumerate(zip(extent, want["min_fov"])) if e < m]
        if small:
            axes = ", ".join(f"{_AXES[i]} {extent[i]:.0f} mm < {want['min_fov'][i]:.0f} mm" for i in small)
            notes["field_of_view"] = (f"field of view smaller than model {name} is meant for (intended input: {what}): "
                                      f"{axes}; segmented where it can be, structures cut by the image border may be "
                                      "missing or mislabeled")
    return notes
