"""Small helpers shared by the task modules (segment, reconstruct, classify)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import TypeVar

from pumit.errors import ResourceError
from pumit.inference.progress import Progress, ProgressLike, as_progress

T = TypeVar("T")

#: Overall progress fractions at which the stages of every task start (``done`` is 1.0).
STAGE_START = {"load": 0.0, "read": 0.05, "preprocess": 0.10, "inference": 0.15, "postprocess": 0.90, "write": 0.95}


def stage_bounds(stage: str) -> tuple[float, float]:
    """``(start, end)`` of ``stage`` in the overall fraction."""
    names = list(STAGE_START)
    start = STAGE_START[stage]
    i = names.index(stage)
    end = STAGE_START[names[i + 1]] if i + 1 < len(names) else 0.99
    return start, end


@contextlib.contextmanager
def cpu_memory_guard(what: str, knobs: str) -> Iterator[None]:
    """Turn a CPU :class:`MemoryError` raised inside the block into a :class:`ResourceError`."""
    try:
        yield
    except MemoryError:
        raise ResourceError(f"out of memory on the CPU while {what}; {knobs}") from None


def run_task(progress: ProgressLike, what: str, knobs: str, task: Callable[[Progress], T]) -> T:
    """Run ``task(progress)`` with CPU out-of-memory turned into :class:`ResourceError` (naming ``knobs``);
    a progress reporter created here from ``progress`` is closed at the end (marked failed on an error)."""
    prog, owned = as_progress(progress)
    try:
        with cpu_memory_guard(what, knobs):
            return task(prog)
    except BaseException:
        if owned:
            prog.close(failed=True)
        raise
    finally:
        if owned:
            prog.close()


def start_preprocess(image, model, settings, prog: Progress, *, keep_raw: bool = False):
    """The first steps every task shares: the device, the ``preprocess`` progress span (begun), and the
    input prepared for ``model`` with ``settings`` (layout, per-modality normalization, resampling).

    Returns ``(device, span, prepared)`` (:class:`torch.device`, :class:`~pumit.inference.progress.Span`,
    :class:`~pumit.inference.preprocess.PreparedInput`)."""
    from pumit.inference.devices import resolve_device
    from pumit.inference.preprocess import prepare_input

    device = resolve_device(settings.device, note=prog.note)  # mps without an Apple GPU: the CPU, with a note
    span = prog.span("preprocess", *stage_bounds("preprocess"))
    span.begin("normalizing")
    prepared = prepare_input(image, model.inputs, depth_axis=settings.depth_axis, spacing=settings.spacing,
                             modality=settings.modality, keep_raw=keep_raw, progress=prog)
    return device, span, prepared


def psnr(reference, estimate) -> float:
    """Peak signal-to-noise ratio in dB with the reference's value range as the peak (``inf`` if equal)."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    mse = float(np.mean((ref - est) ** 2))
    rng = float(ref.max() - ref.min()) if ref.size else 0.0
    if mse == 0.0:
        return math.inf
    if rng == 0.0:
        rng = max(abs(float(ref.max())), 1.0)
    return 10.0 * math.log10(rng * rng / mse)
