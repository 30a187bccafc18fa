"""SPAD-ViT: a plain ViT with a SAC patch embedding, EVA-02 blocks and additive 3D RoPE.

Input ``(B, C, D, H, W)`` with spacing ``(thickness, H, W)`` mm. The patch embedding downsamples in-plane
by ``patch_size`` and along depth by ``max(patch_size >> DA, 1)``, giving a token grid ``(d, h, w)`` and
``N = d·h·w`` patch tokens; the sequence is ``[CLS] + N`` tokens of width ``embed_dim``. The same
weights serve 2D images (``D = 1``), isotropic and anisotropic volumes.

Block (EVA-02): pre-LayerNorm attention (q/k/v without bias plus learned ``q_bias``/``v_bias``, RoPE on
patch tokens, :func:`torch.nn.functional.scaled_dot_product_attention`) and a SwiGLU MLP with a
sub-LayerNorm (``ffn_ln``) before its output projection. Parameter names follow the published PUMIT
checkpoints so that :mod:`pumit.models.convert` is a near-identity.
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["abs_pos_grid"] = list(self.abs_pos_grid) if self.abs_pos_grid else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ViTConfig:
        return cls(**d)


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
        q = F.linear(x, self.q_proj.weight, self.q_bias)
        k = self.k_proj(x)
        v = F.linear(x, self.v_proj.weight, self.v_bias)
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

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=1e-6)
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

    def __init__(self, dim: int, num_heads: int, hidden: int, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLU(dim, hidden)
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
        self.patch_embed.proj = SACDownsample(cfg.in_channels, c, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, c, *cfg.abs_pos_grid)) if cfg.abs_pos_grid else None
        self.rope = AdditiveRoPE3D(cfg.head_dim, cfg.rope_base, cfg.rope_z_base)
        dpr = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(Block(c, cfg.num_heads, cfg.hidden, dpr[i]) for i in range(cfg.depth))
        self.norm = nn.LayerNorm(c, eps=1e-6)
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
        feat, ts = self.patch_embed.proj(x, s)
        if self.pos_embed is not None:
            pos = F.interpolate(self.pos_embed.float(), size=grid, mode="trilinear", align_corners=False).to(feat.dtype)
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
