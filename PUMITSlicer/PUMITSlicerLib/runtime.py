"""How long a job will take on the CPU, said before it starts (GPU detection without importing torch).

The estimate is ``seconds = startup + k[kind] * megavoxels at the model's spacing * model MB``
(+ per epoch for fine-tuning), with ``k`` measured with the shipped reference models on the demo
images on a 2-core x86 CPU (2026-12; see docs/slicer.md). It is a rough guide (a faster CPU needs less),
shown so that nobody waits an hour without knowing it.
"""

from __future__ import annotations

import math
import platform
import shutil
from pathlib import Path

#: Seconds to start the pumit process (Python, torch import, model load) on a 2-core CPU.
STARTUP_SECONDS = 4.0
#: Seconds per (megavoxel at the model's spacing x MB of weights) on a 2-core CPU, per job kind.
SECONDS_PER_MEGAVOXEL_MB = {"segment": 12.0, "reconstruct": 2.5, "finetune": 40.0}


def gpuAvailable() -> bool:
    """True where an NVIDIA driver is present (``/proc/driver/nvidia/gpus``, ``nvidia-smi``) or on Apple
    silicon (MPS). Checked without importing torch into Slicer."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    if shutil.which("nvidia-smi"):
        return True
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def modelMegavoxels(dimensions, spacing, modelSpacing=None) -> float:
    """Megavoxels the model processes: the volume resampled to ``modelSpacing`` mm (None: as it is)."""
    voxels = math.prod(int(d) for d in dimensions)
    if modelSpacing:
        voxels = math.prod(float(d) * float(s) for d, s in zip(dimensions, spacing)) / math.prod(float(m) for m in modelSpacing)
    return voxels / 1e6


def estimateCpuSeconds(kind: str, megavoxels: float, modelBytes: int, *, epochs: int = 1) -> float:
    """Estimated seconds of a ``kind`` job (``segment``, ``reconstruct``, ``finetune``) on the CPU.
    ``megavoxels`` for fine-tuning is the sum over the training cases."""
    k = SECONDS_PER_MEGAVOXEL_MB[kind]
    work = k * megavoxels * max(modelBytes, 1) / 2**20
    return STARTUP_SECONDS + work * (max(int(epochs), 1) if kind == "finetune" else 1)


def formatDuration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cpuWarning(seconds: float) -> str:
    """One line for the status label before a CPU run starts."""
    return (f"No GPU found: running on the CPU, which takes about {formatDuration(seconds)} "
            f"(rough estimate from the volume and model size).")
