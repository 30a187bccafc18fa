"""Universal visual tokenizer: SAC encoder, soft-token quantizer, SAC decoder.

Shapes: input ``x`` ``(B, C, D, H, W)`` in ``[-1, 1]`` with spacing ``(thickness, H, W)`` mm. The encoder
downsamples in-plane by :attr:`UniversalTokenizer.total_stride` (16) and along depth as the anisotropy
allows, giving a token grid ``(d, h, w)``. Each token is a categorical distribution ``p`` over a codebook
of ``K`` embeddings ``E (K, dim)``; the *soft token* embedding is ``p @ E`` (no sampling), which the
decoder maps back to ``(B, C, D, H, W)`` on the input's grid.

``TokenizerConfig.layout`` selects the module structure: ``"default"`` (our own trained tokenizers:
LayerNorm + GELU only after the first downsampling) or ``"published"`` (the authors' ``simple``
tokenizer: LayerNorm + GELU after *every* downsampling, flat ``encoder.N``/``decoder.N`` keys and
``decoder.N.transposed_conv``/``.conv.M`` upsampling stages), whose state dict is key for key the
published ``simple-soft.ckpt['model']``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pumit.errors import InputError
from pumit.models.sac import (
    ChannelLayerNorm,
    ChannelLayerNormSeq,
    SACConv,
    SACConvBlock,
    SACDownsample,
    SACSequential,
    SACUpBlock,
    SACUpsample,
)
from pumit.spacing import Spacing, SpacingLike, as_spacing, check_volume, required_divisor

#: ``TokenizerConfig.layout`` values.
TOKENIZER_LAYOUTS = ("default", "published")
#: ``TokenizerConfig.norm`` values: ``"group"`` (GroupNorm(8) in the conv blocks, as published: its statistics are
#: those of the whole window, so a reconstruction depends on the window it is run in) or ``"channel"``
#: (LayerNorm over the channels of each voxel: away from its borders, the output does not depend on the window).
TOKENIZER_NORMS = ("group", "channel")


@dataclass
class TokenizerConfig:
    """Architecture of :class:`UniversalTokenizer` (paper sizes: ``preset='base'``)."""

    in_channels: int = 1
    channels: tuple[int, ...] = (128, 256, 512)
    first_stride: int = 4
    num_blocks: int = 2
    codebook_size: int = 1024
    temperature: float = 1.0
    layout: str = "default"
    norm: str = "group"

    PRESETS = {
        "base": dict(channels=(128, 256, 512), codebook_size=1024),
        "small": dict(channels=(64, 128, 256), codebook_size=512),
        "tiny": dict(channels=(16, 32, 64), codebook_size=256),
    }

    def __post_init__(self) -> None:
        if self.layout not in TOKENIZER_LAYOUTS:
            raise InputError(f"tokenizer layout must be one of {', '.join(TOKENIZER_LAYOUTS)}, got {self.layout!r}")
        if self.norm not in TOKENIZER_NORMS:
            raise InputError(f"tokenizer norm must be one of {', '.join(TOKENIZER_NORMS)}, got {self.norm!r}")
        if self.layout == "published" and self.norm != "group":
            raise InputError("the published tokenizer layout has GroupNorm blocks: use norm 'group' with it")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TokenizerConfig:
        if name not in cls.PRESETS:
            raise InputError(f"unknown tokenizer preset {name!r}; choose one of {', '.join(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    @property
    def embed_dim(self) -> int:
        return self.channels[-1]

    @property
    def total_stride(self) -> int:
        return self.first_stride * 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenizerConfig:
        d = dict(d)
        d["channels"] = tuple(d.get("channels", cls.channels))
        return cls(**d)


class SoftQuantizer(nn.Module):
    """Soft tokens: ``p = softmax(proj(z) / T)``, ``z_q = p @ E``.

    Input ``z`` ``(B, dim, d, h, w)``; returns ``(z_q (B, dim, d, h, w), probs (B, d, h, w, K), logits)``.
    """

    def __init__(self, dim: int, codebook_size: int, temperature: float = 1.0):
        super().__init__()
        self.proj = nn.Linear(dim, codebook_size)
        self.embedding = nn.Embedding(codebook_size, dim)
        self.temperature = temperature

    @property
    def codebook_size(self) -> int:
        return self.embedding.num_embeddings

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.proj(z.movedim(1, -1))
        probs = F.softmax(logits.float() / self.temperature, dim=-1).to(z.dtype)
        return self.embed(probs), probs, logits

    def embed(self, probs: torch.Tensor) -> torch.Tensor:
        """Expected codebook embedding ``(B, dim, d, h, w)`` of distributions ``probs (B, d, h, w, K)``."""
        return (probs @ self.embedding.weight.to(probs.dtype)).movedim(-1, 1)


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats along ``dim`` (``0 log 0 = 0``)."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim)


class PriorRegularization(NamedTuple):
    """Components of the extended prior-distribution regularization (all in nats)."""

    loss: torch.Tensor
    diversity_kl: torch.Tensor  # KL(p̄ || U) = log K - H(p̄): 0 when all codes are used equally
    mean_token_entropy: torch.Tensor  # mean_i H(p_i): 0 for one-hot tokens
    sharpness_kl: torch.Tensor  # mean_i KL(p_i || U) = log K - mean_i H(p_i)


def prior_regularization(probs: torch.Tensor, diversity_weight: float = 1.0, sharpness_weight: float = 0.2) -> PriorRegularization:
    """``λ1 · KL(p̄ ‖ U) − λ2 · mean_i KL(p_i ‖ U)`` for token distributions ``probs (..., K)``.

    ``p̄`` is the mean distribution over all tokens (averaged over all processes when
    ``torch.distributed`` is initialized, differentiably). Minimising it keeps every code in use
    (diversity) and every token's distribution sharp. Since ``KL(q‖U) = log K − H(q)`` this equals
    ``λ1 (log K − H(p̄)) − λ2 (log K − mean_i H(p_i))``.
    """
    k = probs.shape[-1]
    flat = probs.reshape(-1, k).float()
    p_bar = flat.mean(0)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_reduce

        p_bar = all_reduce(p_bar) / dist.get_world_size()
    log_k = math.log(k)
    diversity = log_k - entropy(p_bar)
    mean_h = entropy(flat).mean()
    sharp = log_k - mean_h
    return PriorRegularization(diversity_weight * diversity - sharpness_weight * sharp, diversity, mean_h, sharp)


class TokenizerOutput(NamedTuple):
    recon: torch.Tensor  # (B, C, D, H, W)
    probs: torch.Tensor  # (B, d, h, w, K)
    logits: torch.Tensor  # (B, d, h, w, K)
    token_spacing: Spacing


class UniversalTokenizer(nn.Module):
    """SAC encoder → soft-token quantizer → SAC decoder (the paper's ``simple`` soft tokenizer)."""

    model_type = "tokenizer"

    def __init__(self, config: TokenizerConfig | None = None):
        super().__init__()
        self.config = config = config or TokenizerConfig()
        build = _published_layers if config.layout == "published" else _default_layers
        enc, dec = build(config)
        self.encoder = SACSequential(enc)
        self.quantize = SoftQuantizer(config.channels[-1], config.codebook_size, config.temperature)
        self.decoder = SACSequential(dec)

    @property
    def total_stride(self) -> int:
        return self.config.total_stride

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def required_divisor(self, spacing: SpacingLike) -> tuple[int, int, int]:
        """``(d, h, w)`` that the input shape must be divisible by at this spacing."""
        return required_divisor(spacing, self.total_stride)

    def _check(self, x: torch.Tensor, spacing: SpacingLike) -> Spacing:
        s = check_volume(x, spacing)
        if x.shape[1] != self.config.in_channels:
            raise InputError(f"tokenizer expects {self.config.in_channels} channel(s), got input shape {tuple(x.shape)}")
        div = self.required_divisor(s)
        if any(n % k for n, k in zip(x.shape[2:], div)):
            raise InputError(
                f"input size {tuple(x.shape[2:])} (D, H, W) with spacing {s} mm must be divisible by {div} for this tokenizer"
            )
        return s

    def encode(self, x: torch.Tensor, spacing: SpacingLike) -> tuple[torch.Tensor, torch.Tensor, Spacing]:
        """Token distributions ``probs (B, d, h, w, K)``, ``logits`` and the token grid's spacing."""
        s = self._check(x, spacing)
        z, ts = self.encoder(x, s)
        _, probs, logits = self.quantize(z)
        return probs, logits, ts

    def decode(self, probs: torch.Tensor, token_spacing: SpacingLike, output_spacing: SpacingLike) -> torch.Tensor:
        """Reconstruct ``(B, C, D, H, W)`` at ``output_spacing`` from token distributions ``(B, d, h, w, K)``.

        Raises :class:`InputError` for ``probs`` of another rank or codebook size, or a spacing that is not
        3 positive finite numbers (mm)."""
        if not isinstance(probs, torch.Tensor) or probs.ndim != 5:
            shape = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
            raise InputError(f"token distributions must have shape (B, d, h, w, K), got {shape}")
        if probs.shape[-1] != self.codebook_size:
            raise InputError(f"token distributions have {probs.shape[-1]} codes, this tokenizer's codebook has {self.codebook_size}")
        if any(n == 0 for n in probs.shape):
            raise InputError(f"token distributions have an empty axis: shape {tuple(probs.shape)}")
        ts = as_spacing(token_spacing, name="token spacing")
        out = as_spacing(output_spacing, name="output spacing")
        x, _ = self.decoder(self.quantize.embed(probs), ts, target_thickness=out[0])
        return x

    def forward(self, x: torch.Tensor, spacing: SpacingLike) -> TokenizerOutput:
        s = self._check(x, spacing)
        z, ts = self.encoder(x, s)
        z_q, probs, logits = self.quantize(z)
        recon, _ = self.decoder(z_q, ts, target_thickness=s[0])
        return TokenizerOutput(recon, probs, logits, ts)


def _default_layers(config: TokenizerConfig) -> tuple[list[nn.Module], list[nn.Module]]:
    """Our own layout: LayerNorm + GELU after the first downsampling only; conv blocks as modules."""
    c = config.channels
    enc: list[nn.Module] = [SACDownsample(config.in_channels, c[0], config.first_stride), ChannelLayerNorm(c[0]), nn.GELU()]
    enc += [SACDownsample(a, b, 2) for a, b in zip(c[:-1], c[1:])]
    enc += [SACConvBlock(c[-1], c[-1], norm=config.norm) for _ in range(config.num_blocks)]
    dec: list[nn.Module] = [SACConvBlock(c[-1], c[-1], norm=config.norm) for _ in range(config.num_blocks)]
    for a, b in zip(c[::-1][:-1], c[::-1][1:]):
        dec += [SACUpsample(a, b, 2), SACConvBlock(b, b, norm=config.norm)]
    dec += [SACUpsample(c[0], config.in_channels, config.first_stride)]
    return enc, dec


def _conv_norm_act(channels: int) -> list[nn.Module]:
    return [SACConv(channels, channels), nn.GroupNorm(min(8, channels), channels), nn.LeakyReLU(inplace=True)]


def _published_layers(config: TokenizerConfig) -> tuple[list[nn.Module], list[nn.Module]]:
    """The published ``simple`` layout: (down, LayerNorm, GELU) per level, flat (3³ conv, GroupNorm,
    LeakyReLU) blocks, decoder stages ``transposed_conv`` + ``conv`` (:class:`SACUpBlock`)."""
    c = config.channels
    enc: list[nn.Module] = []
    for i, (a, b) in enumerate(zip((config.in_channels, *c[:-1]), c)):
        enc += [SACDownsample(a, b, config.first_stride if i == 0 else 2), ChannelLayerNormSeq(b), nn.GELU()]
    for _ in range(config.num_blocks):
        enc += _conv_norm_act(c[-1])
    dec: list[nn.Module] = []
    for _ in range(config.num_blocks):
        dec += _conv_norm_act(c[-1])
    dec += [SACUpBlock(a, b, 2) for a, b in zip(c[::-1][:-1], c[::-1][1:])]
    dec += [SACUpsample(c[0], config.in_channels, config.first_stride)]
    return enc, dec
