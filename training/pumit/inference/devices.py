"""Compute devices, mixed precision and out-of-memory detection for inference.

* :func:`resolve_device` turns ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` into a :class:`torch.device`
  (``auto`` = the first CUDA GPU when there is one, else the CPU).
* :func:`autocast` is the mixed-precision context: bf16 on GPUs that support it, else fp16, and fp32
  on the CPU unless asked otherwise.
* :func:`oom_kind` tells a GPU out-of-memory error (recoverable by falling back to smaller batches or
  the CPU) from a CPU one (reported to the user as :class:`~pumit.errors.ResourceError` naming the
  knobs ``--roi``, ``--sw-batch`` and ``--device``).
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator
from typing import Literal

import torch

from pumit.errors import InputError
from pumit.inference.constants import PRECISIONS

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The device for ``spec``; raises :class:`~pumit.errors.InputError` for a malformed or unavailable one."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    m = _DEVICE_RE.match(text)
    if not m:
        raise InputError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    if kind == "auto":
        if index is not None:
            raise InputError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError("device 'mps' (Apple GPU) is not available on this machine; use --device cpu or auto")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise InputError(f"device {spec!r} requested but CUDA is not available (no NVIDIA GPU or a CPU-only PyTorch); "
                         "use --device cpu or --device auto")
    n = torch.cuda.device_count()
    i = int(index) if index is not None else torch.cuda.current_device()
    if i >= n:
        raise InputError(f"device {spec!r} does not exist: this machine has {n} CUDA device(s) (cuda:0 … cuda:{n - 1})")
    return torch.device("cuda", i)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None`` = full fp32).

    ``auto`` is bf16 on a GPU that supports it, fp16 on other CUDA GPUs, and fp32 on the CPU/MPS.
    """
    p = (precision or "auto").lower()
    if p not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if p == "fp32":
        return None
    if p == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if p == "fp16" and device.type == "cpu":
        raise InputError("fp16 autocast is not supported on the CPU; use --precision bf16 or fp32")
    return torch.bfloat16 if p == "bf16" else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for ``device`` with ``dtype``, or nothing when ``dtype`` is ``None``."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


OomKind = Literal["gpu", "cpu"]

_CPU_OOM_MARKERS = ("defaultcpuallocator", "can't allocate memory", "cannot allocate memory")


def oom_kind(error: BaseException) -> OomKind | None:
    """``"gpu"``/``"cpu"`` when ``error`` is an out-of-memory error on that side, else ``None``.

    GPU: :class:`torch.cuda.OutOfMemoryError`, or a ``RuntimeError`` mentioning ``out of memory``
    (CUDA/cuDNN/MPS). CPU: :class:`MemoryError` (NumPy and Python), or PyTorch's
    ``DefaultCPUAllocator: can't allocate memory``.
    """
    if isinstance(error, MemoryError):
        return "cpu"
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "gpu"
    if isinstance(error, RuntimeError):
        text = str(error).lower()
        if any(m in text for m in _CPU_OOM_MARKERS):
            return "cpu"
        if "out of memory" in text:
            return "gpu"
    return None


def free_memory(device: torch.device) -> None:
    """Release cached allocator memory after an out-of-memory error (no-op on the CPU)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        with contextlib.suppress(Exception):
            torch.mps.empty_cache()


def available_bytes(device: torch.device) -> int | None:
    """Free memory on a CUDA device in bytes (``None`` when unknown: CPU, MPS)."""
    if device.type != "cuda":
        return None
    try:
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    except (RuntimeError, AssertionError):  # no usable CUDA (AssertionError: "Torch not compiled with CUDA")
        return None
    return int(free) + int(cached)
