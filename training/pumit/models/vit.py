"""SPAD-ViT: a plain ViT with a SAC patch embedding, EVA-02 blocks and additive 3D RoPE.

Input ``(B, C, D, H, W)`` with spacing ``(thickness, H, W)`` mm. The patch embedding downsamples in-plane
by ``patch_size`` and along depth by ``max(patch_size >> DA, 1)``, giving a token grid ``(d, h, w)`` and
``N = d·h·w`` patch tokens; the sequence is ``[CLS] + N`` tokens of width ``embed_dim``. The same
weights serve 2D images (``D = 1``), isotropic and anisotropic volumes.

Block (EVA-02): pre-LayerNorm attention (q/k/v without bias plus learned ``q_bias``/``v_bias``, RoPE on
patch tokens, :func:`torch.nn.functional.scaled_dot_product_attention`) and a SwiGLU MLP with a
sub-LayerNorm (``ffn_ln``) before its output projection. Parameter names follow the published PUMIT
checkpoints so that :mod:`pumit.models.convert` is a near-identity.

Three config fields select between our own defaults and the published ``pumit-b.ckpt`` behaviour
(:data:`pumit.models.published.PUMIT_VIT_B`):

* ``norm_eps`` — eps of every LayerNorm (ours 1e-6; published: PyTorch's default 1e-5).
* ``pos_embed_rule`` — how the learned pos-embed ``(1, C, *abs_pos_grid)`` is resampled to the token
  grid: ``"trilinear"`` (ours) or ``"area_trilinear"`` (published: area-average the axes that shrink,
  then trilinear for the axes that grow), see :func:`resample_pos_embed`.
* ``input_convention`` — what the patch-embedding weights were trained on. The model's *input* is
  always pumit's convention, ``in_channels`` channels in ``[-1, 1]``; with ``"imagenet"`` the weights
  have 3 RGB input channels trained on ImageNet-normalised RGB (grey ``x ∈ [0, 1]`` replicated), and
  the model maps its ``[-1, 1]`` input onto that exactly by folding the affine map into the patch
  embedding (:func:`imagenet_folded_patch_embed`). ``"signed"`` (ours) feeds the input as it is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from pumit.errors import InputError
from pumit.models.rope import (
    AdditiveRoPE3D,
    PrefixedRope,
    apply_prefixed_rope,
    apply_rope,
    prefixed_tables,
)
from pumit.models.sac import SACDownsample
from pumit.spacing import Spacing, SpacingLike, check_volume, down_depth_stride

#: ``ViTConfig.pos_embed_rule`` values (see :func:`resample_pos_embed`).
POS_EMBED_RULES = ("trilinear", "area_trilinear")
#: ``ViTConfig.input_convention`` values (see the module docstring).
INPUT_CONVENTIONS = ("signed", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ViTConfig:
    """Architecture of :class:`SpadViT`. ``mlp_hidden`` 0 means ``round(embed_dim · 8/3)`` (2048 for 768)."""

    in_channels: int = 1
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_hidden: int = 0
    codebook_size: int = 1024
    rope_base: float = 10000.0
    rope_z_base: float = 2333.0
    abs_pos_grid: tuple[int, int, int] | None = (5, 10, 10)
    drop_path: float = 0.0
    grad_checkpointing: bool = False
    norm_eps: float = 1e-6
    pos_embed_rule: str = "trilinear"
    input_convention: str = "signed"

    PRESETS = {
        "tiny": dict(embed_dim=192, depth=12, num_heads=3),
        "small": dict(embed_dim=384, depth=12, num_heads=6),
        "base": dict(embed_dim=768, depth=12, num_heads=12, mlp_hidden=2048),
        "large": dict(embed_dim=1024, depth=24, num_heads=16),
    }

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 4:
            raise InputError(f"embed_dim {self.embed_dim} must split into {self.num_heads} heads of a size divisible by 4")
        if self.patch_size < 1 or self.patch_size & (self.patch_size - 1):
            raise InputError(f"patch_size must be a power of 2, got {self.patch_size}")
        if self.abs_pos_grid is not None:
            self.abs_pos_grid = tuple(int(v) for v in self.abs_pos_grid)  # type: ignore[assignment]
        if self.pos_embed_rule not in POS_EMBED_RULES:
            raise InputError(f"pos_embed_rule must be one of {', '.join(POS_EMBED_RULES)}, got {self.pos_embed_rule!r}")
        if self.input_convention not in INPUT_CONVENTIONS:
            raise InputError(f"input_convention must be one of {', '.join(INPUT_CONVENTIONS)}, got {self.input_convention!r}")
        if self.input_convention == "imagenet" and self.in_channels not in (1, 3):
            raise InputError(f"an 'imagenet' input convention model takes 1 (grey) or 3 (RGB) channels, not {self.in_channels}")
        if not self.norm_eps > 0:
            raise InputError(f"norm_eps must be positive, got {self.norm_eps}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ViTConfig:
        if name not in cls.PRESETS:
            raise InputError(f"unknown ViT preset {name!r}; choose one of {', '.join(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or int(round(self.embed_dim * 8 / 3))

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def embed_in_channels(self) -> int:
        """Input channels of the patch-embedding weight: 3 (RGB) for ``input_convention='imagenet'``."""
        return 3 if self.input_convention == "imagenet" else self.in_channels

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["abs_pos_grid"] = list(self.abs_pos_grid) if self.abs_pos_grid else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ViTConfig:
        return cls(**d)


def resample_pos_embed(pos: torch.Tensor, grid: tuple[int, int, int], rule: str = "trilinear") -> torch.Tensor:
    """Resample a pos-embed ``(1, C, d0, h0, w0)`` to the token grid ``(d, h, w)``.

    ``"trilinear"``: one trilinear interpolation (``align_corners=False``). ``"area_trilinear"`` (published):
    first area-average (``mode='area'``) to ``min(stored, grid)`` per axis, then trilinear to ``grid`` for
    the axes that grow; a 2D image (``d = 1``) thus gets the mean over the stored depth, not its middle.
    """
    grid = tuple(int(v) for v in grid)  # type: ignore[assignment]
    if rule == "trilinear":
        return F.interpolate(pos, size=grid, mode="trilinear", align_corners=False)
    if rule != "area_trilinear":
        raise InputError(f"unknown pos_embed_rule {rule!r}; choose one of {', '.join(POS_EMBED_RULES)}")
    down = tuple(min(a, b) for a, b in zip(pos.shape[2:], grid))
    if down != tuple(pos.shape[2:]):
        pos = F.interpolate(pos, size=down, mode="area")
    if down != grid:
        pos = F.interpolate(pos, size=grid, mode="trilinear", align_corners=False)
    return pos


def imagenet_folded_patch_embed(weight: torch.Tensor, bias: torch.Tensor | None, in_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch-embedding ``(weight (O, 3, k, k, k), bias (O,))`` trained on ImageNet-normalised RGB → the
    equivalent filters for pumit inputs ``y ∈ [-1, 1]`` with ``in_channels`` 1 (grey) or 3 (RGB).

    With ``x = (y + 1) / 2`` and ``x_c = (x − mean_c) / std_c``: ``W'_c = W_c / (2 std_c)`` (summed over
    ``c`` for grey) and ``b' = b + Σ_c (0.5 − mean_c) / std_c · ΣW_c`` (sum over the kernel). Exact for a
    convolution without padding (the patch embedding), also after SAC's depth sum-pooling.
    """
    std = weight.new_tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    mean = weight.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    w = weight / (2 * std)
    b = (weight * ((0.5 - mean) / std)).sum((1, 2, 3, 4))
    b = b if bias is None else bias + b
    return (w.sum(1, keepdim=True) if in_channels == 1 else w), b


class Attention(nn.Module):
    """Multi-head self-attention with RoPE on patch tokens (the first ``num_prefix`` tokens are not rotated)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, num_prefix: int = 1) -> torch.Tensor:
        """``rope``: ``(cos, sin)`` tables of the ``N`` patch tokens, or a :class:`PrefixedRope` covering the
        whole sequence (the faster form :class:`SpadViT` passes; identical result)."""
        b, n, c = x.shape
        # the projections are called as modules (not F.linear on their weights), so that module swaps such as
        # int8 dynamic quantization (torch.ao.quantization.quantize_dynamic) apply to them too
        q = self.q_proj(x) + self.q_bias
        k = self.k_proj(x)
        v = self.v_proj(x) + self.v_bias
        q, k, v = (t.view(b, n, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        if isinstance(rope, PrefixedRope):  # a length mismatch fails loudly in the broadcast
            q, k = apply_prefixed_rope(q, rope), apply_prefixed_rope(k, rope)
        elif rope is not None:
            cos, sin = rope
            q = torch.cat([q[:, :, :num_prefix], apply_rope(q[:, :, num_prefix:], cos, sin)], dim=2)
            k = torch.cat([k[:, :, :num_prefix], apply_rope(k[:, :, num_prefix:], cos, sin)], dim=2)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class SwiGLU(nn.Module):
    """``w3(ffn_ln(silu(w1 x) · w2 x))`` (EVA-02 MLP with sub-LN)."""

    def __init__(self, dim: int, hidden: int, eps: float = 1e-6):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=eps)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class DropPath(nn.Module):
    """Stochastic depth per sample."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """EVA-02 transformer block."""

    def __init__(self, dim: int, num_heads: int, hidden: int, drop_path: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = SwiGLU(dim, hidden, eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rope))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SpadViT(nn.Module):
    """Spatially adaptive ViT backbone (see module docstring). ``mask_token`` is used by MIM pre-training."""

    model_type = "vit"

    def __init__(self, config: ViTConfig | None = None):
        super().__init__()
        self.config = cfg = config or ViTConfig()
        c = cfg.embed_dim
        self.patch_embed = nn.Module()
        self.patch_embed.proj = SACDownsample(cfg.embed_in_channels, c, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, c, *cfg.abs_pos_grid)) if cfg.abs_pos_grid else None
        self.rope = AdditiveRoPE3D(cfg.head_dim, cfg.rope_base, cfg.rope_z_base)
        dpr = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(Block(c, cfg.num_heads, cfg.hidden, dpr[i], cfg.norm_eps) for i in range(cfg.depth))
        self.norm = nn.LayerNorm(c, eps=cfg.norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for i, blk in enumerate(self.blocks):  # rescale residual branches (as BEiT/EVA)
            blk.attn.proj.weight.data.div_(math.sqrt(2.0 * (i + 1)))
            blk.mlp.w3.weight.data.div_(math.sqrt(2.0 * (i + 1)))

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    def token_grid(self, shape: tuple[int, int, int], spacing: SpacingLike) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``(grid (d, h, w), patch (pd, P, P))`` for an input of spatial ``shape``; raises if not divisible."""
        t = down_depth_stride(spacing, self.patch_size)
        patch = (t, self.patch_size, self.patch_size)
        if any(n % p for n, p in zip(shape, patch)):
            raise InputError(
                f"input size {tuple(shape)} (D, H, W) with spacing {tuple(spacing)} mm is not divisible by the "
                f"adaptive patch {patch}; pad or crop to a multiple"
            )
        return (shape[0] // t, shape[1] // self.patch_size, shape[2] // self.patch_size), patch

    def embed(self, x: torch.Tensor, spacing: SpacingLike, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int, int], Spacing]:
        """Patch tokens ``(B, N, C)`` (masked positions replaced by ``mask_token``), token grid and spacing."""
        s = check_volume(x, spacing)
        if x.shape[1] != self.config.in_channels:
            raise InputError(f"model expects {self.config.in_channels} channel(s), got input shape {tuple(x.shape)}")
        grid, _ = self.token_grid(tuple(x.shape[2:]), s)
        proj = self.patch_embed.proj
        if self.config.input_convention == "imagenet":
            weight, bias = imagenet_folded_patch_embed(proj.weight, proj.bias, self.config.in_channels)
            feat, ts = proj(x, s, weight=weight, bias=bias)
        else:
            feat, ts = proj(x, s)
        if self.pos_embed is not None:
            pos = resample_pos_embed(self.pos_embed.float(), grid, self.config.pos_embed_rule).to(feat.dtype)
            feat = feat + pos
        tokens = feat.flatten(2).transpose(1, 2)
        if mask is not None:
            if mask.shape != tokens.shape[:2]:
                raise InputError(f"mask shape {tuple(mask.shape)} does not match the token sequence {tuple(tokens.shape[:2])}")
            tokens = torch.where(mask.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        return tokens, grid, ts

    def forward_features(
        self,
        x: torch.Tensor,
        spacing: SpacingLike,
        mask: torch.Tensor | None = None,
        return_layers: tuple[int, ...] = (),
    ) -> tuple[torch.Tensor, tuple[int, int, int], list[torch.Tensor]]:
        """Normalised tokens ``(B, 1 + N, C)``, the grid ``(d, h, w)``, and the raw outputs ``(B, 1 + N, C)``
        of the blocks listed in ``return_layers`` (0-based, in that order)."""
        tokens, grid, _ = self.embed(x, spacing, mask)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        h = torch.cat([cls, tokens], dim=1)
        rope = prefixed_tables(*self.rope.tables(grid, h.dtype, h.device), num_prefix=1)  # [CLS] is not rotated
        taps: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks):
            if self.config.grad_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(blk, h, rope, use_reentrant=False)
            else:
                h = blk(h, rope)
            if i in return_layers:
                taps[i] = h
        return self.norm(h), grid, [taps[i] for i in return_layers]

    def forward(self, x: torch.Tensor, spacing: SpacingLike) -> torch.Tensor:
        """The normalised ``[CLS]`` embedding ``(B, C)``."""
        return self.forward_features(x, spacing)[0][:, 0]


def random_mask(batch: int, num_tokens: int, ratio: float = 0.55, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Boolean mask ``(B, N)`` with exactly ``round(ratio · N)`` (at least 1) masked tokens per sample."""
    if not 0 < ratio < 1:
        raise InputError(f"mask ratio must be in (0, 1), got {ratio}")
    k = max(1, int(round(ratio * num_tokens)))
    noise = torch.rand(batch, num_tokens, generator=generator, device=device)
    idx = noise.argsort(dim=1)[:, :k]
    mask = torch.zeros(batch, num_tokens, dtype=torch.bool, device=device)
    return mask.scatter_(1, idx, True)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over (masked) tokens of ``−Σ_k target_k log softmax(logits)_k``; ``logits/target (B, N, K)``."""
    ce = -(target.float() * F.log_softmax(logits.float(), dim=-1)).sum(-1)
    if mask is None:
        return ce.mean()
    return (ce * mask).sum() / mask.sum().clamp_min(1)


class SpadViTMIM(nn.Module):
    """SPAD-ViT with the masked-image-modeling head ``Linear(C, C) → GELU → Linear(C, K)``."""

    model_type = "mim"

    def __init__(self, config: ViTConfig | None = None):
        super().__init__()
        self.config = config or ViTConfig()
        self.vit = SpadViT(self.config)
        c = self.config.embed_dim
        self.mim_head = nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.Linear(c, self.config.codebook_size))

    def forward(self, x: torch.Tensor, spacing: SpacingLike, mask: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Codebook logits ``(B, N, K)`` for every patch token (use the masked ones) and the token grid."""
        h, grid, _ = self.vit.forward_features(x, spacing, mask)
        return self.mim_head(h[:, 1:]), grid

    def loss(self, x: torch.Tensor, spacing: SpacingLike, target_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Soft-target cross-entropy on masked positions; ``target_probs (B, d, h, w, K)`` or ``(B, N, K)``."""
        logits, grid = self(x, spacing, mask)
        target = target_probs.reshape(logits.shape[0], -1, target_probs.shape[-1])
        if target.shape[:2] != logits.shape[:2]:
            raise InputError(f"tokenizer grid {tuple(target_probs.shape[1:-1])} does not match the ViT grid {grid}")
        return soft_cross_entropy(logits, target, mask)
