"""The published PUMIT checkpoints: their configurations, key layouts and conversion to our models.

Two files of the authors' release "v1" (see ``docs/models.md``; the key lists are in
``../shared/pumit_checkpoint_keys.json``):

* ``pumit-b.ckpt`` — Lightning checkpoint; ``["state_dict"]`` is the MIM ViT-B (239 keys: ``cls_token``,
  ``pos_embed`` ``(1, 768, 5, 10, 10)``, ``mask_token``, ``patch_embed.proj`` ``(768, 3, 16, 16, 16)``,
  ``blocks.{0..11}.*``, ``norm.*``, ``mim_head.{0,2}.*``). Our :class:`SpadViTMIM` has the same keys under
  ``vit.`` (the MIM head as is); with :func:`published_vit_config` (LayerNorm eps 1e-5, area-then-trilinear
  pos-embed resampling, ImageNet input convention) it computes the published features.
* ``simple-soft.ckpt`` — Fabric checkpoint; ``["model"]`` is the soft tokenizer (45 keys). Our
  :class:`UniversalTokenizer` with ``layout="published"`` has exactly these keys.

Grey images: the published models are RGB. The tokenizer was trained on ``[-1, 1]`` inputs, so a grey
image replicated to RGB is the channel **sum** of the first filters, and the RGB reconstruction is folded
to grey with the ITU-R BT.601 weights (as the authors do). The ViT was pre-trained on ImageNet-normalised
RGB: ``input_convention="imagenet"`` keeps its RGB filters and folds the normalisation at run time
(:func:`pumit.models.vit.imagenet_folded_patch_embed`); ``"signed"`` sums the filters instead (the authors'
fine-tuning convention: grey ``2x − 1`` fed to the pre-trained filters).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from pumit.errors import ModelError
from pumit.models.tokenizer import TokenizerConfig
from pumit.models.vit import INPUT_CONVENTIONS, ViTConfig

#: ITU-R BT.601 luma weights of (R, G, B), used by the authors to turn RGB reconstructions into grey.
BT601_WEIGHTS = (0.299, 0.587, 0.114)

#: Licence recorded for imported published weights. The authors' repository (function2-llx/PUMIT) states no
#: licence (no LICENSE file, none in its README), so none can be assumed: "unspecified" until the user
#: records the terms they obtained (``--license``).
PUBLISHED_LICENSE = "unspecified"
PUBLISHED_LICENSE_NOTE = ("the authors' repository and release state no licence; ask the authors before redistributing "
                          "the weights or models derived from them")
PUBLISHED_SOURCE = "PUMIT release v1 (Luo et al., AAAI 2024), github.com/function2-llx/PUMIT"

#: Published architecture constants (ViT-B MIM and the ``simple`` soft tokenizer).
PUBLISHED_VIT_SETTINGS: dict[str, Any] = dict(norm_eps=1e-5, pos_embed_rule="area_trilinear", rope_base=10000.0, rope_z_base=2333.0)
PUBLISHED_TOKENIZER = dict(channels=(128, 256, 512), first_stride=4, num_blocks=2, codebook_size=1024, layout="published")


def published_vit_config(
    in_channels: int = 1, input_convention: str = "imagenet", *, embed_dim: int = 768, depth: int = 12,
    num_heads: int = 12, mlp_hidden: int = 2048, patch_size: int = 16, codebook_size: int = 1024,
    abs_pos_grid: tuple[int, int, int] | None = (5, 10, 10),
) -> ViTConfig:
    """:class:`ViTConfig` computing like the published ViT (ViT-B sizes by default)."""
    return ViTConfig(
        in_channels=in_channels, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
        mlp_hidden=mlp_hidden, codebook_size=codebook_size, abs_pos_grid=abs_pos_grid, input_convention=input_convention,
        **PUBLISHED_VIT_SETTINGS,
    )


def published_tokenizer_config(in_channels: int = 1, **overrides: Any) -> TokenizerConfig:
    """:class:`TokenizerConfig` of the published ``simple`` soft tokenizer (``layout="published"``)."""
    return TokenizerConfig(in_channels=in_channels, **{**PUBLISHED_TOKENIZER, **overrides})


# ---------------------------------------------------------------------------------------------- ViT


def strip_wrapper_prefix(state: dict[str, torch.Tensor], anchor: str) -> dict[str, torch.Tensor]:
    """Remove a wrapper prefix (``model.``, ``module.``, ...) found in front of the key ``anchor``; keys
    without that prefix (e.g. a tokenizer saved beside the model) are dropped."""
    hit = next((k for k in state if k == anchor or k.endswith("." + anchor)), None)
    if hit is None:
        raise ModelError(f"not a PUMIT checkpoint: no '{anchor}' key")
    prefix = hit[: -len(anchor)]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def vit_config_from_published(state: dict[str, torch.Tensor], in_channels: int = 1, input_convention: str = "imagenet",
                              num_heads: int | None = None) -> ViTConfig:
    """The published-compatible :class:`ViTConfig` of a published ViT state dict, sizes from its shapes."""
    try:
        dim = int(state["cls_token"].shape[-1])
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
        hidden = int(state["blocks.0.mlp.w1.weight"].shape[0])
        w = state["patch_embed.proj.weight"]
    except (KeyError, ValueError) as e:
        raise ModelError(f"not a PUMIT ViT state dict: {e}") from None
    if w.ndim != 5 or len(set(w.shape[2:])) != 1:
        raise ModelError(f"patch_embed.proj.weight must be an isotropic 3D kernel (C, in, P, P, P), got {tuple(w.shape)}")
    if input_convention == "imagenet" and w.shape[1] != 3:
        raise ModelError(f"the 'imagenet' input convention needs RGB patch filters, the checkpoint has {w.shape[1]} input channel(s)")
    pos = tuple(int(v) for v in state["pos_embed"].shape[2:]) if "pos_embed" in state else None
    codebook = int(state["mim_head.2.weight"].shape[0]) if "mim_head.2.weight" in state else 1024
    return published_vit_config(
        in_channels, input_convention, embed_dim=dim, depth=depth, num_heads=num_heads or max(dim // 64, 1),
        mlp_hidden=hidden, patch_size=int(w.shape[-1]), codebook_size=codebook, abs_pos_grid=pos,  # type: ignore[arg-type]
    )


def vit_state_from_published(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """Published ViT keys → :class:`SpadViTMIM` keys (``vit.*``, ``mim_head.*``); the patch filters are kept
    (``imagenet``) or folded by channel sum to ``config.in_channels`` (``signed``). RoPE tables (if any
    were saved) are dropped: they are recomputed."""
    if config.input_convention not in INPUT_CONVENTIONS:
        raise ModelError(f"unknown input convention {config.input_convention!r}")
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("mim_head."):
            out[k] = v
        elif re.search(r"(^|\.)rope\.", k):
            continue
        elif k == "patch_embed.proj.weight" and config.input_convention == "signed":
            out["vit." + k] = fold_input_channels(v, config.in_channels)
        else:
            out["vit." + k] = v
    return out


def vit_state_to_published(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:class:`SpadViTMIM` keys → published keys (inverse of :func:`vit_state_from_published` for
    ``imagenet`` models)."""
    return {k[len("vit."):] if k.startswith("vit.") else k: v for k, v in state.items()}


def fold_input_channels(weight: torch.Tensor, in_channels: int, dim: int = 1) -> torch.Tensor:
    """RGB input filters → ``in_channels`` for inputs in the *same* value range (``[-1, 1]``): a grey image
    replicated into 3 channels sees the channel **sum**."""
    c = weight.shape[dim]
    if c == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim, keepdim=True)
    raise ModelError(f"cannot convert {c} input channels to {in_channels}")


# ---------------------------------------------------------------------------------------------- tokenizer


def tokenizer_config_from_published(state: dict[str, torch.Tensor], in_channels: int = 1) -> TokenizerConfig:
    """:class:`TokenizerConfig` (``layout="published"``) of a published tokenizer state dict."""
    try:
        c0, _, first = (int(v) for v in state["encoder.0.weight"].shape[:3])
        codebook, dim = (int(v) for v in state["quantize.proj.weight"].shape)
    except (KeyError, ValueError) as e:
        raise ModelError(f"not a PUMIT tokenizer state dict: {e}") from None
    downs = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"encoder\.(\d+)\.weight", k)) and state[k].ndim == 5
                   and state[k].shape[-1] != 3)
    channels = tuple(int(state[f"encoder.{i}.weight"].shape[0]) for i in downs)
    blocks = sum(1 for k in state if re.fullmatch(r"encoder\.\d+\.weight", k) and state[k].ndim == 5 and state[k].shape[-1] == 3)
    if not channels or channels[0] != c0 or channels[-1] != dim:
        raise ModelError(f"cannot infer the tokenizer widths (first {c0}, codebook dim {dim}, downsamplings {channels})")
    return published_tokenizer_config(in_channels, channels=channels, first_stride=first, num_blocks=blocks, codebook_size=codebook)


def fold_grey_output(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Last transposed conv ``(in, 3, k, k, k)`` + bias ``(3,)`` → grey ``(in, 1, k, k, k)`` + ``(1,)``:
    the BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of the RGB reconstruction (exact, the layer is linear)."""
    if weight.shape[1] != 3:
        raise ModelError(f"expected an RGB output layer (in, 3, k, k, k), got {tuple(weight.shape)}")
    luma = weight.new_tensor(BT601_WEIGHTS)
    w = torch.einsum("c,ic...->i...", luma, weight).unsqueeze(1)
    return w, None if bias is None else (luma * bias).sum().reshape(1)


def tokenizer_state_from_published(state: dict[str, torch.Tensor], config: TokenizerConfig) -> dict[str, torch.Tensor]:
    """Published tokenizer tensors for ``config`` (same keys): unchanged for ``in_channels=3``; for grey the
    first filters are summed over RGB and the output folded to BT.601 luma (:func:`fold_grey_output`)."""
    out = dict(state)
    if config.in_channels == 3:
        return out
    if config.in_channels != 1:
        raise ModelError(f"the published tokenizer converts to 1 (grey) or 3 (RGB) channels, not {config.in_channels}")
    out["encoder.0.weight"] = fold_input_channels(state["encoder.0.weight"], 1)
    last = max((k for k in state if re.fullmatch(r"decoder\.\d+\.weight", k)), key=lambda k: int(k.split(".")[1]))
    bias_key = last[: -len("weight")] + "bias"
    w, b = fold_grey_output(state[last], state.get(bias_key))
    out[last] = w
    if b is not None:
        out[bias_key] = b
    return out
