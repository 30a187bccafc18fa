"""Sliding-window inference on ``(B, C, D, H, W)`` volumes (MONAI's window grid and blending, without MONAI).

* The window (ROI) is a multiple of the model's :meth:`required_divisor` at the image's spacing, and
  no larger than needed: on an axis where the volume is smaller than the ROI the ROI shrinks to the
  smallest multiple of the divisor covering the volume, and MONAI pads the volume symmetrically to
  it (with ``cval``, the normalized background) and crops the prediction back.
* Windows are blended with a Gaussian importance map (``sigma_scale`` × ROI, as nnU-Net) or uniformly.
* Windows run on ``sw_device`` (the GPU) while the full-volume accumulation lives on ``device``
  (the GPU when it fits, else the CPU).
* Progress: the predictor is wrapped so that every finished batch of windows reports
  ``done/total`` (``total`` from the window grid, :func:`count_windows`).
* The grid, padding and blending are those of MONAI's ``sliding_window_inference`` (window starts every
  ``int(roi·(1−overlap))`` voxels, the last one flush with the end; symmetric constant padding of axes
  smaller than the window; a Gaussian importance map with σ = ``sigma_scale``·ROI, peak 1, floor
  ``max(min, 1e-3)``), implemented here so that ``pumit segment`` does not import MONAI (1-2 s of
  start-up on 2 cores, more under load); ``tests/inference/test_sliding_window.py`` checks it against MONAI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pumit.errors import InputError
from pumit.inference.constants import BLEND_MODES
from pumit.spacing import Spacing

#: In-plane ROI (voxels) used when neither the user nor the model metadata gives one.
DEFAULT_ROI_INPLANE = 128


def _ceil_to(n: int, k: int) -> int:
    return int(math.ceil(n / k) * k)


def parse_roi(values: Sequence[int] | int | None) -> tuple[int, int, int] | None:
    """``None``, one size (a cube) or ``(D, H, W)``; raises :class:`InputError` for other shapes."""
    if values is None:
        return None
    vals = [values] if isinstance(values, int) else [int(v) for v in values]
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or min(vals) < 1:
        raise InputError(f"--roi needs 1 or 3 positive sizes (D H W voxels, D along the slice axis), got {list(vals)}")
    return (vals[0], vals[1], vals[2])


def default_roi(spacing: Spacing, planar: bool) -> tuple[int, int, int]:
    """A roughly cubic physical window: ``DEFAULT_ROI_INPLANE`` in-plane voxels and the depth covering
    about the same millimetres (1 slice for 2D images)."""
    if planar:
        return (1, DEFAULT_ROI_INPLANE, DEFAULT_ROI_INPLANE)
    depth = max(1, round(DEFAULT_ROI_INPLANE * min(spacing[1], spacing[2]) / spacing[0]))
    return (depth, DEFAULT_ROI_INPLANE, DEFAULT_ROI_INPLANE)


@dataclass(frozen=True)
class RoiPlan:
    """The window actually used and why it differs from the request.

    ``roi`` (model order ``(D, H, W)``) is a multiple of ``divisor``; ``padded`` says which axes of
    the volume are smaller than the window (MONAI pads them symmetrically).
    """

    roi: tuple[int, int, int]
    divisor: tuple[int, int, int]
    requested: tuple[int, int, int]
    padded: tuple[bool, bool, bool]
    notes: tuple[str, ...] = ()


def fit_roi(requested: tuple[int, int, int], shape: tuple[int, int, int], divisor: tuple[int, int, int]) -> RoiPlan:
    """Round ``requested`` up to multiples of ``divisor`` and shrink it to the volume ``shape``
    (rounded up to the divisor) where the volume is smaller."""
    notes: list[str] = []
    rounded = tuple(_ceil_to(max(r, 1), k) for r, k in zip(requested, divisor))
    if rounded != tuple(requested):
        notes.append(f"note: window {requested} rounded up to {rounded}, a multiple of the model's divisor {divisor} "
                     "at this spacing")
    roi = tuple(min(r, _ceil_to(n, k)) for r, n, k in zip(rounded, shape, divisor))
    padded = tuple(n < r for n, r in zip(shape, roi))
    if any(padded):
        notes.append(f"note: volume {shape} is smaller than the window {roi} on axis "
                     f"{', '.join('DHW'[i] for i, p in enumerate(padded) if p)}; padding it (the prediction is cropped back)")
    return RoiPlan(roi=roi, divisor=divisor, requested=requested, padded=padded, notes=tuple(notes))  # type: ignore[arg-type]


def smaller_roi(roi: tuple[int, int, int], divisor: tuple[int, int, int]) -> tuple[int, int, int]:
    """The window for the out-of-memory fallback: in-plane halved (at least one divisor), depth kept."""
    return (roi[0],) + tuple(max(k, (r // 2) // k * k) for r, k in zip(roi[1:], divisor[1:]))  # type: ignore[return-value]


def scan_interval(image_size: Sequence[int], roi: Sequence[int], overlap: Sequence[float]) -> tuple[int, ...]:
    """MONAI's window step: ``int(roi·(1-overlap))`` (at least 1), or the ROI where it equals the image."""
    out = []
    for n, r, o in zip(image_size, roi, overlap):
        out.append(int(r) if r == n else max(int(r * (1 - o)), 1))
    return tuple(out)


def count_windows(shape: Sequence[int], roi: Sequence[int], overlap: float | Sequence[float]) -> int:
    """Number of windows MONAI's sliding window visits for one image of spatial ``shape``."""
    ov = [overlap] * len(roi) if isinstance(overlap, (int, float)) else list(overlap)
    size = [max(n, r) for n, r in zip(shape, roi)]
    n = 1
    for length, r, step in zip(size, roi, scan_interval(size, roi, ov)):  # MONAI's dense_patch_slices grid
        n *= int(math.ceil((length - r) / float(step))) + 1 if r < length else 1
    return n


def aligned_overlap(roi: Sequence[int], divisor: Sequence[int], overlap: float) -> tuple[float, ...]:
    """Per-axis overlaps whose MONAI step is a multiple of ``divisor`` (so window starts stay on the
    model's token grid when the image size is a multiple of the divisor too)."""
    out = []
    for r, k in zip(roi, divisor):
        step = max(k, math.floor(r * (1 - overlap) / k) * k)
        step = min(step, r)
        out.append(min(max(1.0 - (step + 1e-3) / r, 0.0), 0.999))
    return tuple(out)


def check_overlap(overlap: float) -> float:
    o = float(overlap)
    if not 0.0 <= o < 1.0 or math.isnan(o):
        raise InputError(f"--overlap must be in [0, 1), got {overlap}")
    return o


def window_starts(size: int, roi: int, step: int) -> list[int]:
    """Start of every window along one axis of ``size`` voxels (MONAI's dense grid: the last one flush with the end)."""
    if roi >= size:
        return [0]
    n = int(math.ceil((size - roi) / float(step))) + 1
    return [min(i * step, size - roi) for i in range(n)]


def importance_map(size: Sequence[int], blend: str, sigma_scale: float, device: torch.device) -> torch.Tensor:
    """Blending weights of one window ``size`` (D, H, W): ones (``constant``) or a separable Gaussian centred on
    ``size // 2`` with σ = ``sigma_scale``·size per axis, scaled to a peak of 1, floored at ``max(min, 1e-3)``."""
    if blend == "constant":
        return torch.ones(tuple(int(n) for n in size), device=device)
    out: torch.Tensor | None = None
    for axis, n in enumerate(size):
        n = int(n)
        x = torch.arange(n, dtype=torch.float64) - n // 2
        sigma = max(float(sigma_scale) * n, 1e-6)
        g = torch.exp(-0.5 * (x / sigma) ** 2)
        shape = [1] * len(size)
        shape[axis] = n
        g = g.reshape(shape)
        out = g if out is None else out * g
    assert out is not None
    out = out / out.max()
    out = out.clamp(min=max(float(out.min()), 1e-3))
    return out.to(device=device, dtype=torch.float32)


def run_sliding_window(
    inputs: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]],
    *,
    roi: tuple[int, int, int],
    overlap: float | Sequence[float],
    sw_batch: int,
    blend: str = "gaussian",
    sigma_scale: float = 0.125,
    sw_device: torch.device,
    device: torch.device,
    cval: float = 0.0,
    on_windows: Callable[[int, int], None] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Run ``predictor`` over windows of ``inputs`` ``(B, C, D, H, W)`` and blend the outputs.

    ``predictor`` maps a batch of windows ``(n, C, *roi)`` on ``sw_device`` to ``(n, K, *roi)`` (or a
    tuple of outputs; a downsampled one such as a token grid, ``(n, K', *(roi·z))``, is blended at its own
    resolution: choose ``roi``/``overlap`` so that window starts scale to integers, see
    :func:`aligned_overlap`). ``on_windows(done, total)`` is called after each batch. Returns float32
    tensors on ``device`` (one per output, ``(B, K, *(spatial·z))``).
    """
    if blend not in BLEND_MODES:
        raise InputError(f"--blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}")
    if sw_batch < 1:
        raise InputError(f"--sw-batch must be >= 1, got {sw_batch}")
    if inputs.ndim != 5:
        raise InputError(f"sliding-window inference needs (B, C, D, H, W) inputs, got shape {tuple(inputs.shape)}")
    ov = [float(overlap)] * 3 if isinstance(overlap, (int, float)) else [float(o) for o in overlap]
    total = count_windows(tuple(inputs.shape[2:]), roi, ov) * int(inputs.shape[0])
    if sw_device.type != "cpu" and inputs.device != sw_device:
        # the whole volume on the GPU once: no host-to-device copy per window (a 512×512×200 float32
        # CT is 200 MB); if even that does not fit, windows are copied from the host batch by batch
        try:
            inputs = inputs.to(sw_device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
    spatial = tuple(int(n) for n in inputs.shape[2:])
    pad = [max(r - n, 0) for r, n in zip(roi, spatial)]
    lo = [p // 2 for p in pad]
    if any(pad):
        flat: list[int] = []
        for p, a in zip(reversed(pad), reversed(lo)):  # F.pad order: last axis first
            flat += [a, p - a]
        inputs = torch.nn.functional.pad(inputs, flat, mode="constant", value=float(cval))
    size = tuple(int(n) for n in inputs.shape[2:])
    steps = scan_interval(size, roi, ov)
    grid = [(a, b, c) for a in window_starts(size[0], roi[0], steps[0]) for b in window_starts(size[1], roi[1], steps[1])
            for c in window_starts(size[2], roi[2], steps[2])]
    windows = [(i, start) for i in range(int(inputs.shape[0])) for start in grid]
    outs: list[torch.Tensor] = []
    counts: list[torch.Tensor] = []
    weights: list[torch.Tensor] = []
    scales: list[tuple[float, float, float]] = []
    tuple_out = False
    done = 0
    for first in range(0, len(windows), sw_batch):
        batch = windows[first:first + sw_batch]
        x = torch.cat([inputs[i:i + 1, :, a:a + roi[0], b:b + roi[1], c:c + roi[2]] for i, (a, b, c) in batch]).to(sw_device)
        res = predictor(x)
        tuple_out = isinstance(res, (tuple, list))
        parts = list(res) if tuple_out else [res]  # type: ignore[arg-type]
        if not outs:  # the output buffers, once the output shapes are known
            for part in parts:
                z = tuple(float(o) / float(r) for o, r in zip(part.shape[2:], roi))
                full = tuple(int(round(n * f)) for n, f in zip(size, z))
                outs.append(torch.zeros((int(inputs.shape[0]), int(part.shape[1]), *full), dtype=torch.float32, device=device))
                counts.append(torch.zeros((int(inputs.shape[0]), 1, *full), dtype=torch.float32, device=device))
                weights.append(importance_map(part.shape[2:], blend, sigma_scale, sw_device))
                scales.append(z)  # type: ignore[arg-type]
        for k, part in enumerate(parts):
            w = weights[k]
            weighted = (part.float() * w).to(device)
            wd = w.to(device)
            z = scales[k]
            for j, (i, (a, b, c)) in enumerate(batch):
                sl = tuple(slice(int(st * f), int(st * f) + int(n)) for st, f, n in zip((a, b, c), z, part.shape[2:]))
                outs[k][(i, slice(None), *sl)] += weighted[j]
                counts[k][(i, slice(None), *sl)] += wd
        done += len(batch)
        if on_windows is not None:
            on_windows(min(done, total), total)
        del x, res, parts
    results = []
    for k, (out, cnt) in enumerate(zip(outs, counts)):
        out /= cnt
        z = scales[k]
        crop = tuple(slice(int(round(a * f)), int(round(a * f)) + int(round(n * f))) for a, n, f in zip(lo, spatial, z))
        results.append(out[(slice(None), slice(None), *crop)] if any(pad) else out)
    return tuple(results) if tuple_out else results[0]
