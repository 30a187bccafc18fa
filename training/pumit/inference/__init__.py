"""Inference engine behind ``pumit segment``, ``pumit reconstruct`` and ``pumit classify``.

File-level API (what the commands do)::

    from pumit.inference import segment, reconstruct, classify, sidecar_path

    result = segment("ct.nii.gz", "seg.nii.gz", model="spine-seg", progress="bar")
    sidecar_path("seg.nii.gz")                      # → seg.labels.json
    rec = reconstruct("t2.nrrd", "rec.nrrd", tokenizer="pumit-tokenizer", montage="rec.png")
    probs = classify("cxr.dcm", model="cxr-cls").to_dict()

In-memory API (e.g. for 3D Slicer): :func:`load_model` once, then :func:`segment_image`,
:func:`reconstruct_image` or :func:`classify_image` on :class:`SimpleITK.Image` objects, with
:class:`InferenceSettings` and a :class:`Progress` (callback + cancel event).

Conventions: arrays in model layout are ``(C, D, H, W)`` with ``D`` the slice axis and spacing
``(thickness, H, W)`` mm (:mod:`pumit.spacing`). Images keep ITK's LPS physical geometry; every output
image has exactly the input's size, origin, spacing and direction (except the token map, on the
token grid). Errors are :class:`~pumit.errors.PumitError` subclasses with the exit codes of
:mod:`pumit.errors`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

#: Public name → submodule. Resolved lazily (PEP 562) so that importing ``pumit.inference.constants``
#: or ``pumit.inference.cli_options`` (done by ``pumit --help``) does not import PyTorch and MONAI.
_EXPORTS: dict[str, str] = {
    "ClassificationResult": "classify",
    "classify": "classify",
    "classify_image": "classify",
    "resolve_device": "devices",
    "resolve_precision": "devices",
    "InputRequirements": "modelinfo",
    "LabelInfo": "modelinfo",
    "LoadedModel": "modelinfo",
    "default_color": "modelinfo",
    "load_model": "modelinfo",
    "OutputTransaction": "outputs",
    "sidecar_path": "outputs",
    "Progress": "progress",
    "ReconstructionResult": "reconstruct",
    "reconstruct": "reconstruct",
    "reconstruct_image": "reconstruct",
    "SegmentationResult": "segment",
    "segment": "segment",
    "segment_image": "segment",
    "InferenceSettings": "settings",
}

__all__ = [
    "ClassificationResult",
    "InferenceSettings",
    "InputRequirements",
    "LabelInfo",
    "LoadedModel",
    "OutputTransaction",
    "Progress",
    "ReconstructionResult",
    "SegmentationResult",
    "classify",
    "classify_image",
    "default_color",
    "load_model",
    "reconstruct",
    "reconstruct_image",
    "resolve_device",
    "resolve_precision",
    "segment",
    "segment_image",
    "sidecar_path",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pumit.inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pumit.inference.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``pumit.inference`` itself. Three functions share their submodule's name (``segment``, ``reconstruct``,
    ``classify``); importing a submodule (``import pumit.inference.segment``, or lazily via ``segment_image``)
    makes the import system set the package attribute of that name to the *module*, after which
    ``from pumit.inference import segment`` returned a module. The attribute keeps the function; the module
    stays in ``sys.modules`` (``from pumit.inference.segment import ...`` and ``importlib.import_module`` work)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name
                and value.__name__ == f"{__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # static type checkers and IDEs see the real imports
    from pumit.inference.classify import ClassificationResult, classify, classify_image
    from pumit.inference.devices import resolve_device, resolve_precision
    from pumit.inference.modelinfo import InputRequirements, LabelInfo, LoadedModel, default_color, load_model
    from pumit.inference.outputs import OutputTransaction, sidecar_path
    from pumit.inference.progress import Progress
    from pumit.inference.reconstruct import ReconstructionResult, reconstruct, reconstruct_image
    from pumit.inference.segment import SegmentationResult, segment, segment_image
    from pumit.inference.settings import InferenceSettings
