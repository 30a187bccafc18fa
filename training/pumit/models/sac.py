"""Spatially adaptive convolutions (SAC).

A SAC layer owns an *isotropic* 3D kernel and, at run time, shrinks its depth kernel and depth stride
according to the degree of anisotropy (DA) of the feature map it is applied to (see
:mod:`pumit.spacing`). Depth taps are **sum-pooled** so that a constant input gives the same response
as the full kernel would, and a 2D kernel inflated to 3D by ``repeat / depth`` is recovered exactly on
a single slice.

Every layer takes ``(x, spacing)`` with ``x`` of shape ``(B, C, D, H, W)`` and spacing
``(thickness, in-plane H, in-plane W)`` in mm of *this feature map*, and returns ``(y, spacing_y)``.

Variants:

* :class:`SACDownsample` — kernel ``k`` (``k == stride`` or ``k == 3``), power-of-2 ``stride``; depth
  stride ``max(stride >> DA, 1)``.
* :class:`SACConv` — ``3³`` conv, stride 1; depth kernel reduced to 1 while the map is anisotropic.
* :class:`SACUpsample` — transposed conv with kernel = stride; depth stride chosen so the output is not
  thinner than ``target_thickness`` (the thickness of the level being reconstructed).
* :class:`SACMaxPool` — max pooling ``2`` in-plane with the same depth rule as downsampling.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from pumit.errors import InputError
from pumit.spacing import Spacing, SpacingLike, as_spacing, down_depth_stride, pending_halvings, up_depth_stride


def _sum_pool_depth(weight: torch.Tensor, depth: int) -> torch.Tensor:
    """Sum-pool the depth taps (dim 2) of a conv weight into ``depth`` groups of adjacent taps."""
    k = weight.shape[2]
    if depth == k:
        return weight
    if k % depth:
        raise ValueError(f"cannot sum-pool a depth kernel of {k} into {depth} taps")
    return weight.unflatten(2, (depth, k // depth)).sum(3)


#: Non-overlapping (kernel = stride) downsamplings at least this large run as patchify + matmul: the same
#: result as ``conv3d``, about 1.6× faster forward + backward on CPU for a 16³ patch embedding.
_PATCHIFY_MIN_STRIDE = 8


def _patchify_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, patch: tuple[int, int, int]) -> torch.Tensor:
    """``conv3d(x, weight, bias, stride=patch)`` for ``weight (O, C, *patch)`` as non-overlapping patches × matmul."""
    b, c, d, h, w = x.shape
    pd, ph, pw = patch
    patches = x.reshape(b, c, d // pd, pd, h // ph, ph, w // pw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    y = F.linear(patches.reshape(b, d // pd, h // ph, w // pw, -1), weight.reshape(weight.shape[0], -1), bias)
    return y.permute(0, 4, 1, 2, 3)


def _check_rank(x: torch.Tensor, what: str) -> None:
    """SAC layers need a 5D ``(B, C, D, H, W)`` tensor: a 4D one would silently be read as unbatched."""
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{what} needs a 5D tensor (B, C, D, H, W), got shape {shape}; add the batch/depth axis")


def _check_divisible(x: torch.Tensor, stride: tuple[int, int, int], spacing: Spacing, what: str) -> None:
    for n, s, axis in zip(x.shape[2:], stride, "DHW"):
        if n % s:
            raise InputError(
                f"{what}: size {tuple(x.shape[2:])} (D, H, W) with spacing {spacing} mm needs {axis} divisible by {s}; "
                "pad or crop the input to a multiple of the model's required divisor"
            )


class SACDownsample(nn.Conv3d):
    """Downsampling SAC. Weight ``(out, in, k, k, k)``; in-plane stride ``stride``; depth per DA."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel_size: int | None = None, bias: bool = True):
        kernel_size = stride if kernel_size is None else kernel_size
        if kernel_size not in (stride, 3):
            raise ValueError(f"SACDownsample supports kernel == stride or kernel 3, got kernel {kernel_size}, stride {stride}")
        padding = 0 if kernel_size == stride else 1
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.sac_stride = stride

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, spacing: SpacingLike, *, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Spacing]:
        """``weight``/``bias`` replace the layer's own (e.g. filters folded for another input convention)."""
        _check_rank(x, "SAC downsampling")
        s = as_spacing(spacing)
        stride, k = self.sac_stride, self.kernel_size[0]
        t = down_depth_stride(s, stride)
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        pad_d = self.padding[0]
        if t != stride:
            weight = _sum_pool_depth(weight, 1 if t == 1 else t)
            pad_d = 0
        out_spacing = (s[0] * t, s[1] * stride, s[2] * stride)
        if k == stride:
            _check_divisible(x, (t, stride, stride), s, "SAC downsampling")
            if stride >= _PATCHIFY_MIN_STRIDE:
                return _patchify_linear(x, weight, bias, (t, stride, stride)), out_spacing
        y = F.conv3d(x, weight, bias, stride=(t, stride, stride), padding=(pad_d, self.padding[1], self.padding[2]))
        return y, out_spacing


class SACConv(nn.Conv3d):
    """``3³`` stride-1 SAC: the depth kernel is sum-pooled to 1 while the feature map is anisotropic."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True):
        if kernel_size % 2 != 1:
            raise ValueError(f"SACConv needs an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor, spacing: SpacingLike) -> tuple[torch.Tensor, Spacing]:  # type: ignore[override]
        _check_rank(x, "SAC convolution")
        s = as_spacing(spacing)
        if self.kernel_size[0] == 1 or pending_halvings(s) == 0:
            return F.conv3d(x, self.weight, self.bias, padding=self.padding), s
        weight = _sum_pool_depth(self.weight, 1)
        return F.conv3d(x, weight, self.bias, padding=(0, self.padding[1], self.padding[2])), s


class SACUpsample(nn.ConvTranspose3d):
    """Upsampling SAC (transposed conv, kernel = stride). Weight ``(in, out, S, S, S)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bias: bool = True):
        super().__init__(in_channels, out_channels, stride, stride=stride, bias=bias)
        self.sac_stride = stride

    def forward(self, x: torch.Tensor, spacing: SpacingLike, target_thickness: float) -> tuple[torch.Tensor, Spacing]:  # type: ignore[override]
        _check_rank(x, "SAC upsampling")
        s = as_spacing(spacing)
        stride = self.sac_stride
        t = up_depth_stride(s, stride, target_thickness)
        weight = self.weight if t == stride else _sum_pool_depth(self.weight, t)
        y = F.conv_transpose3d(x, weight, self.bias, stride=(t, stride, stride))
        return y, (s[0] / t, s[1] / stride, s[2] / stride)


class SACMaxPool(nn.Module):
    """Max pooling by ``stride`` in-plane; depth pooled only as the DA allows (same rule as :class:`SACDownsample`)."""

    def __init__(self, stride: int = 2):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor, spacing: SpacingLike) -> tuple[torch.Tensor, Spacing]:
        _check_rank(x, "SAC max-pooling")
        s = as_spacing(spacing)
        t = down_depth_stride(s, self.stride)
        _check_divisible(x, (t, self.stride, self.stride), s, "SAC max-pooling")
        y = F.max_pool3d(x, kernel_size=(t, self.stride, self.stride))
        return y, (s[0] * t, s[1] * self.stride, s[2] * self.stride)


SPATIAL_LAYERS = (SACDownsample, SACConv, SACMaxPool)


class SACSequential(nn.ModuleList):
    """A sequence of layers where SAC layers receive and update the spacing and others only see ``x``.

    Keeps ``nn.Sequential``-style state-dict keys (``0.weight``, ``3.bias``, ...).
    """

    def __init__(self, modules: Iterable[nn.Module] = ()):
        super().__init__(modules)

    def forward(self, x: torch.Tensor, spacing: SpacingLike, target_thickness: float | None = None) -> tuple[torch.Tensor, Spacing]:  # type: ignore[override]
        s = as_spacing(spacing)
        for layer in self:
            if isinstance(layer, SPATIAL_LAYERS) or hasattr(layer, "forward_spacing"):
                x, s = layer(x, s)
            elif isinstance(layer, SACUpsample) or hasattr(layer, "forward_upsampling"):
                if target_thickness is None:
                    raise ValueError("SACSequential with SACUpsample layers needs target_thickness")
                x, s = layer(x, s, target_thickness)
            else:
                x = layer(x)
        return x, s


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a ``(B, C, D, H, W)`` tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class _ChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.movedim(1, -1)


class _ChannelsFirst(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.movedim(-1, 1)


class ChannelLayerNormSeq(nn.Sequential):
    """The same LayerNorm over channels as :class:`ChannelLayerNorm` written as ``(to channels-last,
    LayerNorm, back)``, so its parameters are ``1.weight``/``1.bias`` as in the published tokenizer."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(_ChannelsLast(), nn.LayerNorm(channels, eps=eps), _ChannelsFirst())


class SACUpBlock(nn.Module):
    """Published decoder stage: ``transposed_conv`` (:class:`SACUpsample`) then ``conv`` = (SAC 3³ conv,
    GroupNorm(8), LeakyReLU); the same computation as ``SACUpsample`` + :class:`SACConvBlock`."""

    forward_upsampling = True

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, groups: int = 8):
        super().__init__()
        self.transposed_conv = SACUpsample(in_channels, out_channels, stride)
        self.conv = SACSequential([SACConv(out_channels, out_channels), nn.GroupNorm(min(groups, out_channels), out_channels),
                                   nn.LeakyReLU(inplace=True)])

    def forward(self, x: torch.Tensor, spacing: SpacingLike, target_thickness: float) -> tuple[torch.Tensor, Spacing]:
        y, s = self.transposed_conv(x, spacing, target_thickness)
        return self.conv(y, s)


class SACConvBlock(nn.Module):
    """``SACConv 3³ → norm → LeakyReLU``; ``forward_spacing`` marks it as spacing-aware.

    ``norm="group"``: GroupNorm(``groups``), statistics over the group's channels *and the whole window*;
    ``norm="channel"``: LayerNorm over the channels of each voxel (:class:`ChannelLayerNorm`), independent of the
    window's extent and content elsewhere. Both keep the parameter names ``norm.weight`` / ``norm.bias``.
    """

    forward_spacing = True

    def __init__(self, in_channels: int, out_channels: int, groups: int = 8, norm: str = "group"):
        super().__init__()
        self.conv = SACConv(in_channels, out_channels)
        self.norm = ChannelLayerNorm(out_channels) if norm == "channel" else nn.GroupNorm(min(groups, out_channels), out_channels)
        self.act = nn.LeakyReLU(inplace=True)

    def forward(self, x: torch.Tensor, spacing: SpacingLike) -> tuple[torch.Tensor, Spacing]:
        y, s = self.conv(x, spacing)
        return self.act(self.norm(y)), s
