"""Devices, precision, out-of-memory classification and the fallback chain, ROI fitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pumit.errors import InputError, ResourceError
from pumit.inference import Progress, resolve_device, resolve_precision
from pumit.inference.devices import oom_kind
from pumit.inference.engine import Attempt, plan_attempts, run_with_fallback
from pumit.inference.sliding import aligned_overlap, count_windows, fit_roi, scan_interval

CPU = torch.device("cpu")


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto") == (torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else CPU)
    for bad in ("gpu", "cuda:x", "auto:1", ""):
        if bad == "":
            assert resolve_device(bad) == resolve_device("auto")
            continue
        with pytest.raises(InputError, match="unknown device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda:1")


def test_resolve_precision():
    assert resolve_precision("auto", CPU) is None
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    with pytest.raises(InputError):
        resolve_precision("fp16", CPU)
    with pytest.raises(InputError):
        resolve_precision("int8", CPU)


def test_oom_kind_on_real_errors():
    with pytest.raises(MemoryError) as np_err:
        np.empty(1 << 62, dtype=np.uint8)  # NumPy refuses: a real CPU MemoryError
    assert oom_kind(np_err.value) == "cpu"
    with pytest.raises(RuntimeError) as torch_err:
        torch.empty(1 << 60, dtype=torch.uint8)  # PyTorch's CPU allocator refuses
    assert oom_kind(torch_err.value) == "cpu"
    assert oom_kind(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "gpu"
    assert oom_kind(RuntimeError("MPS backend out of memory")) == "gpu"
    assert oom_kind(RuntimeError("shape mismatch")) is None
    assert oom_kind(ValueError("out of memory")) is None


def test_fallback_chain_for_a_gpu():
    gpu = torch.device("cuda", 0)
    chain = plan_attempts(gpu, precision="fp32", sw_batch=4, accumulate="device")
    assert [(a.sw_device.type, a.out_device.type, a.sw_batch, a.smaller_window) for a in chain] == [
        ("cuda", "cuda", 4, False), ("cuda", "cpu", 4, False), ("cuda", "cpu", 1, False), ("cuda", "cpu", 1, True),
        ("cpu", "cpu", 1, False)]
    chain = plan_attempts(gpu, precision="fp32", sw_batch=1, accumulate="cpu")
    assert [(a.sw_device.type, a.out_device.type, a.sw_batch, a.smaller_window) for a in chain] == [
        ("cuda", "cpu", 1, False), ("cuda", "cpu", 1, True), ("cpu", "cpu", 1, False)]
    assert plan_attempts(CPU) == [Attempt(CPU, CPU, 1, None)]


def test_gpu_oom_falls_back_with_a_warning():
    """The fallback logic: a GPU out-of-memory error on the first attempt moves on to the next one."""
    warnings: list[str] = []
    prog = Progress(lambda s, f, m: warnings.append(m))
    module = torch.nn.Linear(2, 2)
    attempts = [Attempt(CPU, CPU, 4, None), Attempt(CPU, CPU, 1, None)]
    calls: list[int] = []

    def job(attempt: Attempt, span) -> int:
        calls.append(attempt.sw_batch)
        if attempt.sw_batch == 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        span.update(1.0)
        return attempt.sw_batch

    assert run_with_fallback(job, attempts, module=module, span=prog.span("inference", 0.1, 0.9), progress=prog,
                             what="test") == 1
    assert calls == [4, 1]
    assert any(m.startswith("warning: out of memory") and "retrying with" in m for m in warnings)


def test_cpu_oom_is_a_resource_error_naming_the_knobs():
    prog = Progress("none")

    def job(attempt: Attempt, span) -> None:
        np.empty(1 << 62, dtype=np.uint8)  # a real allocation failure

    with pytest.raises(ResourceError, match="--roi or --sw-batch") as info:
        run_with_fallback(job, [Attempt(CPU, CPU, 1, None)], module=torch.nn.Linear(1, 1),
                          span=prog.span("inference", 0.1, 0.9), progress=prog, what="segmentation")
    assert info.value.exit_code == 4


def test_fit_roi():
    plan = fit_roi((96, 96, 96), (40, 200, 50), (4, 16, 16))
    assert plan.roi == (40, 96, 64)
    assert plan.padded == (False, False, True)
    plan = fit_roi((30, 100, 100), (300, 300, 300), (4, 16, 16))
    assert plan.roi == (32, 112, 112) and any("rounded up" in n for n in plan.notes)
    plan = fit_roi((1, 64, 64), (1, 128, 128), (1, 16, 16))
    assert plan.roi == (1, 64, 64) and plan.padded == (False, False, False)


def test_window_count_matches_monai():
    from monai.inferers import SlidingWindowInferer

    shape, roi = (20, 37, 50), (8, 16, 16)
    calls = []

    def predictor(x):
        calls.append(x.shape[0])
        return x

    SlidingWindowInferer(roi, sw_batch_size=3, overlap=0.4)(torch.zeros(1, 1, *shape), predictor)
    assert sum(calls) == count_windows(shape, roi, 0.4)


def test_smaller_window_for_the_fallback():
    from pumit.inference.sliding import smaller_roi

    assert smaller_roi((32, 128, 96), (4, 16, 16)) == (32, 64, 48)
    assert smaller_roi((8, 16, 16), (4, 16, 16)) == (8, 16, 16)


def test_aligned_overlap_keeps_steps_on_the_token_grid():
    roi, div = (32, 64, 48), (8, 16, 16)
    ov = aligned_overlap(roi, div, 0.5)
    steps = scan_interval((1000, 1000, 1000), roi, ov)
    assert all(s % k == 0 and s > 0 for s, k in zip(steps, div))
    assert steps == (16, 32, 16)


def test_public_functions_are_not_shadowed_by_their_submodules():
    """``segment``, ``reconstruct`` and ``classify`` share their submodule's name: after the submodule is
    imported (directly, or lazily through ``segment_image``), ``from pumit.inference import segment`` must
    still give the function (it gave the module, in whichever test ran second). Fresh interpreter: the
    import order is the point."""
    import subprocess
    import sys

    code = ("import types, pumit.inference.segment\n"
            "from pumit.inference import reconstruct_image, classify_image\n"
            "from pumit.inference import segment, reconstruct, classify\n"
            "import pumit.inference as pi\n"
            "for f in (segment, reconstruct, classify, pi.segment, pi.reconstruct, pi.classify):\n"
            "    assert callable(f) and not isinstance(f, types.ModuleType), f\n"
            "from pumit.inference.segment import segment_image\n"
            "import importlib; assert importlib.import_module('pumit.inference.segment').segment is segment\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
