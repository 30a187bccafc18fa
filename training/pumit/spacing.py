"""The spacing convention of PUMIT, stated once and used everywhere.

* Tensors are ``(B, C, D, H, W)``. ``D`` is the **slice (depth) axis**: the axis along which the
  image is a stack of slices, usually the most anisotropic one. ``H`` and ``W`` are in-plane.
* Spacing is a triple of millimetres ``(thickness, in-plane H, in-plane W)``, in the same axis
  order as the tensor. The two in-plane spacings may differ slightly; the smaller is used as "the"
  in-plane spacing.
* A 2D image (X-ray, fundus photo, one ultrasound frame) is ``D = 1`` with thickness
  :data:`PLANAR_THICKNESS` (1e8 mm): it is never downsampled along depth and every depth-3 kernel
  collapses to its 2D equivalent.
* Orientation (RAS/LPS) is not part of the model's world: the model sees array axes only. Image I/O
  (:mod:`pumit.imageio`) keeps the full geometry and restores it on output.

Degree of anisotropy (DA): how many times the in-plane axes can be halved before the in-plane
spacing reaches the thickness, ``floor(log2(s_z / min(s_h, s_w)))`` and at least 0. Spatially
adaptive convolutions (:mod:`pumit.models.sac`) decide their depth stride from the DA of *the
current feature map*, so spacing is all the state that has to be carried through a network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

from pumit.errors import InputError

Spacing = tuple[float, float, float]
"""``(thickness, in-plane H, in-plane W)`` in millimetres."""

SpacingLike = Union[Sequence[float], np.ndarray, torch.Tensor]

PLANAR_THICKNESS: float = 1e8
"""Thickness (mm) given to 2D images: 'one slice of (practically) infinite thickness'."""

PLANAR_THRESHOLD: float = 1e4
"""Any thickness at or above this (mm) marks an image as 2D; such an image must have ``D = 1``."""

MAX_BUCKET_DA: int = 5
"""DA values are clipped to ``[0, MAX_BUCKET_DA]`` for batch bucketing (as in the paper)."""

_EPS = 1e-6


def as_spacing(spacing: SpacingLike, *, name: str = "spacing") -> Spacing:
    """Validate and convert to a :data:`Spacing` tuple.

    Raises :class:`~pumit.errors.InputError` (a ``ValueError``) for a wrong length, zero, negative,
    NaN or infinite values, naming the offending value.
    """
    if isinstance(spacing, torch.Tensor):
        values = spacing.detach().cpu().double().flatten().tolist()
    else:
        try:
            values = [float(v) for v in np.asarray(spacing, dtype=np.float64).flatten()]
        except (TypeError, ValueError) as e:
            raise InputError(f"{name} must be 3 numbers (thickness, in-plane H, in-plane W) in mm, got {spacing!r}") from e
    if len(values) != 3:
        raise InputError(f"{name} must have 3 values (thickness, in-plane H, in-plane W) in mm, got {len(values)}: {values}")
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise InputError(f"{name} must be positive and finite (mm), got {tuple(values)}")
    return (values[0], values[1], values[2])


def planar_spacing(in_plane_h: float = 1.0, in_plane_w: float | None = None) -> Spacing:
    """Spacing of a 2D image with the given in-plane pixel size (mm)."""
    return (PLANAR_THICKNESS, float(in_plane_h), float(in_plane_h if in_plane_w is None else in_plane_w))


def is_planar(spacing: SpacingLike) -> bool:
    """True when the spacing marks a 2D image (thickness >= :data:`PLANAR_THRESHOLD`)."""
    return as_spacing(spacing)[0] >= PLANAR_THRESHOLD


def pending_halvings(spacing: SpacingLike) -> int:
    """Unclipped DA: in-plane halvings still needed before in-plane spacing reaches the thickness."""
    s_z, s_h, s_w = as_spacing(spacing)
    ratio = s_z / min(s_h, s_w)
    if ratio <= 1.0:
        return 0
    return max(int(math.floor(math.log2(ratio) + _EPS)), 0)


def degree_of_anisotropy(spacing: SpacingLike) -> int:
    """DA clipped to ``[0, MAX_BUCKET_DA]``; 2D images get ``MAX_BUCKET_DA``. Used to bucket batches."""
    return min(pending_halvings(spacing), MAX_BUCKET_DA)


def down_depth_stride(spacing: SpacingLike, stride: int) -> int:
    """Depth stride of a spatially adaptive downsampling with in-plane stride ``stride`` (a power of 2).

    ``max(stride >> DA, 1)``: depth is only downsampled once the in-plane spacing has caught up.
    """
    _check_pow2(stride, "stride")
    return max(stride >> min(pending_halvings(spacing), 30), 1)


def up_depth_stride(spacing: SpacingLike, stride: int, finest_thickness: float) -> int:
    """Depth stride of a spatially adaptive upsampling (transposed conv) with in-plane stride ``stride``.

    The largest power of two ``t <= stride`` such that the output thickness ``s_z / t`` is not finer than
    ``finest_thickness`` (the thickness of the level being reconstructed, usually the network input).
    This exactly inverts the depth strides chosen by :func:`down_depth_stride` on the way down.
    """
    _check_pow2(stride, "stride")
    s_z = as_spacing(spacing)[0]
    t = stride
    while t > 1 and s_z / t < finest_thickness * (1 - 1e-4):
        t //= 2
    return t


def downsampled_spacing(spacing: SpacingLike, stride: int) -> Spacing:
    """Spacing after a spatially adaptive downsampling by ``stride`` in-plane."""
    s = as_spacing(spacing)
    t = down_depth_stride(s, stride)
    return (s[0] * t, s[1] * stride, s[2] * stride)


def check_volume(x: torch.Tensor, spacing: SpacingLike, *, name: str = "input") -> Spacing:
    """Validate a ``(B, C, D, H, W)`` tensor against its spacing; return the validated spacing.

    Raises :class:`~pumit.errors.InputError` naming the shape/spacing for a wrong rank, an empty axis,
    non-finite spacing, or a 2D spacing (thickness >= :data:`PLANAR_THRESHOLD`) with ``D > 1``.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape (B, C, D, H, W), got {type(x).__name__}")
    if x.ndim != 5:
        raise InputError(
            f"{name} must have shape (B, C, D, H, W) (depth = slice axis), got rank {x.ndim} shape {tuple(x.shape)}"
        )
    if min(x.shape) == 0:
        raise InputError(f"{name} has an empty axis: shape {tuple(x.shape)}")
    s = as_spacing(spacing, name=f"{name} spacing")
    if s[0] >= PLANAR_THRESHOLD and x.shape[2] != 1:
        raise InputError(
            f"{name} spacing {s} marks a 2D image (thickness >= {PLANAR_THRESHOLD:g} mm) but depth D = {x.shape[2]}; "
            "a 2D image must have D = 1"
        )
    return s


def required_divisor(spacing: SpacingLike, total_stride: int) -> tuple[int, int, int]:
    """Divisors ``(d, h, w)`` that a volume's shape must satisfy for a network downsampling ``total_stride``
    in-plane in successive halvings (the depth divisor depends on the anisotropy)."""
    s = as_spacing(spacing)
    _check_pow2(total_stride, "total_stride")
    depth = 1
    cur = s
    for _ in range(int(math.log2(total_stride))):
        t = down_depth_stride(cur, 2)
        depth *= t
        cur = (cur[0] * t, cur[1] * 2, cur[2] * 2)
    return (depth, total_stride, total_stride)


def _check_pow2(value: int, name: str) -> None:
    if value < 1 or value & (value - 1):
        raise InputError(f"{name} must be a positive power of 2, got {value}")
