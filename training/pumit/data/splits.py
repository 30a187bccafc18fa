"""Deterministic train/validation split for sources without an official one (MSD, plain folders)."""

from __future__ import annotations

import hashlib

from pumit.errors import InputError

#: Default fraction of items put in ``val`` when a source has no official validation split.
DEFAULT_VAL_FRACTION: float = 0.2


def hash_split(key: str, *, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> str:
    """``"val"`` or ``"train"`` for an item, from a seeded hash of its stable ``key``.

    ``key`` should not depend on where the data lives (e.g. ``"Hippocampus/imagesTr/hippocampus_001.nii.gz"``),
    so every machine gets the same split. An item is ``val`` when the first 8 bytes of
    ``sha256(f"{seed}:{key}")``, read as a fraction of 2**64, are below ``val_fraction``: each item
    independently, so the val share is ``val_fraction`` on average, and adding items never moves others.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise InputError(f"val fraction must be in [0, 1], got {val_fraction}")
    h = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")
    return "val" if h / 2.0**64 < val_fraction else "train"
