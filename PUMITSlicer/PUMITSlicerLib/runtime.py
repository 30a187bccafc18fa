"""How long a job will take on the CPU, said before it starts (GPU detection without importing torch).

Estimates (seconds), with ``MB`` the model's size and ``Mvox`` the volume's megavoxels at the model's
spacing:

* segment: ``2 + 3.0 * Mvox * MB``; reconstruct: ``3.5 + 2.5 * Mvox * MB``;
* fine-tune: ``15 + 0.2 * epochs * cases * MB`` (training samples fixed-size crops, so the cost per
  case does not grow with the volume).

Measured 2026-12 with the shipped models (4.3 MB segmenter, 2.1 MB tokenizer) on the shipped demo
images, on a shared 2-core x86 CPU: segment 8.1 s (hippocampus, 0.07 Mvox) and 14.1 s (spine CT,
0.85 Mvox at 1 mm); reconstruct 3.8 to 4.8 s (0.07 to 0.25 Mvox); fine-tune on 2 cases 16.3 s (1 epoch)
and 46.5 s (20 epochs). Segmentation start-up was re-measured after the lazy imports of issue 13: the
hippocampus case takes 1.35 s end to end on 2026-12-04's 2-core AMD EPYC (12-03's Xeon started 1.6× slower), so its
start-up term is 2 s, not 5 (the old one over-estimated by 4×). A rough guide, within about a factor of two on that machine (a faster CPU takes
less), shown so that nobody waits an hour without knowing it.
"""

from __future__ import annotations

import math
import platform
import shutil
from pathlib import Path

#: Seconds to start the pumit process (Python, torch import, model load, data preparation), per job kind.
STARTUP_SECONDS = {"segment": 2.0, "reconstruct": 3.5, "finetune": 15.0}
#: segment / reconstruct: seconds per (megavoxel at the model's spacing x MB of weights);
#: finetune: seconds per (epoch x case x MB of weights).
SECONDS_PER_UNIT = {"segment": 3.0, "reconstruct": 2.5, "finetune": 0.2}
#: Above this estimate the widget asks before starting a CPU job.
CONFIRM_ABOVE_SECONDS = 600.0


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


def estimateCpuSeconds(kind: str, megavoxels: float, modelBytes: int, *, epochs: int = 1, cases: int = 1) -> float:
    """Estimated seconds of a ``kind`` job (``segment``, ``reconstruct``, ``finetune``) on the CPU
    (see the module docstring). ``megavoxels`` is unused for fine-tuning, ``epochs`` / ``cases`` only there."""
    megabytes = max(modelBytes, 1) / 2**20
    if kind == "finetune":
        work = SECONDS_PER_UNIT[kind] * max(int(epochs), 1) * max(int(cases), 1) * megabytes
    else:
        work = SECONDS_PER_UNIT[kind] * megavoxels * megabytes
    return STARTUP_SECONDS[kind] + work


def formatDuration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cpuWarning(seconds: float, gpuFound: bool = False) -> str:
    """One line for the status label before a CPU run starts (``gpuFound``: the user chose the CPU)."""
    where = "Running on the CPU" if gpuFound else "No GPU found: running on the CPU"
    return f"{where}, which takes about {formatDuration(seconds)} (rough estimate from the volume and model size)."
