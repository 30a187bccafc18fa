"""A PNG montage comparing an input with its reconstruction: ``input | reconstruction | |error|``.

One row per axis of the volume (the middle slice along ``D``, ``H`` and ``W`` of the model layout;
one row for a 2D image), each panel drawn with its physical aspect ratio from the spacing. The
input and the reconstruction share one grey window (0.5-99.5 percentiles of the input); the error
has its own (0 to its 99.5 percentile). Uses Matplotlib's Agg canvas directly, so the global
Matplotlib backend of the calling process (e.g. 3D Slicer) is left alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pumit.spacing import PLANAR_THRESHOLD, Spacing


def middle_slices(volume: np.ndarray, spacing: Spacing) -> list[tuple[str, np.ndarray, float]]:
    """``(name, slice 2D, aspect)`` for the middle slice along each axis of ``volume`` ``(D, H, W)``;
    ``aspect`` is row spacing / column spacing (Matplotlib's ``imshow(aspect=...)``)."""
    d, h, w = volume.shape
    sd, sh, sw = spacing
    out = [("D (slice axis)", volume[d // 2], sh / sw)]
    if d > 1 and sd < PLANAR_THRESHOLD:
        out.append(("H", volume[:, h // 2, :], sd / sw))
        out.append(("W", volume[:, :, w // 2], sd / sh))
    return out


def save_montage(
    path: str | Path,
    original: np.ndarray,
    reconstruction: np.ndarray,
    spacing: Spacing,
    *,
    title: str = "",
    metrics: dict[str, float] | None = None,
) -> None:
    """Write the montage PNG to ``path``. ``original``/``reconstruction`` are ``(D, H, W)`` arrays in the
    input's intensity units; ``spacing`` is model order ``(thickness, H, W)`` mm. ``metrics``
    (:func:`pumit.metrics.reconstruction_metrics`) go under the title: Pearson, SSIM, std ratio and the
    PSNR beside a flat image's, never a PSNR alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    original = np.asarray(original, dtype=np.float32)
    reconstruction = np.asarray(reconstruction, dtype=np.float32)
    error = np.abs(original - reconstruction)
    lo, hi = (float(v) for v in np.percentile(original, (0.5, 99.5)))
    if hi <= lo:
        hi = lo + 1.0
    emax = float(np.percentile(error, 99.5)) or 1.0
    rows = list(zip(middle_slices(original, spacing), middle_slices(reconstruction, spacing), middle_slices(error, spacing)))
    fig = Figure(figsize=(9.0, 3.0 * len(rows) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    heading = title or "input | reconstruction | error"
    if metrics:
        from pumit.metrics import describe

        heading += "\n" + describe(metrics)
    fig.suptitle(heading, fontsize=10)
    for r, ((name, a, aspect), (_, b, _), (_, e, _)) in enumerate(rows):
        for c, (img, cmap, vmin, vmax, label) in enumerate((
            (a, "gray", lo, hi, "input"),
            (b, "gray", lo, hi, "reconstruction"),
            (e, "magma", 0.0, emax, "|input − reconstruction|"),
        )):
            ax = fig.add_subplot(len(rows), 3, r * 3 + c + 1)
            im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"middle of {name}", fontsize=8)
            if c == 2:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if metrics else 0.95))
    fig.savefig(str(path), format="png")
