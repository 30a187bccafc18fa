"""Sliding-window inference on ``(B, C, D, H, W)`` volumes with MONAI's :class:`SlidingWindowInferer`.

* The window (ROI) is a multiple of the model's :meth:`required_divisor` at the image's spacing, and
  no larger than needed: on an axis where the volume is smaller than the ROI the ROI shrinks to the
  smallest multiple of the divisor covering the volume, and MONAI pads the volume symmetrically to
  it (with ``cval``, the normalized background) and crops the prediction back.
* Windows are blended with a Gaussian importance map (``sigma_scale`` × ROI, as nnU-Net) or uniformly.
* Windows run on ``sw_device`` (the GPU) while the full-volume accumulation lives on ``device``
  (the GPU when it fits, else the CPU).
* Progress: the predictor is wrapped so that every finished batch of windows reports
  ``done/total`` (``total`` from MONAI's own window grid, :func:`count_windows`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import SlidingWindowInferer

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
    return len(dense_patch_slices(size, list(roi), scan_interval(size, roi, ov)))


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
    """Run ``predictor`` over windows of ``inputs`` ``(1, C, D, H, W)`` and blend the outputs.

    ``predictor`` maps a batch of windows ``(n, C, *roi)`` on ``sw_device`` to ``(n, K, *roi)`` (or a
    tuple of outputs; a downsampled one such as a token grid is blended at its own resolution).
    ``on_windows(done, total)`` is called after each batch. Returns tensors on ``device``.
    """
    if blend not in BLEND_MODES:
        raise InputError(f"--blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}")
    if sw_batch < 1:
        raise InputError(f"--sw-batch must be >= 1, got {sw_batch}")
    total = count_windows(tuple(inputs.shape[2:]), roi, overlap) * int(inputs.shape[0])
    done = 0

    def counted(window: torch.Tensor):
        nonlocal done
        out = predictor(window)
        done += int(window.shape[0])
        if on_windows is not None:
            on_windows(min(done, total), total)
        return out

    if sw_device.type != "cpu" and inputs.device != sw_device:
        # the whole volume on the GPU once: no host-to-device copy per window (a 512×512×200 float32
        # CT is 200 MB); if even that does not fit, windows are copied from the host batch by batch
        try:
            inputs = inputs.to(sw_device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
    inferer = SlidingWindowInferer(
        roi_size=roi, sw_batch_size=sw_batch, overlap=overlap, mode=blend, sigma_scale=sigma_scale,
        padding_mode="constant", cval=cval, sw_device=sw_device, device=device, progress=False,
        cache_roi_weight_map=True,
    )
    return inferer(inputs, counted)
