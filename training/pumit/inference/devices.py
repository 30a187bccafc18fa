"""Compute devices, mixed precision and out-of-memory detection for inference.

* :func:`resolve_device` turns ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` into a :class:`torch.device`
  (``auto`` = the first CUDA GPU when there is one, else the CPU).
* :func:`autocast` is the mixed-precision context: bf16 on GPUs that support it, else fp16; on the CPU
  fp32, or bf16 where the caller allows it and the CPU has native bf16 arithmetic
  (:func:`cpu_has_native_bf16`: AVX512-BF16 or AMX; emulated bf16 is about 2x *slower* than fp32).
* :func:`mps_available` / :func:`resolve_device` handle Apple GPUs (``mps``): ``--device mps`` on a
  machine without one falls back to the CPU with a one-line note (``auto`` never picks MPS silently
  unless it is there).
* :func:`oom_kind` tells a GPU out-of-memory error (recoverable by falling back to smaller batches or
  the CPU) from a CPU one (reported to the user as :class:`~pumit.errors.ResourceError` naming the
  knobs ``--roi``, ``--sw-batch`` and ``--device``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import torch

from pumit.errors import InputError
from pumit.inference.constants import PRECISIONS

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


#: Set to ``0`` to keep CPU inference in fp32 even where the CPU has native bf16 (``--precision fp32`` per run).
CPU_BF16_ENV = "PUMIT_CPU_BF16"


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16), the condition under which bf16
    autocast is faster than fp32 on the CPU. Uses PyTorch's own CPU capability checks, else ``/proc/cpuinfo``."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(c is not None for c in checks):
        with contextlib.suppress(Exception):
            return any(bool(c()) for c in checks if c is not None)
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
        return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))
    return False


def mps_available() -> bool:
    """Whether an Apple GPU (Metal Performance Shaders) is usable by this PyTorch."""
    mps = getattr(torch.backends, "mps", None)
    try:
        return bool(mps is not None and mps.is_available())
    except Exception:  # noqa: BLE001 - a broken Metal runtime is "not available"
        return False


def _mps_unavailable_reason() -> str:
    mps = getattr(torch.backends, "mps", None)
    if sys.platform != "darwin":
        return "Apple GPUs (mps) exist only on macOS"
    if mps is None or not mps.is_built():
        return "this PyTorch was built without MPS support"
    return "no usable Apple GPU (macOS 12.3+ on Apple silicon or an AMD GPU is needed)"


def resolve_device(spec: str | torch.device | None = "auto", *, note: Callable[[str], None] | None = None) -> torch.device:
    """The device for ``spec``; raises :class:`~pumit.errors.InputError` for a malformed or unavailable one.

    ``mps`` where no Apple GPU is usable falls back to the CPU with a one-line ``note`` (when given;
    else it raises like an unavailable CUDA device)."""
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
        if index not in (None, "0"):
            raise InputError(f"unknown device {spec!r}; an Apple GPU is 'mps' (or mps:0)")
        if mps_available():
            return torch.device("mps")
        why = _mps_unavailable_reason()
        if note is None:
            raise InputError(f"device 'mps' (Apple GPU) is not available on this machine: {why}; use --device cpu or auto")
        note(f"note: --device mps: {why}; running on the CPU instead")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"device {spec!r} requested but CUDA is not available (no NVIDIA GPU or a CPU-only PyTorch); "
                         "use --device cpu or --device auto")
    n = torch.cuda.device_count()
    i = int(index) if index is not None else torch.cuda.current_device()
    if i >= n:
        raise InputError(f"device {spec!r} does not exist: this machine has {n} CUDA device(s) (cuda:0 … cuda:{n - 1})")
    return torch.device("cuda", i)


def cpu_auto_bf16() -> bool:
    """``--precision auto`` on the CPU means bf16 here: native bf16 and not disabled by ``PUMIT_CPU_BF16=0``."""
    return os.environ.get(CPU_BF16_ENV, "1").strip().lower() not in ("0", "false", "no", "off") and cpu_has_native_bf16()


def resolve_precision(precision: str, device: torch.device, *, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None`` = full fp32).

    ``auto`` is bf16 on a GPU that supports it, fp16 on other CUDA GPUs, fp32 on MPS, and on the CPU fp32
    unless ``cpu_bf16`` (the caller's model is known to keep its results in bf16: segmentation) and
    :func:`cpu_auto_bf16`.
    """
    p = (precision or "auto").lower()
    if p not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if p == "fp32":
        return None
    if p == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_bf16 and cpu_auto_bf16() else None
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


_UNSUPPORTED_MARKERS = ("not implemented for", "not supported", "unsupported", "no kernel", "could not run")


def unsupported_kind(error: BaseException, device: torch.device, dtype: torch.dtype | None) -> str | None:
    """Why ``error`` is a *device or precision capability* failure that a fall-back can avoid, or ``None``:
    an operator missing on MPS (``"mps"``), or one missing in bf16/fp16 autocast (``"precision"``)."""
    if isinstance(error, NotImplementedError) or isinstance(error, RuntimeError) and not oom_kind(error):
        text = str(error).lower()
        if device.type == "mps" and ("mps" in text or isinstance(error, NotImplementedError)):
            return "mps"
        if dtype is not None and any(m in text for m in _UNSUPPORTED_MARKERS) and (
                "bfloat16" in text or "half" in text or "bf16" in text or "float16" in text):
            return "precision"
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
