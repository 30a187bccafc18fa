"""Crop size per degree of anisotropy (DA): the rule that lets a batch share one crop size.

A crop of ``tokens_z x tokens_xy x tokens_xy`` tokens of a ViT with in-plane patch size ``patch`` covers
``(depth, tokens_xy * patch, tokens_xy * patch)`` voxels, where the depth extent shrinks with the DA
because the patch embedding downsamples depth ``patch >> DA`` times (spatially adaptive convolution):

    depth = max(tokens_z * (patch >> DA), 1)        (2D images: DA = 5, depth 1)

e.g. ``tokens_z=5, tokens_xy=10, patch=16``: DA 0 → 80 x 160 x 160, DA 2 → 20 x 160 x 160,
DA >= 4 → 5 x 160 x 160 ... 1 x 160 x 160 for DA 5.
"""

from __future__ import annotations

from dataclasses import dataclass

from pumit.errors import InputError
from pumit.spacing import MAX_BUCKET_DA


def crop_size_for_da(da: int, *, tokens_z: int, tokens_xy: int, patch: int = 16) -> tuple[int, int, int]:
    """Crop size ``(D, H, W)`` in voxels for images of degree of anisotropy ``da`` (see module docstring)."""
    if tokens_z < 1 or tokens_xy < 1 or patch < 1:
        raise InputError(f"tokens and patch must be >= 1, got tokens_z={tokens_z} tokens_xy={tokens_xy} patch={patch}")
    if not 0 <= da <= MAX_BUCKET_DA:
        raise InputError(f"DA must be in [0, {MAX_BUCKET_DA}], got {da}")
    return (max(tokens_z * (patch >> da), 1), tokens_xy * patch, tokens_xy * patch)


@dataclass(frozen=True)
class CropRule:
    """:func:`crop_size_for_da` with fixed token counts; call it with a DA. Defaults: the paper's MIM crops
    (5 x 10 x 10 tokens of 16 voxels: 80 x 160 x 160 at DA 0)."""

    tokens_z: int = 5
    tokens_xy: int = 10
    patch: int = 16

    def __call__(self, da: int) -> tuple[int, int, int]:
        return crop_size_for_da(da, tokens_z=self.tokens_z, tokens_xy=self.tokens_xy, patch=self.patch)
