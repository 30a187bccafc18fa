"""Execution plans and the out-of-memory fallback chain shared by the inference tasks.

An :class:`Attempt` says where windows run (``sw_device``), where the full-volume result is
accumulated (``out_device``), how many windows go through the model at once (``sw_batch``) and the
autocast dtype. :func:`plan_attempts` builds the chain for a device:

1. GPU windows + GPU accumulation (when the estimated result fits in about half the free memory,
   else straight to 2), ``sw_batch`` windows at a time, bf16/fp16 autocast;
2. GPU windows + CPU accumulation;
3. the same with one window at a time;
4. the same with windows half as large in-plane (``smaller_window``; the task picks the size);
5. everything on the CPU (fp32, the original windows).

On the CPU the chain is one attempt, in bf16 autocast where ``--precision auto`` chose it for a CPU with
native bf16 (:func:`~pumit.inference.devices.cpu_auto_bf16`, segmentation only), followed by an fp32
attempt used only if an operator is missing in bf16.

:func:`run_with_fallback` tries them in order: a GPU out-of-memory error moves on to the next attempt
with a warning; an operator that the device (MPS) or the autocast precision does not implement moves on
to the next attempt that avoids it (the CPU, or fp32), also with a warning; a CPU out-of-memory error (or
the last attempt failing) raises :class:`~pumit.errors.ResourceError` naming the knobs ``--roi``,
``--sw-batch`` and ``--device``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from pumit.errors import ResourceError
from pumit.inference.devices import autocast, available_bytes, free_memory, oom_kind, resolve_precision, unsupported_kind
from pumit.inference.progress import Progress, Span

T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """One way to run the job (see the module docstring)."""

    sw_device: torch.device
    out_device: torch.device
    sw_batch: int
    dtype: torch.dtype | None
    smaller_window: bool = False
    channels_last: bool = False

    def describe(self) -> str:
        prec = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))
        where = (f"windows on {self.sw_device}, accumulation on {self.out_device}"
                 if self.sw_device != self.out_device else f"everything on {self.sw_device}")
        smaller = ", smaller windows" if self.smaller_window else ""
        fmt = ", channels-last" if self.channels_last else ""
        return f"{where}, {self.sw_batch} window(s) per batch{smaller}, {prec}{fmt}"

    def autocast(self):
        return autocast(self.sw_device, self.dtype)


def default_sw_batch(device: torch.device) -> int:
    """Windows per batch when not given: 4 on a GPU, 1 on the CPU (batching gains nothing there)."""
    return 4 if device.type in ("cuda", "mps") else 1


def plan_attempts(
    device: torch.device,
    *,
    precision: str = "auto",
    sw_batch: int | None = None,
    result_bytes: int = 0,
    accumulate: str = "auto",
    progress: Progress | None = None,
    cpu_bf16: bool = False,
    cpu_channels_last: bool = False,
) -> list[Attempt]:
    """The fallback chain for ``device``; ``result_bytes`` estimates the full-volume accumulation buffers.
    ``cpu_bf16``: ``--precision auto`` may pick bf16 on a CPU with native bf16 (segmentation);
    ``cpu_channels_last``: CPU attempts run the model in channels-last-3d memory format (segmentation:
    measured ~10 % faster per window for the light decoder, ``docs/benchmarks.md``)."""
    cpu = torch.device("cpu")
    dtype = resolve_precision(precision, device, cpu_bf16=cpu_bf16)
    n = sw_batch or default_sw_batch(device)
    cl = bool(cpu_channels_last)
    if device.type == "cpu":
        chain = [Attempt(cpu, cpu, n, dtype, channels_last=cl)]
        if dtype is not None and precision == "auto":
            chain.append(Attempt(cpu, cpu, n, None, channels_last=cl))  # only after an operator missing in bf16
        return chain
    out = device
    if accumulate == "cpu":
        out = cpu
    elif accumulate == "auto":
        free = available_bytes(device)
        if free is not None and result_bytes > free // 2:
            out = cpu
            if progress is not None:
                progress.note(f"note: the full-volume result (~{result_bytes / 2**30:.1f} GiB) is accumulated on the CPU; "
                              f"windows still run on {device}")
    chain = [Attempt(device, out, n, dtype)]
    if out != cpu:
        chain.append(Attempt(device, cpu, n, dtype))
    if n > 1:
        chain.append(Attempt(device, cpu, 1, dtype))
    chain.append(Attempt(device, cpu, 1, dtype, smaller_window=True))
    cpu_dtype = dtype if dtype == torch.bfloat16 and precision == "bf16" else None
    chain.append(Attempt(cpu, cpu, default_sw_batch(cpu), cpu_dtype, channels_last=cl))
    return chain


def run_with_fallback(
    job: Callable[[Attempt, Span], T],
    attempts: list[Attempt],
    *,
    module: nn.Module,
    span: Span,
    progress: Progress,
    what: str,
    knobs: str = "--roi or --sw-batch, or use --device cuda",
) -> T:
    """Run ``job(attempt, span)`` on each attempt in turn until one succeeds (see module docstring).

    ``module`` is moved to each attempt's ``sw_device``. ``span`` is the progress range of the job;
    a retry continues in the part of it not yet reported (fractions never go back).
    """
    skip_to: int | None = None
    for i, attempt in enumerate(attempts):
        if skip_to is not None and i < skip_to:
            continue
        skip_to = None
        module.to(attempt.sw_device)
        # conv weights in the attempt's memory format (activations follow the weights' format), unless the module
        # declares its own (``memory_format`` attribute, e.g. a benchmark wrapper keeping each model's faster format)
        fmt = getattr(module, "memory_format", None)
        if not isinstance(fmt, torch.memory_format):
            fmt = torch.channels_last_3d if attempt.channels_last else torch.contiguous_format
        module.to(memory_format=fmt)
        kind = unsupported = None
        detail = ""
        try:
            with torch.inference_mode():
                return job(attempt, span if i == 0 else span.rest())
        except (RuntimeError, MemoryError, NotImplementedError) as e:
            kind = oom_kind(e)
            unsupported = None if kind else unsupported_kind(e, attempt.sw_device, attempt.dtype)
            if kind is None and unsupported is None:
                raise
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        # Outside the except block: the exception's frames (and the tensors they hold) are released.
        free_memory(attempt.sw_device)
        if unsupported is not None:
            nxt = next((j for j in range(i + 1, len(attempts))
                        if (unsupported == "mps" and attempts[j].sw_device.type != "mps")
                        or (unsupported == "precision" and attempts[j].dtype is None)), None)
            if nxt is None:
                raise ResourceError(f"{what} failed on {attempt.sw_device} ({attempt.describe()}): {detail}; "
                                    "use --device cpu or --precision fp32")
            what_failed = "an operator is not implemented on the Apple GPU" if unsupported == "mps" else \
                "an operator is not implemented in reduced precision"
            progress.warn(f"{what_failed} ({detail}); retrying with {attempts[nxt].describe()}")
            skip_to = nxt
            continue
        if kind == "cpu":
            raise ResourceError(f"out of memory on the CPU during {what} ({attempt.describe()}); lower {knobs}")
        if i + 1 < len(attempts):
            progress.warn(f"out of memory on {attempt.sw_device} during {what} ({attempt.describe()}); "
                          f"retrying with {attempts[i + 1].describe()}")
            continue
        raise ResourceError(f"out of GPU memory during {what} even with {attempt.describe()}; lower {knobs}")
    raise ResourceError(f"no way to run {what}: no execution attempts")
