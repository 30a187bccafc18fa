"""Additive 3D rotary position embedding (RoPE).

For a head dimension ``d`` (multiple of 4) the ``d/2`` interleaved pairs ``(x_{2i}, x_{2i+1})`` are split in
two halves of ``n = d/4`` pairs. With in-plane frequencies ``ω_k = base^(−2k/(d/2))`` and depth
frequencies ``ω^z_k = z_base^(−(2k+1)/(d/2))``, a token at integer grid position ``(z, y, x)`` rotates

* pair ``k``      (first half) by ``θ = z·ω^z_k + y·ω_k``
* pair ``n + k``  (second half) by ``θ = z·ω^z_k + x·ω_k``

With ``z = 0`` this is exactly EVA-02's 2D RoPE (first half by row, second by column), so 2D weights
transfer. Angles are linear in position, so ``⟨R(m) q, R(n) k⟩`` depends only on ``n − m`` (relativity).
The two bases (10000 and 2333) make depth and in-plane frequencies incommensurate, so distinct positions
get distinct rotations.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class AdditiveRoPE3D(nn.Module):
    """Computes ``(cos, sin)`` tables for a token grid and applies the rotation to q/k."""

    def __init__(self, head_dim: int, base: float = 10000.0, z_base: float = 2333.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"3D RoPE needs head_dim divisible by 4, got {head_dim}")
        n = head_dim // 4
        half = head_dim // 2
        k = torch.arange(n, dtype=torch.float64)
        self.register_buffer("omega", base ** (-2 * k / half), persistent=False)
        self.register_buffer("omega_z", z_base ** (-(2 * k + 1) / half), persistent=False)
        self.head_dim = head_dim

    def angles(self, positions: torch.Tensor) -> torch.Tensor:
        """Rotation angles ``(N, d/2)`` for positions ``(N, 3)`` given as ``(z, y, x)`` (float64 internally)."""
        p = positions.to(torch.float64)
        z = p[:, :1] * self.omega_z
        first = z + p[:, 1:2] * self.omega
        second = z + p[:, 2:3] * self.omega
        return torch.cat([first, second], dim=1)

    def grid_angles(self, grid: tuple[int, int, int], device: torch.device | None = None) -> torch.Tensor:
        """Angles ``(d·h·w, d/2)`` for all positions of a ``(d, h, w)`` token grid in row-major order."""
        d, h, w = grid
        axes = [torch.arange(n, device=device or self.omega.device) for n in (d, h, w)]
        pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
        return self.angles(pos)

    def tables(self, grid: tuple[int, int, int], dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` of shape ``(N, d)`` with each angle repeated for its interleaved pair."""
        theta = self.grid_angles(grid, device).repeat_interleave(2, dim=-1)
        return theta.cos().to(dtype), theta.sin().to(dtype)


def rotate_half_interleaved(x: torch.Tensor) -> torch.Tensor:
    """``(x0, x1, x2, x3, ...) → (−x1, x0, −x3, x2, ...)``."""
    x = x.unflatten(-1, (-1, 2))
    return torch.stack([-x[..., 1], x[..., 0]], dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (..., N, d)`` by tables ``(N, d)``."""
    return x * cos + rotate_half_interleaved(x) * sin


class PrefixedRope(NamedTuple):
    """RoPE tables for a whole sequence ``[prefix tokens] + patch tokens``, shape ``(P + N, d)``.

    ``cos`` is 1 and ``sin`` is 0 on the ``P`` prefix tokens (no rotation), and ``sin`` carries the sign
    of the rotation (``−sin`` on even, ``+sin`` on odd lanes), so :func:`apply_prefixed_rope` is one pair
    swap, two products and a sum over the whole sequence. Bit for bit the result of rotating the patch
    tokens with :func:`apply_rope` and concatenating the untouched prefix, without the slicing and
    concatenation (fewer kernels and copies, forward and backward).
    """

    cos: torch.Tensor
    sin: torch.Tensor


def prefixed_tables(cos: torch.Tensor, sin: torch.Tensor, num_prefix: int = 1) -> PrefixedRope:
    """:class:`PrefixedRope` from the ``(N, d)`` tables of :meth:`AdditiveRoPE3D.tables`."""
    d = cos.shape[-1]
    sign = torch.tensor([-1.0, 1.0], dtype=sin.dtype, device=sin.device).repeat(d // 2)
    return PrefixedRope(torch.cat([cos.new_ones(num_prefix, d), cos]), torch.cat([sin.new_zeros(num_prefix, d), sin * sign]))


def apply_prefixed_rope(x: torch.Tensor, rope: PrefixedRope) -> torch.Tensor:
    """Rotate ``x (..., P + N, d)`` by :class:`PrefixedRope` tables (the prefix is left as it is)."""
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x1, x0, x3, x2, ...)
    return x * rope.cos + swapped * rope.sin
