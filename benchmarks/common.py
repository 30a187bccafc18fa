"""Shared machinery of the benchmark suite: timing, memory, environment, result records.

Every benchmark returns a list of *records* (plain dicts, JSON-serialisable) built by :func:`record`.
Each record carries the fields a reader needs to trust a number on its own: the device, torch/MONAI
versions, the shapes, dtype, number of repeats, the median and the spread (inter-quartile range and
min/max) of the wall-clock times, and, where measured, the peak memory with the method used to
measure it. Comparisons ("ours / baseline", same process, same run) are built by :func:`compare`.

Timing rules:

* CUDA: ``torch.cuda.synchronize()`` before starting and before stopping each timer.
* Warm-up iterations (not recorded) precede the measured repeats: they absorb cuDNN/oneDNN
  primitive creation, allocator growth and lazy AdamW state.
* When ours and a baseline are compared on the CPU, their repeats are *interleaved* (A B A B ...):
  a shared machine's background load then hits both alike. Process CPU time is recorded beside the
  wall time; on a loaded machine it is the steadier of the two.

Memory rules:

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` — absolute, i.e.
  including weights (and optimizer state for training) of the one model on the GPU at that time.
* CPU: the process's peak resident set size (``VmHWM``) after resetting it with
  ``/proc/self/clear_refs`` (Linux), minus the resident size just before, after ``malloc_trim``.
  This is the *transient* memory of the measured call above what was already resident (weights,
  optimizer state); the weights' size is recorded separately as ``param_mb``. Where that interface
  is missing the value is ``None`` and ``mem_method`` says ``"n/a"``.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

SCHEMA = "pumit-benchmarks/1"
REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REQUIRED_FIELDS = (
    "group", "name", "device", "torch", "monai", "dtype", "shapes", "repeats", "median_s", "iqr_s", "min_s", "max_s",
)


# --------------------------------------------------------------------------------------------- device


def resolve_device(name: str | None = None) -> torch.device:
    """``cuda`` when present (or asked for), else ``cpu``."""
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for but torch.cuda.is_available() is False")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_label(device: torch.device) -> str:
    """Short label used in result file names: ``cpu`` or e.g. ``cuda-nvidia-h100-80gb-hbm3``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        return "cuda-" + "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")
    return "cpu"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "unknown"))
    except Exception as e:  # noqa: BLE001 - an optional package may fail to import for many reasons
        return None if isinstance(e, ImportError) else f"import failed: {type(e).__name__}"


def timm_status() -> tuple[bool, str]:
    """Whether ``import timm`` works here (it imports torchvision, which may not match the torch wheel)."""
    try:
        import timm

        return True, f"timm {timm.__version__}"
    except Exception as e:  # noqa: BLE001 - e.g. a torchvision that does not match torch
        return False, f"import timm failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def load_snapshot() -> dict[str, Any]:
    """Background load of the machine (the CPU timings are only as good as the machine was quiet)."""
    out: dict[str, Any] = {}
    try:
        out["loadavg_1_5_15"] = [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        pass
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]  # some avg10=.. avg60=.. avg300=..
        out["cpu_pressure_some"] = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:4])}
    except (OSError, ValueError, IndexError):
        pass
    return out


def git_commit() -> str | None:
    # read-only: GIT_OPTIONAL_LOCKS=0 keeps `git status` from refreshing (locking) the index others commit with
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        r = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           timeout=10, check=False, env=env)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False, env=env)
        return r.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def env_info(device: torch.device) -> dict[str, Any]:
    """Everything about the machine and software that a result depends on."""
    info: dict[str, Any] = {
        "device": device.type,
        "device_label": device_label(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model(),
        "torch": torch.__version__,
        "monai": _version("monai"),
        "numpy": _version("numpy"),
        "SimpleITK": _version("SimpleITK"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cuda_available": torch.cuda.is_available(),
        "timm": timm_status()[1],
        "git_commit": git_commit(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}", bf16_supported=torch.cuda.is_bf16_supported())
    return info


# --------------------------------------------------------------------------------------------- memory


_LIBC = None


def _malloc_trim() -> None:
    global _LIBC
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_peak_supported() -> bool:
    return os.path.exists("/proc/self/clear_refs") and _status_kb("VmHWM") is not None


CPU_MEM_METHOD = "peak RSS above resident (VmHWM after clear_refs=5, malloc_trim)"
CUDA_MEM_METHOD = "torch.cuda.max_memory_allocated (absolute)"


class PeakMemory:
    """Context manager measuring the peak memory of a block; ``.mb`` (float or None) and ``.method``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb: float | None = None
        self.method = "n/a"
        self._base_kb: int | None = None

    def __enter__(self) -> PeakMemory:  # noqa: PYI034 - Python 3.10 has no typing.Self
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = CUDA_MEM_METHOD
        elif cpu_peak_supported():
            _malloc_trim()
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self._base_kb = _status_kb("VmRSS")
                self.method = CPU_MEM_METHOD
            except OSError:
                self._base_kb = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._base_kb is not None:
            peak = _status_kb("VmHWM")
            self.mb = None if peak is None else max(peak - self._base_kb, 0) / 1024


def param_mb(module: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    else:
        _malloc_trim()


# --------------------------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """Wall and process-CPU seconds of one call of ``fn``, the device synchronized before and after."""
    synchronize(device)
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0, time.process_time() - c0


def time_calls(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = timed(fn, device)
        walls.append(wall)
        cpus.append(cpu)
    return walls, cpus


def time_interleaved(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int, warmup: int = 1) -> dict[str, tuple[list[float], list[float]]]:
    """Like :func:`time_calls` for several functions, alternating them each round (A B A B ...)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in fns}
    keys = list(fns)
    for r in range(repeats):
        order = keys if r % 2 == 0 else keys[::-1]  # alternate the order too: no one always runs first
        for k in order:
            wall, cpu = timed(fns[k], device)
            out[k][0].append(wall)
            out[k][1].append(cpu)
    return out


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles (inclusive method), IQR, min, max, mean of a non-empty sequence."""
    v = sorted(float(x) for x in values)
    if not v:
        raise ValueError("no values to summarize")
    if len(v) >= 2:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    else:
        q1 = q3 = v[0]
    return {"median": statistics.median(v), "q1": q1, "q3": q3, "iqr": q3 - q1, "min": v[0], "max": v[-1], "mean": statistics.fmean(v)}


# --------------------------------------------------------------------------------------------- records


def dtype_name(dtype: torch.dtype | str) -> str:
    return str(dtype).replace("torch.", "") if not isinstance(dtype, str) else dtype


def record(
    group: str,
    name: str,
    *,
    device: torch.device,
    dtype: torch.dtype | str,
    shapes: dict[str, Any],
    times: Sequence[float],
    cpu_times: Sequence[float] | None = None,
    warmup: int = 1,
    work: float | None = None,
    work_unit: str | None = None,
    peak: PeakMemory | None = None,
    params_mb: float | None = None,
    extrapolated: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One result. ``work`` (e.g. tokens per call) gives ``throughput = work / median`` in ``work_unit``/s."""
    s = summarize(times)
    rec: dict[str, Any] = {
        "group": group,
        "name": name,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model(),
        "torch": torch.__version__,
        "monai": _version("monai"),
        "dtype": dtype_name(dtype),
        "shapes": shapes,
        "repeats": len(times),
        "warmup": warmup,
        "median_s": s["median"],
        "q1_s": s["q1"],
        "q3_s": s["q3"],
        "iqr_s": s["iqr"],
        "min_s": s["min"],
        "max_s": s["max"],
        "times_s": [float(t) for t in times],
    }
    if cpu_times:
        rec["cpu_median_s"] = summarize(cpu_times)["median"]
    if work is not None:
        rec["throughput"] = work / s["median"] if s["median"] > 0 else None
        rec["throughput_unit"] = f"{work_unit}/s" if work_unit else "1/s"
        rec["work_per_call"] = work
    rec["peak_mem_mb"] = None if peak is None else peak.mb
    rec["mem_method"] = "n/a" if peak is None else peak.method
    if params_mb is not None:
        rec["param_mb"] = params_mb
    rec["extrapolated"] = extrapolated
    rec.update(extra)
    return rec


def compare(
    name: str,
    ours: dict[str, Any],
    baseline: dict[str, Any],
    *,
    metric: str = "throughput",
    higher_is_better: bool = True,
    target: float | None = None,
    note: str = "",
) -> dict[str, Any]:
    """``ratio`` = ours / baseline for throughput-like metrics, baseline / ours for time-like metrics, so
    that ``ratio > 1`` always means "ours is better". ``met`` compares ``ratio`` with ``target``."""
    a, b = ours.get(metric), baseline.get(metric)
    ratio = None
    if a and b:
        ratio = a / b if higher_is_better else b / a
    cmp: dict[str, Any] = {
        "name": name,
        "ours": ours["name"],
        "baseline": baseline["name"],
        "metric": metric,
        "ours_value": a,
        "baseline_value": b,
        "ratio": ratio,
        "ratio_meaning": ("ours/baseline" if higher_is_better else "baseline/ours") + f" of {metric} (>1: ours better)",
        "target": target,
        "met": None if (target is None or ratio is None) else bool(ratio >= target),
        "note": note,
    }
    cpu_a, cpu_b = ours.get("cpu_median_s"), baseline.get("cpu_median_s")
    if cpu_a and cpu_b:
        cmp["ratio_by_cpu_time"] = cpu_b / cpu_a  # same "ours better when > 1" meaning, from process CPU time
    mem_a, mem_b = ours.get("peak_mem_mb"), baseline.get("peak_mem_mb")
    if mem_a is not None and mem_b:
        cmp["peak_mem_ratio"] = mem_a / mem_b  # ours / baseline: < 1 means ours uses less
    if target is not None and ratio is not None and ratio < target:
        cmp["shortfall"] = f"{(1 - ratio / target) * 100:.1f}% below the {target:g}x target"
    return cmp


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype):
    """bf16/fp16 autocast on ``device``, a no-op for float32."""
    if dtype == torch.float32:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def flatten(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for it in items:
        out.extend(it)
    return out


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    os.replace(tmp, path)


class CompiledOrEager:
    """``torch.compile(module)`` with a clean fallback: if compiling (lazily, at the first call) or running
    the compiled module fails, the eager module is used from then on and ``failure`` says why."""

    def __init__(self, module: torch.nn.Module, **compile_kwargs: Any):
        self.module = module
        self.failure: str | None = None
        self.compile_s: float | None = None
        try:
            self.compiled: Any = torch.compile(module, **compile_kwargs)
        except Exception as e:  # noqa: BLE001 - e.g. no C++ compiler, unsupported Python
            self.compiled = None
            self.failure = f"{type(e).__name__}: {str(e)[:200]}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None and self.failure is None:
            t0 = time.perf_counter()
            try:
                out = self.compiled(*args, **kwargs)
                if self.compile_s is None:
                    self.compile_s = time.perf_counter() - t0  # the first call includes compilation
                return out
            except Exception as e:  # noqa: BLE001 - any compile/runtime failure: eager from now on
                self.failure = f"{type(e).__name__}: {str(e)[:200]}"
        return self.module(*args, **kwargs)
