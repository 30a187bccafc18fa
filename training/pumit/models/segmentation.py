"""Segmentation with SPAD-ViT: ViT features → hierarchical maps → U-Net decoder, all spacing-aware.

Levels are indexed by their in-plane scale ``2^ℓ`` (ℓ = 0 is full resolution). With patch size
``P = 2^p`` the ViT's tokens live at level ``p``. Four block outputs become the levels ``p−2`` (two SAC
transposed convs ×2), ``p−1`` (one), ``p`` (identity) and ``p+1`` (SAC max-pool); a small SAC conv stem
provides levels ``0 … p−3`` at full detail. A U-Net decoder then upsamples level by level with SAC
transposed convs whose depth stride is chosen to land exactly on each skip's grid (so anisotropic
depth is never over-upsampled), concatenates the skip and applies two SAC 3³ conv blocks.

Two decoders (``SegmenterConfig.decoder``; a config without the field is ``"unet"``, the original):

* ``"unet"`` — as above: the adapters upsample at the ViT width, every decoder level concatenates its
  skip and runs two SAC 3³ conv blocks, the stem runs two conv blocks per level.
* ``"light"`` — the same levels and spacing rules, with the cost moved away from full resolution:
  each adapter first projects the ViT width to its level's channels (1×1) and upsamples *after* that;
  the ViT-derived levels (``p−2 … p``) concatenate their skip and run **one** conv block; the stem
  levels (``0 … p−3``, full and half resolution) are narrow (default 8/16 channels), run one conv
  block each, and are merged in the decoder by **addition** + one conv block (a light learned
  upsampling). ``conv_levels = k`` (light only) continues the stem as a small CNN encoder into the first ``k``
  ViT-derived levels (``p−2 …``, at the adapter's channels) and **adds** it to the adapter output there, so
  local detail does not have to come from the tokens alone. ``blocks_per_level = n`` (light only; default 2 for
  new configs, 1 for configs saved before the field) adds ``n − 1`` **residual** SAC conv blocks to every stem
  and decoder level (plain extra blocks slowed convergence; residual ones raised hippocampus Dice,
  ``docs/results.md``). Per 64×128×128 window of a ViT-B it costs a small fraction of the U-Net decoder's
  FLOPs (``docs/benchmarks.md``); the ViT (and so any pre-trained ViT checkpoint) is identical.

Input ``(B, C, D, H, W)`` with spacing; output logits ``(B, num_classes, D, H, W)``. The input size must
be divisible by :meth:`SpadViTSegmenter.required_divisor` (in-plane ``2P``; depth as the DA allows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pumit.errors import InputError
from pumit.models.sac import ChannelLayerNorm, SACConvBlock, SACDownsample, SACMaxPool, SACUpsample
from pumit.models.vit import SpadViT, ViTConfig
from pumit.spacing import Spacing, SpacingLike, check_volume, downsampled_spacing, required_divisor


def default_feature_layers(depth: int) -> tuple[int, ...]:
    """Block indices tapped for the 4 hierarchical levels (``(3, 5, 7, 11)`` for 12 blocks, as published)."""
    if depth == 12:
        return (3, 5, 7, 11)
    if depth < 4:
        return tuple(min(i, depth - 1) for i in range(4))
    return tuple(int(round(depth * k / 4)) - 1 for k in range(1, 5))


#: Decoder designs (see the module docstring); a saved config without ``decoder`` is ``"unet"``.
DECODERS: tuple[str, ...] = ("unet", "light")

#: Default channels per decoder: (adapter levels p-2 … p+1, stem levels 0 … p-3).
DEFAULT_CHANNELS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "unet": ((128, 256, 512, 512), (32, 64)),
    "light": ((32, 64, 128, 256), (8, 16)),
}

#: Default ``conv_levels`` per decoder for new configs (a saved config without the field has 0: the design before it).
DEFAULT_CONV_LEVELS: dict[str, int] = {"unet": 0, "light": 2}

#: Default ``blocks_per_level`` per decoder for new configs (a saved config without the field has 1: the design
#: before it; the U-Net decoder's two blocks per level are fixed).
DEFAULT_BLOCKS_PER_LEVEL: dict[str, int] = {"unet": 1, "light": 2}


@dataclass
class SegmenterConfig:
    """Segmenter architecture. ``adapter_channels`` / ``stem_channels`` / ``conv_levels`` / ``blocks_per_level``
    ``None`` = the decoder's defaults (:data:`DEFAULT_CHANNELS`, :data:`DEFAULT_CONV_LEVELS`,
    :data:`DEFAULT_BLOCKS_PER_LEVEL`)."""

    vit: ViTConfig = field(default_factory=ViTConfig)
    num_classes: int = 2
    feature_layers: tuple[int, ...] | None = None
    adapter_channels: tuple[int, int, int, int] | None = None
    stem_channels: tuple[int, ...] | None = None
    decoder: str = "unet"
    conv_levels: int | None = None
    blocks_per_level: int | None = None

    def __post_init__(self) -> None:
        self.decoder = str(self.decoder or "unet").lower()
        if self.decoder not in DECODERS:
            raise InputError(f"unknown segmentation decoder {self.decoder!r}; choose one of {', '.join(DECODERS)}")
        default_adapter, default_stem = DEFAULT_CHANNELS[self.decoder]
        if self.adapter_channels is None:
            self.adapter_channels = default_adapter  # type: ignore[assignment]
        if self.stem_channels is None:
            self.stem_channels = default_stem
        if len(tuple(self.adapter_channels)) != 4 or min(self.adapter_channels) < 1:  # type: ignore[arg-type]
            raise InputError(f"adapter_channels needs 4 positive values, got {self.adapter_channels}")
        p = int(math.log2(self.vit.patch_size))
        if p < 2:
            raise InputError(f"segmentation needs patch_size >= 4, got {self.vit.patch_size}")
        if len(self.stem_channels) < p - 2:
            raise InputError(f"patch_size {self.vit.patch_size} needs {p - 2} stem channel values, got {self.stem_channels}")
        self.stem_channels = tuple(self.stem_channels[: p - 2])
        self.conv_levels = DEFAULT_CONV_LEVELS[self.decoder] if self.conv_levels is None else int(self.conv_levels)
        if not 0 <= self.conv_levels <= 3:
            raise InputError(f"conv_levels must be 0 … 3 (the ViT-derived levels below the tokens), got {self.conv_levels}")
        if self.conv_levels and self.decoder != "light":
            raise InputError("conv_levels needs the light decoder")
        self.blocks_per_level = (DEFAULT_BLOCKS_PER_LEVEL[self.decoder] if self.blocks_per_level is None
                                 else int(self.blocks_per_level))
        if not 1 <= self.blocks_per_level <= 3:
            raise InputError(f"blocks_per_level must be 1 … 3, got {self.blocks_per_level}")
        if self.blocks_per_level != 1 and self.decoder != "light":
            raise InputError("blocks_per_level needs the light decoder (the U-Net decoder always runs two blocks)")
        self.adapter_channels = tuple(self.adapter_channels)  # type: ignore[assignment]
        if self.feature_layers is None:
            self.feature_layers = default_feature_layers(self.vit.depth)
        self.feature_layers = tuple(int(i) for i in self.feature_layers)
        if len(self.feature_layers) != 4 or max(self.feature_layers) >= self.vit.depth:
            raise InputError(f"feature_layers must be 4 block indices < {self.vit.depth}, got {self.feature_layers}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "vit": self.vit.to_dict(),
            "num_classes": self.num_classes,
            "feature_layers": list(self.feature_layers or ()),
            "adapter_channels": list(self.adapter_channels),
            "stem_channels": list(self.stem_channels or ()),
            "decoder": self.decoder,
            "conv_levels": self.conv_levels,
            "blocks_per_level": self.blocks_per_level,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmenterConfig:
        d = dict(d)
        d["vit"] = ViTConfig.from_dict(d["vit"])
        for k in ("feature_layers", "adapter_channels", "stem_channels"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        d.setdefault("decoder", "unet")  # configs saved before the light decoder existed
        d.setdefault("conv_levels", 0)  # configs saved before conv_levels existed
        d.setdefault("blocks_per_level", 1)  # configs saved before blocks_per_level existed
        if d["decoder"] == "unet":  # old configs always carry their channels; keep the old defaults otherwise
            d.setdefault("adapter_channels", DEFAULT_CHANNELS["unet"][0])
            d.setdefault("stem_channels", DEFAULT_CHANNELS["unet"][1])
        return cls(**d)


class _Adapter(nn.Module):
    """One ViT tap ``(B, C, d, h, w)`` → one level: ``ups`` SAC ×2 upsamplings, or a SAC max-pool (``ups = −1``)."""

    forward_spacing = True

    def __init__(self, dim: int, out_channels: int, ups: int):
        super().__init__()
        self.norm = ChannelLayerNorm(dim, eps=1e-6)
        self.ups = nn.ModuleList(SACUpsample(dim, dim, 2) for _ in range(max(ups, 0)))
        self.act = nn.GELU()
        self.pool = SACMaxPool(2) if ups < 0 else None
        self.lateral = nn.Conv3d(dim, out_channels, 1)

    def forward(self, x: torch.Tensor, spacing: Spacing, targets: list[float]) -> tuple[torch.Tensor, Spacing]:
        x = self.norm(x)
        for i, up in enumerate(self.ups):
            if i:
                x = self.act(x)
            x, spacing = up(x, spacing, targets[i])
        if self.pool is not None:
            x, spacing = self.pool(x, spacing)
        return self.lateral(x), spacing


class _UpBlock(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = SACUpsample(in_channels, out_channels, 2)
        self.conv1 = SACConvBlock(out_channels + skip_channels, out_channels)
        self.conv2 = SACConvBlock(out_channels, out_channels)

    def forward(self, x: torch.Tensor, spacing: Spacing, skip: torch.Tensor, skip_spacing: Spacing) -> tuple[torch.Tensor, Spacing]:
        x, s = self.up(x, spacing, skip_spacing[0])
        if x.shape[2:] != skip.shape[2:]:  # a bug, not a user error: the SAC rule must land on the skip grid
            raise RuntimeError(f"decoder level {tuple(x.shape[2:])} does not match skip {tuple(skip.shape[2:])}")
        x, s = self.conv1(torch.cat([x, skip], dim=1), s)
        return self.conv2(x, s)


class _LightAdapter(nn.Module):
    """One ViT tap → one level, projecting first: norm → 1×1 to ``out_channels`` → ``ups`` SAC ×2
    upsamplings at that width (GELU between), or a SAC max-pool (``ups = −1``)."""

    def __init__(self, dim: int, out_channels: int, ups: int):
        super().__init__()
        self.norm = ChannelLayerNorm(dim, eps=1e-6)
        self.lateral = nn.Conv3d(dim, out_channels, 1)
        self.ups = nn.ModuleList(SACUpsample(out_channels, out_channels, 2) for _ in range(max(ups, 0)))
        self.act = nn.GELU()
        self.pool = SACMaxPool(2) if ups < 0 else None

    def forward(self, x: torch.Tensor, spacing: Spacing, targets: list[float]) -> tuple[torch.Tensor, Spacing]:
        x = self.lateral(self.norm(x))
        for i, up in enumerate(self.ups):
            x, spacing = up(self.act(x), spacing, targets[i])
        if self.pool is not None:
            x, spacing = self.pool(x, spacing)
        return x, spacing


class _ResidualBlock(nn.Module):
    """``x + SACConvBlock(x)``: extra depth of a light level (``blocks_per_level``) that does not slow convergence."""

    forward_spacing = True

    def __init__(self, channels: int):
        super().__init__()
        self.block = SACConvBlock(channels, channels)

    def forward(self, x: torch.Tensor, spacing: SpacingLike) -> tuple[torch.Tensor, Spacing]:
        y, s = self.block(x, spacing)
        return x + y, s


class _LightUpBlock(nn.Module):
    """SAC ×2 upsampling → merge the skip (concatenation, or addition for ``add``) → one SAC conv block."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, add: bool, blocks: int = 1):
        super().__init__()
        if add and skip_channels != out_channels:
            raise ValueError(f"an additive skip needs {out_channels} channels, got {skip_channels}")
        self.add = add
        self.up = SACUpsample(in_channels, out_channels, 2)
        self.conv = SACConvBlock(out_channels if add else out_channels + skip_channels, out_channels)
        self.extra = nn.ModuleList(_ResidualBlock(out_channels) for _ in range(blocks - 1))

    def forward(self, x: torch.Tensor, spacing: Spacing, skip: torch.Tensor, skip_spacing: Spacing) -> tuple[torch.Tensor, Spacing]:
        x, s = self.up(x, spacing, skip_spacing[0])
        if x.shape[2:] != skip.shape[2:]:  # a bug, not a user error: the SAC rule must land on the skip grid
            raise RuntimeError(f"decoder level {tuple(x.shape[2:])} does not match skip {tuple(skip.shape[2:])}")
        y, s = self.conv(x + skip if self.add else torch.cat([x, skip], dim=1), s)
        for block in self.extra:
            y, s = block(y, s)
        return y, s


def _build_stem(decoder: str, in_channels: int, channels: tuple[int, ...], blocks: int = 1) -> nn.ModuleList:
    """Stem levels 0 … p−3. ``unet``: two conv blocks per level (level ≥ 1 starts with a SAC ×2
    downsampling); ``light``: level 0 ``blocks`` conv blocks, level ≥ 1 a SAC ×2 downsampling + ``blocks`` conv
    blocks."""
    stem: list[nn.Module] = []
    prev = in_channels
    for lvl, c in enumerate(channels):
        if decoder == "light":
            first: nn.Module = SACDownsample(prev, c, 2) if lvl else SACConvBlock(prev, c)
            layers = [first, SACConvBlock(c, c)] if lvl else [first]
            stem.append(nn.ModuleList(layers + [_ResidualBlock(c) for _ in range(blocks - 1)]))
        else:
            stem.append(nn.ModuleList([SACDownsample(prev, c, 2) if lvl else SACConvBlock(prev, c), SACConvBlock(c, c)]))
        prev = c
    return nn.ModuleList(stem)


class SpadViTSegmenter(nn.Module):
    """SPAD-ViT + hierarchical adapter + SAC decoder (``config.decoder``: ``unet`` or ``light``; see module docstring)."""

    model_type = "segmentation"

    def __init__(self, config: SegmenterConfig | None = None):
        super().__init__()
        self.config = cfg = config or SegmenterConfig()
        self.vit = SpadViT(cfg.vit)
        p = int(math.log2(cfg.vit.patch_size))
        self.num_levels = p + 2
        chans = list(cfg.stem_channels) + list(cfg.adapter_channels)  # channels per level 0 … p+1
        self.level_channels = chans
        self.stem = _build_stem(cfg.decoder, cfg.vit.in_channels,
                                tuple(cfg.stem_channels or ()) + tuple(cfg.adapter_channels[: cfg.conv_levels]),
                                cfg.blocks_per_level)
        adapter = _LightAdapter if cfg.decoder == "light" else _Adapter
        self.adapters = nn.ModuleList(adapter(cfg.vit.embed_dim, c, ups) for c, ups in zip(cfg.adapter_channels, (2, 1, 0, -1)))
        n_stem = len(cfg.stem_channels or ())
        if cfg.decoder == "light":
            blocks: list[nn.Module] = [_LightUpBlock(chans[lvl + 1], chans[lvl], chans[lvl], add=lvl < n_stem,
                                                     blocks=cfg.blocks_per_level)
                                       for lvl in range(self.num_levels - 1)]
        else:
            blocks = [_UpBlock(chans[lvl + 1], chans[lvl], chans[lvl]) for lvl in range(self.num_levels - 1)]
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv3d(chans[0], cfg.num_classes, 1)

    @property
    def total_stride(self) -> int:
        return 2 * self.config.vit.patch_size

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def required_divisor(self, spacing: SpacingLike) -> tuple[int, int, int]:
        return required_divisor(spacing, self.total_stride)

    def level_spacings(self, spacing: SpacingLike) -> list[Spacing]:
        """Spacing of every level 0 … p+1 for an input at ``spacing``."""
        out = [tuple(spacing)]
        for _ in range(self.num_levels - 1):
            out.append(downsampled_spacing(out[-1], 2))
        return out  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, spacing: SpacingLike) -> torch.Tensor:
        s = check_volume(x, spacing)
        if x.shape[1] != self.config.vit.in_channels:
            raise InputError(f"segmentation model expects {self.config.vit.in_channels} channel(s), got input shape {tuple(x.shape)}")
        div = self.required_divisor(s)
        if any(n % k for n, k in zip(x.shape[2:], div)):
            raise InputError(f"input size {tuple(x.shape[2:])} (D, H, W) with spacing {s} mm must be divisible by {div}")
        sp = self.level_spacings(s)
        feats: list[torch.Tensor] = []
        h, cur = x, s
        for level in self.stem:
            for layer in level:
                h, cur = layer(h, cur)
            feats.append(h)
        _, grid, taps = self.vit.forward_features(x, s, return_layers=self.config.feature_layers)
        p = self.num_levels - 2
        for i, (adapter, tap) in enumerate(zip(self.adapters, taps)):
            lvl = p - 2 + i
            t = tap[:, 1:].transpose(1, 2).reshape(tap.shape[0], -1, *grid)
            targets = [sp[lvl + 1][0], sp[lvl][0]] if i == 0 else [sp[lvl][0]]
            f, _ = adapter(t, sp[p], targets)
            if lvl < len(feats):  # a conv-encoder level (conv_levels): add the CNN path
                feats[lvl] = feats[lvl] + f
            else:
                feats.append(f)
        y, cur = feats[-1], sp[-1]
        for lvl in range(self.num_levels - 2, -1, -1):
            y, cur = self.decoder[lvl](y, cur, feats[lvl], sp[lvl])
        return self.head(y)
