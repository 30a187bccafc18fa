"""Per-modality intensity normalization to the model range ``[-1, 1]`` and its exact inverse.

A normalization is described by a JSON-serializable :class:`IntensitySpec` stored with every model
(``config.json`` → ``meta.normalization``) so that inference normalizes exactly as training did:

* ``ct``: clip Hounsfield units to ``window`` (default soft tissue ``[-175, 250]``) and scale to ``[-1, 1]``.
* ``zscore`` (MRI): subtract the mean and divide by the standard deviation of the foreground
  (voxels above the image minimum), then clip to ``[-clip, clip]`` and divide by ``clip`` (default 5).
* ``percentile`` (anything else, as in the paper's pre-processing): clip to the ``[p_low, p_high]``
  percentiles (0.5, 99.5) and scale to ``[-1, 1]``.
* ``photo`` (8-bit photos, RGB or grey): ``x / 255 * 2 - 1``.

:func:`normalize` returns the array and the per-image statistics that :func:`denormalize` needs to go
back to the input's units (used by ``pumit reconstruct``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from pumit.errors import InputError

Scheme = Literal["ct", "zscore", "percentile", "photo"]
SCHEMES: tuple[str, ...] = ("ct", "zscore", "percentile", "photo")

#: Default scheme per modality name (case-insensitive); unknown modalities use ``percentile``.
MODALITY_SCHEME: dict[str, str] = {
    "ct": "ct",
    "mri": "zscore",
    "mr": "zscore",
    "pet": "percentile",
    "xray": "percentile",
    "x-ray": "percentile",
    "cr": "percentile",
    "dx": "percentile",
    "us": "percentile",
    "ultrasound": "percentile",
    "fundus": "photo",
    "photo": "photo",
    "rgb": "photo",
}


@dataclass(frozen=True)
class IntensitySpec:
    """How to map raw intensities to ``[-1, 1]``; see the module docstring for each scheme."""

    scheme: str = "percentile"
    window: tuple[float, float] = (-175.0, 250.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    clip: float = 5.0

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise InputError(f"unknown intensity scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}")
        if not self.window[0] < self.window[1]:
            raise InputError(f"CT window must be (low, high) with low < high, got {self.window}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IntensitySpec:
        d = dict(d or {})
        for k in ("window", "percentiles"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)

    @classmethod
    def for_modality(cls, modality: str | None) -> IntensitySpec:
        return cls(scheme=MODALITY_SCHEME.get((modality or "").lower(), "percentile"))


@dataclass
class IntensityStats:
    """Per-image values that make :func:`denormalize` the inverse of :func:`normalize`."""

    offset: float = 0.0
    scale: float = 1.0
    extra: dict[str, float] = field(default_factory=dict)


def normalize(array: np.ndarray, spec: IntensitySpec) -> tuple[np.ndarray, IntensityStats]:
    """Map ``array`` (any shape, raw units) to float32 in ``[-1, 1]``; returns the stats to invert it.

    Raises :class:`~pumit.errors.InputError` for NaN/Inf voxels.
    """
    a = np.asarray(array, dtype=np.float32)
    if not np.isfinite(a).all():
        raise InputError("image contains NaN or infinite voxel values")
    if spec.scheme == "ct":
        lo, hi = spec.window
    elif spec.scheme == "photo":
        lo, hi = 0.0, 255.0
    elif spec.scheme == "percentile":
        lo, hi = (float(v) for v in np.percentile(a, spec.percentiles))
    else:  # zscore
        fg = a[a > a.min()] if a.max() > a.min() else a
        mean, std = float(fg.mean()), float(fg.std())
        std = std if std > 1e-6 else 1.0
        lo, hi = mean - spec.clip * std, mean + spec.clip * std
    if hi - lo < 1e-6:
        hi = lo + 1.0
    stats = IntensityStats(offset=(lo + hi) / 2, scale=(hi - lo) / 2)
    out = np.clip((a - stats.offset) / stats.scale, -1.0, 1.0).astype(np.float32)
    return out, stats


def denormalize(array: np.ndarray, stats: IntensityStats) -> np.ndarray:
    """Inverse of :func:`normalize` (up to the clipping): back to the input's intensity units."""
    return (np.asarray(array, dtype=np.float32) * stats.scale + stats.offset).astype(np.float32)
