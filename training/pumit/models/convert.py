"""Reading the published PUMIT checkpoints safely, and inflating 2D ViT weights into the 3D patch embedding.

Checkpoints (``.ckpt``/``.pt``/``.pth``) are pickles. They are read with ``torch.load(weights_only=True)``,
whose unpickler only rebuilds tensors, storages and plain containers, plus the explicit allow-list
:data:`ALLOWED_GLOBALS` of inert classes that Lightning/Fabric checkpoints legitimately hold outside the
weights (``argparse.Namespace`` and ``pathlib`` paths in ``hyper_parameters``). Anything else — a
function, a class from the training code, ``os.system`` — is refused before it is called: a
:class:`ModelError` (exit 3) naming the global the file wanted. Nothing in the file is executed.

The layouts of the two published files and their conversion are in :mod:`pumit.models.published`.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import pickle
import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from pumit.errors import ModelError
from pumit.models.checkpoint import load_state_strict
from pumit.models.published import (
    fold_input_channels,
    strip_wrapper_prefix,
    tokenizer_config_from_published,
    tokenizer_state_from_published,
    vit_config_from_published,
    vit_state_from_published,
)
from pumit.models.vit import SpadViTMIM, ViTConfig

__all__ = [
    "ALLOWED_GLOBALS", "read_checkpoint", "extract_state_dict", "fold_input_channels", "vit_config_from_state",
    "convert_pumit_vit_state_dict", "load_pumit_vit", "load_pumit_tokenizer", "inflate_patch_embed", "inflate_pos_embed",
]

#: Classes a checkpoint may contain besides tensors and plain containers (all inert: building them runs no
#: code beyond setting attributes / joining path strings). ``collections.OrderedDict``, tensors, storages,
#: dtypes and ``torch.Size`` are allowed by ``weights_only=True`` itself.
ALLOWED_GLOBALS: tuple[type, ...] = (
    argparse.Namespace, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.Path,
    pathlib.PosixPath, pathlib.WindowsPath,
)

_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def read_checkpoint(path: str | os.PathLike) -> object:
    """Unpickle a ``.ckpt``/``.pt``/``.pth`` file with ``torch.load(weights_only=True)`` and the allow-list
    :data:`ALLOWED_GLOBALS`; a ``.safetensors`` file is read as such. Raises :class:`ModelError` for a missing
    or unreadable file, or one that needs any other pickled global (named in the message)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError) as e:
            raise ModelError(f"cannot read {p}: {e}") from e
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's pickle-protocol notice: the one-line error says it all
            return torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError) as e:
        m = _GLOBAL_RE.search(str(e))
        if m:
            raise ModelError(
                f"refusing to load {p}: it needs the pickled global '{m.group(1)}', which is not on pumit's allow-list for "
                "torch.load(weights_only=True); nothing in it was executed (only tensors, plain containers, "
                "argparse.Namespace and paths are accepted)"
            ) from None
        first = next((ln.strip() for ln in str(e).splitlines()[::-1] if ln.strip() and "torch.load" not in ln), type(e).__name__)
        raise ModelError(
            f"refusing to load {p}: not a checkpoint torch.load(weights_only=True) can read safely ({first[:160]})"
        ) from None
    except OSError as e:
        raise ModelError(f"cannot read {p}: {e}") from e


def _read_torch_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    return extract_state_dict(read_checkpoint(path))


def extract_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The tensor dict inside a Lightning (``state_dict``), Fabric (``model``) or plain checkpoint."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ModelError("checkpoint holds no state dict of tensors")


def vit_config_from_state(state: dict[str, torch.Tensor], in_channels: int = 1, num_heads: int | None = None,
                          input_convention: str = "imagenet") -> ViTConfig:
    """The published-compatible :class:`ViTConfig` of a published ViT state dict (see
    :func:`pumit.models.published.vit_config_from_published`)."""
    return vit_config_from_published(state, in_channels, input_convention, num_heads)


def convert_pumit_vit_state_dict(state: dict[str, torch.Tensor], in_channels: int = 1, input_convention: str = "signed") -> dict[str, torch.Tensor]:
    """Published ViT keys (any wrapper prefix) → :class:`SpadViTMIM` keys (``vit.*`` and ``mim_head.*``)."""
    state = strip_wrapper_prefix(state, "cls_token")
    cfg = ViTConfig(in_channels=in_channels, input_convention=input_convention)
    return vit_state_from_published(state, cfg)


def load_pumit_vit(path: str | os.PathLike, in_channels: int = 1, num_heads: int | None = None,
                   input_convention: str = "imagenet") -> SpadViTMIM:
    """Build a :class:`SpadViTMIM` from a published ``pumit-b.ckpt`` (strict: every weight must match).

    ``input_convention="imagenet"`` (default) reproduces the pre-training features on pumit's ``[-1, 1]``
    grey input; ``"signed"`` folds the RGB filters by channel sum (the authors' fine-tuning convention)."""
    raw = strip_wrapper_prefix(_read_torch_file(path), "cls_token")
    config = vit_config_from_published(raw, in_channels, input_convention, num_heads)
    model = SpadViTMIM(config)
    state = vit_state_from_published(raw, config)
    if "mim_head.0.weight" not in state:  # backbone-only checkpoint: keep the fresh MIM head
        state.update({f"mim_head.{k}": v for k, v in model.mim_head.state_dict().items()})
    load_state_strict(model, state, f"{path}: weights do not fit the inferred ViT config")
    return model


def load_pumit_tokenizer(path: str | os.PathLike, in_channels: int = 1):
    """Build a :class:`~pumit.models.tokenizer.UniversalTokenizer` (``layout="published"``) from a published
    ``simple-soft.ckpt`` (Fabric dict ``{"model": ...}``). Sizes are inferred from the shapes; for grey
    (``in_channels=1``) the RGB input filters are summed and the RGB output folded to BT.601 luma.
    Loading is strict: any key or shape that does not fit is reported."""
    from pumit.models.tokenizer import UniversalTokenizer

    raw = strip_wrapper_prefix(_read_torch_file(path), "quantize.proj.weight")
    config = tokenizer_config_from_published(raw, in_channels)
    model = UniversalTokenizer(config)
    load_state_strict(model, tokenizer_state_from_published(raw, config), f"{path}: weights do not fit the inferred tokenizer")
    return model


def inflate_patch_embed(weight2d: torch.Tensor, patch_size: int = 16) -> torch.Tensor:
    """2D patch-embedding weight ``(C, in, p, p)`` → 3D ``(C, in, P, P, P)``: bicubic resize to ``P²``
    (e.g. EVA-02's 14² → 16²) then repeat over depth divided by ``P``. With SAC's sum-pooling a 2D
    input (one slice) then sees exactly the 2D kernel, and a constant volume the 2D response."""
    if weight2d.ndim != 4:
        raise ModelError(f"expected a 2D conv weight (C, in, p, p), got shape {tuple(weight2d.shape)}")
    w = weight2d.float()
    if w.shape[-1] != patch_size or w.shape[-2] != patch_size:
        w = F.interpolate(w, size=(patch_size, patch_size), mode="bicubic", align_corners=False)
        w = w * (weight2d.shape[-1] * weight2d.shape[-2]) / patch_size**2  # keep the kernel's sum
    return (w.unsqueeze(2).repeat(1, 1, patch_size, 1, 1) / patch_size).to(weight2d.dtype)


def inflate_pos_embed(pos2d: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """2D absolute position embedding ``(1, N, C)`` (square, no class token) or ``(1, C, h, w)`` →
    ``(1, C, d, h', w')`` repeated over depth and resampled in-plane."""
    if pos2d.ndim == 3:
        n = pos2d.shape[1]
        side = int(round(n**0.5))
        if side * side != n:
            raise ModelError(f"2D position embedding with {n} tokens is not square; drop the class token first")
        pos2d = pos2d.transpose(1, 2).reshape(1, -1, side, side)
    pos = F.interpolate(pos2d.float(), size=grid[1:], mode="bicubic", align_corners=False)
    return pos.unsqueeze(2).repeat(1, 1, grid[0], 1, 1).to(pos2d.dtype)
