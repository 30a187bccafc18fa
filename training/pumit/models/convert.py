"""Loading the published PUMIT checkpoints, and inflating 2D ViT weights into the 3D patch embedding.

Published files (authors' release "v1", not downloadable here; key names from
``../shared/PUMIT_REFERENCE.md``):

* ViT ``pumit-b.ckpt`` — a Lightning checkpoint ``{"state_dict": {...}}`` with keys ``cls_token``,
  ``pos_embed`` ``[1, 768, 5, 10, 10]``, ``mask_token``, ``patch_embed.proj.weight`` ``[768, 3, 16, 16, 16]``,
  ``blocks.{i}.{norm1,norm2}``, ``blocks.{i}.attn.{q,k,v}_proj.weight``, ``attn.q_bias``, ``attn.v_bias``,
  ``attn.proj``, ``blocks.{i}.mlp.{w1,w2,ffn_ln,w3}``, ``norm``, ``mim_head.0`` / ``mim_head.2``.
  Our :class:`~pumit.models.vit.SpadViT` uses the same names, so conversion strips a wrapper prefix,
  moves ``mim_head`` next to ``vit`` and folds the 3 RGB input channels into ours.
* Tokenizer ``simple-soft.ckpt`` — a Fabric dict ``{"model": {...}, "discriminator": ...}`` with
  ``encoder.0.weight`` ``[128, 3, 4, 4, 4]``, ``quantize.proj.weight`` ``[1024, 512]``,
  ``quantize.embedding.weight`` ``[1024, 512]``.

Files are read with ``torch.load(weights_only=True)``: nothing is unpickled beyond tensors and plain
containers; a file needing more is refused with a clear :class:`ModelError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from pumit.errors import ModelError
from pumit.models.checkpoint import load_state_strict
from pumit.models.vit import SpadViTMIM, ViTConfig


def _read_torch_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError and friends: refuse, never unpickle arbitrary objects
        raise ModelError(f"refusing to load {p}: it is not a plain tensor checkpoint loadable with weights_only=True ({type(e).__name__})") from e
    return extract_state_dict(obj)


def extract_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The tensor dict inside a Lightning (``state_dict``), Fabric (``model``) or plain checkpoint."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ModelError("checkpoint holds no state dict of tensors")


def _strip_prefix(state: dict[str, torch.Tensor], anchor: str) -> dict[str, torch.Tensor]:
    """Remove the wrapper prefix (``model.``, ``vit.``, ...) found in front of ``anchor``."""
    hit = next((k for k in state if k.endswith(anchor)), None)
    if hit is None:
        raise ModelError(f"not a PUMIT checkpoint: no '{anchor}' key")
    prefix = hit[: -len(anchor)]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def fold_input_channels(weight: torch.Tensor, in_channels: int, dim: int = 1) -> torch.Tensor:
    """Convert RGB input filters to ``in_channels``: for grey input, RGB filters on a grey image replicated
    into 3 channels equal the channel **sum**, so folding by summation preserves the response."""
    c = weight.shape[dim]
    if c == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim, keepdim=True)
    raise ModelError(f"cannot convert {c} input channels to {in_channels}")


def vit_config_from_state(state: dict[str, torch.Tensor], in_channels: int = 1, num_heads: int | None = None) -> ViTConfig:
    """Infer the :class:`ViTConfig` of a published ViT state dict from tensor shapes."""
    dim = state["cls_token"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    hidden = state["blocks.0.mlp.w1.weight"].shape[0]
    patch = state["patch_embed.proj.weight"].shape[-1]
    pos = tuple(state["pos_embed"].shape[2:]) if "pos_embed" in state else None
    codebook = state["mim_head.2.weight"].shape[0] if "mim_head.2.weight" in state else 1024
    return ViTConfig(
        in_channels=in_channels,
        patch_size=patch,
        embed_dim=dim,
        depth=depth,
        num_heads=num_heads or max(dim // 64, 1),
        mlp_hidden=hidden,
        codebook_size=codebook,
        abs_pos_grid=pos,  # type: ignore[arg-type]
    )


def convert_pumit_vit_state_dict(state: dict[str, torch.Tensor], in_channels: int = 1) -> dict[str, torch.Tensor]:
    """Published ViT keys → :class:`SpadViTMIM` keys (``vit.*`` and ``mim_head.*``)."""
    state = _strip_prefix(state, "cls_token")
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("mim_head."):
            out[k] = v
        elif k == "patch_embed.proj.weight":
            out["vit." + k] = fold_input_channels(v, in_channels)
        elif k.startswith(("rope.", "rel_pos")):
            continue  # RoPE tables are recomputed
        else:
            out["vit." + k] = v
    return out


def load_pumit_vit(path: str | os.PathLike, in_channels: int = 1, num_heads: int | None = None) -> SpadViTMIM:
    """Build a :class:`SpadViTMIM` from a published ``pumit-b.ckpt`` (strict: every weight must match)."""
    raw = _strip_prefix(_read_torch_file(path), "cls_token")
    config = vit_config_from_state(raw, in_channels, num_heads)
    model = SpadViTMIM(config)
    state = convert_pumit_vit_state_dict(raw, in_channels)
    if "mim_head.0.weight" not in state:  # backbone-only checkpoint: keep the fresh MIM head
        state.update({f"mim_head.{k}": v for k, v in model.mim_head.state_dict().items()})
    load_state_strict(model, state, f"{path}: weights do not fit the inferred ViT config")
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


def load_pumit_tokenizer(path: str | os.PathLike, in_channels: int = 1):
    """Build a :class:`~pumit.models.tokenizer.UniversalTokenizer` from a published ``simple-soft.ckpt``
    (Fabric dict ``{"model": ...}``). Sizes are inferred from ``encoder.0.weight`` and
    ``quantize.proj.weight``; RGB input filters are folded to ``in_channels`` (and the RGB output of the
    last decoder layer averaged). Loading is strict: any key that does not map is reported."""
    from pumit.models.tokenizer import TokenizerConfig, UniversalTokenizer

    raw = _strip_prefix(_read_torch_file(path), "quantize.proj.weight")
    c0, _, first = raw["encoder.0.weight"].shape[:3]
    codebook, dim = raw["quantize.proj.weight"].shape
    n_down = sum(1 for k in raw if re.fullmatch(r"encoder\.\d+\.weight", k) and raw[k].ndim == 5 and raw[k].shape[-1] == 2)
    channels = tuple(c0 * 2**i for i in range(n_down + 1))
    if channels[-1] != dim:
        raise ModelError(f"{path}: cannot infer tokenizer widths (first {c0}, codebook dim {dim}, {n_down} downsamplings)")
    model = UniversalTokenizer(TokenizerConfig(in_channels=in_channels, channels=channels, first_stride=int(first), codebook_size=codebook))
    state = dict(raw)
    state["encoder.0.weight"] = fold_input_channels(raw["encoder.0.weight"], in_channels)
    last = max((k for k in raw if re.fullmatch(r"decoder\.\d+\.weight", k)), key=lambda k: int(k.split(".")[1]))
    if raw[last].shape[1] != in_channels:  # transposed conv weight (in, out, k, k, k): average RGB outputs
        state[last] = raw[last].mean(1, keepdim=True)
        bias = last[: -len("weight")] + "bias"
        if bias in raw:
            state[bias] = raw[bias].mean(0, keepdim=True)
    load_state_strict(model, state, f"{path}: weights do not fit the inferred tokenizer")
    return model
