"""Honest reconstruction metrics: what a reconstruction keeps of an image, measured against a flat image;
and label overlap (:func:`dice_scores`) for segmentations.

A PSNR alone says little: with the input's value range as the peak, a constant image at the input's mean
already scores 19–25 dB on typical scans. :func:`reconstruction_metrics` therefore reports, on the *same
voxels* and in the *input's units* (CT in HU over the whole image, not only inside the model's window):

* ``pearson``: Pearson correlation of input and reconstruction (0 for a constant image);
* ``ssim``: mean structural similarity (MONAI's Gaussian SSIM, window ≤ 11 voxels, data range = the
  input's range; 2D per slice for single slices);
* ``std_ratio``: std(reconstruction) / std(input) (≈ 1 when contrast is kept, 0 for a flat image);
* ``psnr_db``: ``10 log10(range² / MSE)`` with ``range = max − min`` of the input;
* ``psnr_constant_db``: the same PSNR of a constant image at the input's mean (``MSE = var(input)``);
* ``psnr_gain_db``: ``psnr_db − psnr_constant_db`` = ``10 log10(var(input) / MSE)`` (0 dB: no better
  than flat).

Arrays are ``(D, H, W)``, ``(C, D, H, W)`` or 2D; both must have the same shape.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

#: Keys of :func:`reconstruction_metrics` (the ``metrics`` object of ``pumit reconstruct``'s sidecar).
METRIC_KEYS: tuple[str, ...] = ("pearson", "ssim", "std_ratio", "psnr_db", "psnr_constant_db", "psnr_gain_db")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two same-shape arrays (0.0 when either is constant)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    x = x - x.mean()
    y = y - y.mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


def batch_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the per-sample Pearson correlation of ``(B, ...)`` tensors (0 for flat samples)."""
    x = a.flatten(1).double()
    y = b.flatten(1).double()
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    den = (x.pow(2).sum(1) * y.pow(2).sum(1)).sqrt()
    r = torch.where(den > 0, (x * y).sum(1) / den.clamp_min(1e-30), torch.zeros_like(den))
    return r.mean().float()


def ssim(reference: np.ndarray, recon: np.ndarray, data_range: float | None = None) -> float:
    """Mean SSIM of ``recon`` against ``reference`` (see the module docstring); 1.0 for identical arrays.

    3D when every spatial axis has ≥ 3 voxels (window = the smallest odd size ≤ 11 that fits), else 2D
    over the two largest axes (per slice of the other one).
    """
    from monai.metrics.regression import compute_ssim_and_cs

    ref = np.asarray(reference, dtype=np.float32)
    rec = np.asarray(recon, dtype=np.float32)
    if ref.shape != rec.shape:
        raise ValueError(f"shape mismatch {ref.shape} vs {rec.shape}")
    rng = float(data_range) if data_range is not None else float(ref.max() - ref.min())
    if rng <= 0:
        return 1.0 if np.array_equal(ref, rec) else 0.0
    vol = ref.reshape((-1,) + ref.shape[-3:]) if ref.ndim >= 3 else ref[None, None]
    rvol = rec.reshape(vol.shape)
    spatial = vol.shape[1:]  # (n, D, H, W) or (1, 1, H, W)
    if min(spatial) >= 3:
        dims, x, y = 3, vol[:, None], rvol[:, None]
    else:  # single slices: 2D over (H, W), the thin axis becomes the batch
        dims = 2
        x = vol.reshape((-1,) + spatial[-2:])[:, None]
        y = rvol.reshape(x.shape)
    win = min(11, *x.shape[2:])
    win = win if win % 2 else win - 1
    if win < 3:
        return float(np.corrcoef(x.ravel(), y.ravel())[0, 1]) if x.size > 1 else 1.0
    value, _ = compute_ssim_and_cs(torch.from_numpy(np.ascontiguousarray(y)), torch.from_numpy(np.ascontiguousarray(x)),
                                   spatial_dims=dims, kernel_size=[win] * dims, kernel_sigma=[1.5 * win / 11] * dims,
                                   data_range=rng)
    return float(value.mean())


def reconstruction_metrics(reference: np.ndarray, recon: np.ndarray) -> dict[str, float]:
    """All of :data:`METRIC_KEYS` for ``recon`` against ``reference`` (same shape, same units).

    ``psnr_db`` is ``inf`` for a perfect reconstruction; a constant reference (zero variance) gives
    ``pearson`` 0, ``std_ratio`` 1 if both are flat and the PSNR keys ``inf`` where MSE is 0.
    """
    ref = np.asarray(reference, dtype=np.float64)
    rec = np.asarray(recon, dtype=np.float64)
    if ref.shape != rec.shape:
        raise ValueError(f"shape mismatch {ref.shape} vs {rec.shape}")
    rng = float(ref.max() - ref.min()) if ref.size else 0.0
    mse = float(np.mean((ref - rec) ** 2))
    var = float(ref.var())
    sd_ref, sd_rec = math.sqrt(var), float(rec.std())
    peak = rng if rng > 0 else 1.0

    def _psnr(m: float) -> float:
        return math.inf if m <= 0 else 10.0 * math.log10(peak * peak / m)

    p, pc = _psnr(mse), _psnr(var)
    gain = (math.inf if mse <= 0 else (0.0 if var <= 0 else 10.0 * math.log10(var / mse)))
    return {
        "pearson": pearson(ref, rec),
        "ssim": ssim(ref.astype(np.float32), rec.astype(np.float32), rng if rng > 0 else None),
        "std_ratio": (sd_rec / sd_ref) if sd_ref > 0 else (1.0 if sd_rec == 0 else math.inf),
        "psnr_db": p,
        "psnr_constant_db": pc,
        "psnr_gain_db": gain,
    }


def dice_scores(pred: Any, ref: Any, labels: dict[int, str]) -> dict[str, float]:
    """Dice per foreground label of ``labels`` (value → name; 0 is skipped) and their ``mean`` between two integer
    label arrays of the same shape (any dimensionality). A label absent from both is NaN and left out of the mean."""
    out: dict[str, float] = {}
    for v, name in labels.items():
        if v == 0:
            continue
        a, b = pred == v, ref == v
        denom = int(a.sum()) + int(b.sum())
        out[name] = float(2.0 * np.logical_and(a, b).sum() / denom) if denom else float("nan")
    vals = [x for x in out.values() if not math.isnan(x)]
    out["mean"] = float(sum(vals) / len(vals)) if vals else float("nan")
    return out


def rounded(metrics: dict[str, float], digits: int = 4) -> dict[str, Any]:
    """JSON-safe copy: rounded floats, ``None`` for infinities/NaN."""
    return {k: (None if not math.isfinite(v) else round(float(v), digits)) for k, v in metrics.items()}


def describe(metrics: dict[str, float]) -> str:
    """One line for logs and status bars, e.g. ``Pearson 0.93 · SSIM 0.81 · std ratio 0.97 · PSNR 31.2 dB
    (flat image 21.0 dB, +10.2 dB)``."""
    m = metrics

    def f(v: float, fmt: str) -> str:
        return "∞" if not math.isfinite(v) else format(v, fmt)

    return (f"Pearson {f(m['pearson'], '.3f')} · SSIM {f(m['ssim'], '.3f')} · std ratio {f(m['std_ratio'], '.2f')} · "
            f"PSNR {f(m['psnr_db'], '.1f')} dB (flat image {f(m['psnr_constant_db'], '.1f')} dB, "
            f"{'+' if m['psnr_gain_db'] >= 0 else ''}{f(m['psnr_gain_db'], '.1f')} dB)")
