"""Saving and loading models as safetensors weights + JSON config (never pickle).

A model folder holds:

* ``model.safetensors`` — the state dict;
* ``config.json`` — ``{"model_type", "config", "pumit_version", "meta"}``. ``meta`` is free metadata
  (name, version, labels, colors, license, input requirements, normalization, training stats).

A lone ``.safetensors`` file is also accepted when its header metadata holds the same JSON under
``pumit_config``. Every file is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from pumit import __version__
from pumit.errors import ModelError
from pumit.imageio import atomic_write_text
from pumit.models.heads import ClassifierConfig, SpadViTClassifier
from pumit.models.segmentation import SegmenterConfig, SpadViTSegmenter
from pumit.models.tokenizer import TokenizerConfig, UniversalTokenizer
from pumit.models.vit import SpadViT, SpadViTMIM, ViTConfig

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

#: model_type → (model class, config class)
MODEL_TYPES: dict[str, tuple[type[nn.Module], Any]] = {
    "tokenizer": (UniversalTokenizer, TokenizerConfig),
    "vit": (SpadViT, ViTConfig),
    "mim": (SpadViTMIM, ViTConfig),
    "classification": (SpadViTClassifier, ClassifierConfig),
    "segmentation": (SpadViTSegmenter, SegmenterConfig),
}


def build_model(model_type: str, config: dict[str, Any] | Any) -> nn.Module:
    """Instantiate a model of ``model_type`` from a config object or its dict."""
    if model_type not in MODEL_TYPES:
        raise ModelError(f"unknown model type {model_type!r}; known: {', '.join(MODEL_TYPES)}")
    cls, cfg_cls = MODEL_TYPES[model_type]
    if isinstance(config, dict):
        try:
            config = cfg_cls.from_dict(config)
        except (TypeError, KeyError, ValueError) as e:
            raise ModelError(f"invalid {model_type} config: {e}") from e
    return cls(config)


def model_record(model: nn.Module, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` content for ``model``."""
    return {
        "model_type": model.model_type,
        "config": model.config.to_dict(),
        "pumit_version": __version__,
        "meta": dict(meta or {}),
    }


def _contiguous_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_pretrained(model: nn.Module, directory: str | os.PathLike, meta: dict[str, Any] | None = None, *, overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``directory`` (created). Refuses to overwrite
    an existing model folder unless ``overwrite``."""
    d = Path(directory)
    if (d / WEIGHTS_NAME).exists() and not overwrite:
        raise ModelError(f"a model already exists in {d}; choose a new folder (models are never overwritten)")
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{WEIGHTS_NAME}.tmp"
    try:
        save_file(_contiguous_state(model), str(tmp), metadata={"format": "pt"})
        os.replace(tmp, d / WEIGHTS_NAME)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(d / CONFIG_NAME, json.dumps(model_record(model, meta), indent=2, sort_keys=True))
    return d


def save_single_file(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write one ``.safetensors`` file with the config JSON in its header metadata."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        save_file(_contiguous_state(model), str(tmp), metadata={"format": "pt", "pumit_config": json.dumps(model_record(model, meta))})
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` record of a model folder or single ``.safetensors`` file."""
    p = Path(path)
    try:
        if p.is_dir():
            cfg = p / CONFIG_NAME
            if not cfg.is_file() or not (p / WEIGHTS_NAME).is_file():
                raise ModelError(f"{p} is not a model folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
            record = json.loads(cfg.read_text())
        elif p.is_file():
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
            if "pumit_config" not in meta:
                raise ModelError(f"{p} has no pumit_config metadata; save models with pumit.models.save_pretrained")
            record = json.loads(meta["pumit_config"])
        else:
            raise ModelError(f"model not found: {p}")
    except (json.JSONDecodeError, SafetensorError, OSError) as e:
        raise ModelError(f"cannot read model {p}: {e}") from e
    if not isinstance(record, dict) or "model_type" not in record or "config" not in record:
        raise ModelError(f"{p}: config has no model_type/config")
    return record


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], context: str) -> None:
    """Load ``state`` into ``model`` requiring every key and shape to match (never drop weights silently);
    a mismatch raises :class:`ModelError` ``"{context}: ..."`` naming the first offending keys."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ModelError(f"{context}: {str(e).splitlines()[-1].strip()}") from e
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(f"{context}: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")


def load_pretrained(
    path: str | os.PathLike,
    expected_type: str | tuple[str, ...] | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load a model folder or single file. Raises :class:`ModelError` for a model of another type
    (e.g. a tokenizer given to ``segment``), missing/unexpected weights or a corrupt file."""
    p = Path(path)
    record = read_record(p)
    mtype = record["model_type"]
    if expected_type is not None:
        allowed = (expected_type,) if isinstance(expected_type, str) else expected_type
        if mtype not in allowed:
            raise ModelError(f"{p} is a {mtype} model, but a {' or '.join(allowed)} model is needed here")
    model = build_model(mtype, record["config"])
    try:
        state = load_file(str(p / WEIGHTS_NAME if p.is_dir() else p), device=str(map_location))
    except (SafetensorError, OSError) as e:
        raise ModelError(f"cannot read weights of {p}: corrupt or truncated safetensors file ({e})") from e
    load_state_strict(model, state, f"weights of {p} do not match its {mtype} config")
    model.meta = record.get("meta", {})  # type: ignore[attr-defined]
    return model.eval()
