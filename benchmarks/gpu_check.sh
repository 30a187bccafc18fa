#!/usr/bin/env bash
# The prepared GPU check of issue 13 (benchmarks/gpu_check.py): CUDA AMP correctness, sliding-window accumulation on
# the GPU, the out-of-memory fall-back, the MIM step, then the segmentation + MIM benchmarks, in <= 8 minutes.
# Results: benchmarks/results/gpu-check-<device>-<date>.json and cuda-*-gpu-check.{json,md}.
#   bash benchmarks/gpu_check.sh          # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --cpu    # dry run on the CPU at tiny sizes (tests the script; no GPU numbers)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "gpu_check: nvidia-smi not available"
exec timeout --signal=TERM --kill-after=10 480 "$PY" -m benchmarks.gpu_check "$@"
