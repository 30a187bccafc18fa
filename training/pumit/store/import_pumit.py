"""Import a published PUMIT checkpoint (``pumit-b.ckpt``, ``simple-soft.ckpt``) into the model store.

:func:`import_pumit_checkpoint` is the one GUI-free entry point used by ``pumit models import-pumit`` (and,
through that command, by the Slicer module). Steps:

1. read the file with the restricted unpickler (:func:`pumit.models.convert.read_checkpoint`: tensors,
   plain containers and an allow-list of inert classes; anything else is refused, nothing is executed);
2. recognise the model (ViT: ``cls_token``; tokenizer: ``quantize.proj.weight``), build our
   published-compatible model and load the converted weights strictly (no missing, extra or mis-shaped key);
3. verify: every weight equals its source tensor (or its documented fold) bit for bit, and a small
   forward pass is finite;
4. write ``config.json`` + ``model.safetensors`` with provenance (source file name, SHA-256, licence,
   conversion) into a temporary folder and install it; the catalog's ``source`` is the ``.ckpt`` file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pumit import __version__
from pumit.errors import InputError, ModelError
from pumit.store.entry import ModelEntry
from pumit.store.hashing import sha256_file
from pumit.store.store import ModelStore

#: What the import detects, by a key of the (prefix-stripped) state dict.
_KINDS = {"vit": "cls_token", "tokenizer": "quantize.proj.weight"}


def detect_kind(state: dict[str, torch.Tensor]) -> str:
    """``"vit"`` or ``"tokenizer"`` from the state dict's keys; :class:`ModelError` otherwise."""
    for kind, anchor in _KINDS.items():
        if any(k == anchor or k.endswith("." + anchor) for k in state):
            return kind
    raise ModelError("not a published PUMIT checkpoint: neither a ViT ('cls_token') nor a tokenizer ('quantize.proj.weight') state dict")


def _container(obj: object) -> dict[str, Any]:
    """Lightning/Fabric bookkeeping worth recording (step, epoch, versions)."""
    if not isinstance(obj, dict):
        return {}
    fmt = "lightning" if "state_dict" in obj else "fabric" if "model" in obj else "state dict"
    info: dict[str, Any] = {"format": fmt}
    for key in ("epoch", "global_step", "step", "pytorch-lightning_version"):
        v = obj.get(key)
        if isinstance(v, (int, str)) and not isinstance(v, bool):
            info[key] = v
    return info


def convert_published(state: dict[str, torch.Tensor], kind: str, channels: int = 1,
                      input_convention: str = "imagenet") -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Our model for a published state dict and the exact tensors it was loaded with (strict)."""
    from pumit.models.checkpoint import load_state_strict
    from pumit.models.published import (
        strip_wrapper_prefix,
        tokenizer_config_from_published,
        tokenizer_state_from_published,
        vit_config_from_published,
        vit_state_from_published,
    )
    from pumit.models.tokenizer import UniversalTokenizer
    from pumit.models.vit import SpadViT, SpadViTMIM

    model: nn.Module
    if kind == "vit":
        raw = strip_wrapper_prefix(state, "cls_token")
        cfg = vit_config_from_published(raw, channels, input_convention)
        converted = vit_state_from_published(raw, cfg)
        if any(k.startswith("mim_head.") for k in converted):
            model = SpadViTMIM(cfg)
        else:  # backbone only
            model = SpadViT(cfg)
            converted = {k[len("vit."):]: v for k, v in converted.items()}
    elif kind == "tokenizer":
        raw = strip_wrapper_prefix(state, "quantize.proj.weight")
        tcfg = tokenizer_config_from_published(raw, channels)
        converted = tokenizer_state_from_published(raw, tcfg)
        model = UniversalTokenizer(tcfg)
    else:
        raise InputError(f"unknown kind {kind!r}; choose vit or tokenizer")
    load_state_strict(model, converted, f"published {kind} checkpoint does not fit the published {kind} layout")
    return model.eval(), converted


def verify_converted(model: nn.Module, converted: dict[str, torch.Tensor]) -> None:
    """Every model tensor equals the converted source tensor bit for bit, and a small planar forward pass
    (one 2D slice, the pos-embed and SAC paths that differ most) is finite."""
    from pumit.spacing import planar_spacing

    state = model.state_dict()
    bad = [k for k, v in converted.items() if k not in state or not torch.equal(state[k], v.to(state[k].dtype))]
    if bad:
        raise ModelError(f"conversion check failed: weights differ from the checkpoint at {bad[:3]}")
    cfg = model.config  # type: ignore[attr-defined]
    channels = cfg.in_channels
    stride = getattr(cfg, "patch_size", None) or cfg.total_stride
    x = torch.linspace(-1, 1, channels * 2 * stride * stride).reshape(1, channels, 1, 2 * stride, stride)
    with torch.no_grad():
        if getattr(model, "model_type", "") == "tokenizer":
            out = model(x, planar_spacing(1.0)).recon  # type: ignore[operator]
        else:
            vit = getattr(model, "vit", model)
            out = vit.forward_features(x, planar_spacing(1.0))[0]
    if not torch.isfinite(out).all():
        raise ModelError("conversion check failed: the converted model gives non-finite outputs")


def _meta(kind: str, source: Path, sha: str, info: dict[str, Any], channels: int, convention: str, license: str,
          name: str, version: str) -> dict[str, Any]:
    from pumit.models.published import PUBLISHED_LICENSE_NOTE, PUBLISHED_SOURCE

    if kind == "vit":
        task = "published PUMIT ViT backbone (MIM pre-trained)"
        conv = ("RGB patch filters kept; ImageNet normalisation folded at run time (input_convention 'imagenet')"
                if convention == "imagenet" else "RGB patch filters summed to grey (input_convention 'signed')"
                if channels == 1 else "RGB patch filters kept (input_convention 'signed')")
        inp: dict[str, Any] = {"channels": channels, "range": [-1, 1], "input_convention": convention}
    else:
        task = "published PUMIT soft tokenizer"
        conv = ("RGB input filters summed, RGB output folded to BT.601 grey" if channels == 1 else "RGB kept")
        inp = {"channels": channels, "range": [-1, 1]}
    # the published pre-processing: clip to the 0.5th / 99.5th percentiles, scale (our [-1, 1])
    inp["normalization"] = {"scheme": "percentile", "percentiles": [0.5, 99.5]}
    return {
        "name": name, "version": version, "task": task, "license": license,
        "description": f"{PUBLISHED_SOURCE}; imported from {source.name} (sha256 {sha[:12]}…) by pumit {__version__}",
        "input": inp,
        "provenance": {
            "source_file": source.name, "source_sha256": sha, "license": license, "license_note": PUBLISHED_LICENSE_NOTE,
            "origin": PUBLISHED_SOURCE,
            "checkpoint": info, "conversion": conv, "converted_by": f"pumit {__version__}",
        },
    }


def import_pumit_checkpoint(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    version: str | None = None,
    kind: str | None = None,
    channels: int = 1,
    input_convention: str = "imagenet",
    license: str | None = None,
    store: ModelStore | None = None,
) -> ModelEntry:
    """Convert a published PUMIT ``.ckpt`` and install it into ``store``; returns the new entry.

    ``name`` defaults to ``pumit-vit-b`` / ``pumit-tokenizer`` (``kind`` is detected when ``None``), ``version``
    to ``1.0.0``; ``channels`` 1 (grey, default) or 3 (RGB); ``input_convention`` (ViT only) ``imagenet``
    (reproduces the published pre-training features) or ``signed``. Raises :class:`InputError` for a bad
    option or missing file, :class:`ModelError` for an unsafe, unreadable or non-PUMIT checkpoint.
    """
    from pumit.models.checkpoint import load_pretrained, save_pretrained
    from pumit.models.convert import extract_state_dict, read_checkpoint
    from pumit.models.published import PUBLISHED_LICENSE
    from pumit.models.vit import INPUT_CONVENTIONS

    src = Path(path).expanduser()
    if not src.is_file():
        raise InputError(f"checkpoint not found: {src}")
    if channels not in (1, 3):
        raise InputError(f"--channels must be 1 (grey) or 3 (RGB), got {channels}")
    if input_convention not in INPUT_CONVENTIONS:
        raise InputError(f"--input-convention must be one of {', '.join(INPUT_CONVENTIONS)}, got {input_convention!r}")
    if kind is not None and kind not in _KINDS:
        raise InputError(f"--kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    store = store or ModelStore()
    sha = sha256_file(src)
    obj = read_checkpoint(src)
    state = extract_state_dict(obj)
    found = detect_kind(state)
    if kind is not None and kind != found:
        raise ModelError(f"{src.name} holds a published {found}, not a {kind}")
    model, converted = convert_published(state, found, channels, input_convention)
    verify_converted(model, converted)
    info = _container(obj)
    del obj, state
    name = name or ("pumit-vit-b" if found == "vit" else "pumit-tokenizer")
    version = version or "1.0.0"
    meta = _meta(found, src.resolve(), sha, info, channels, input_convention, license or PUBLISHED_LICENSE, name, version)
    try:
        staging = store.root / ".staging"  # crashed imports are cleaned like crashed installs
        staging.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="import-", dir=staging))
    except OSError as e:
        raise ModelError(f"cannot write to the model store {store.root}: {e}") from e
    try:
        folder = save_pretrained(model, tmp / "model", meta)
        entry = store.install(folder, name=name, version=version, origin=(str(src.resolve()), sha))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loaded = load_pretrained(entry.model_path)
    reloaded = loaded.state_dict()
    if any(not torch.equal(reloaded[k], v) for k, v in model.state_dict().items()):
        store.remove(entry.id)
        raise ModelError(f"{entry.id}: the installed weights differ from the converted ones; removed it again")
    return entry
