"""Measured inference defaults (issue 13): bf16 autocast on CPUs with native bf16 (detected, switchable, with an fp32
fall-back), and ``--device mps`` falling back to the CPU with a note where there is no Apple GPU."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from inference_helpers import ct_crop
from torch import nn

from pumit.errors import InputError
from pumit.inference.devices import (
    CPU_BF16_ENV,
    cpu_auto_bf16,
    cpu_has_native_bf16,
    mps_available,
    resolve_device,
    resolve_precision,
    unsupported_kind,
)
from pumit.inference.engine import plan_attempts, run_with_fallback
from pumit.inference.progress import Progress

CPU = torch.device("cpu")


def test_native_bf16_detection_agrees_with_cpuinfo():
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo on this platform")
    flags = info.read_text(errors="replace")
    assert cpu_has_native_bf16() == bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def test_auto_precision_on_the_cpu(monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert resolve_precision("auto", CPU, cpu_bf16=True) == expected
    assert resolve_precision("auto", CPU) is None  # tasks that did not opt in (reconstruct, classify) stay fp32
    assert resolve_precision("fp32", CPU, cpu_bf16=True) is None
    assert resolve_precision("bf16", CPU) == torch.bfloat16
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert not cpu_auto_bf16() and resolve_precision("auto", CPU, cpu_bf16=True) is None
    attempts = plan_attempts(CPU, precision="auto", cpu_bf16=True)
    assert [a.dtype for a in attempts] == [None]


def test_cpu_plan_has_an_fp32_fallback_after_auto_bf16(monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16: auto stays fp32")
    attempts = plan_attempts(CPU, precision="auto", cpu_bf16=True)
    assert [a.dtype for a in attempts] == [torch.bfloat16, None]
    assert [a.dtype for a in plan_attempts(CPU, precision="bf16", cpu_bf16=True)] == [torch.bfloat16]  # asked for: no fallback


class NeedsFp32(nn.Module):
    """Runs an operator PyTorch has no bf16 CPU kernel for whenever bf16 autocast is on (a real torch error)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled("cpu"):  # a bf16 tensor reaching an op without a bf16 kernel (autocast off for it)
            with torch.autocast("cpu", enabled=False):
                return torch.linalg.det(x.to(torch.bfloat16)).float()
        return torch.linalg.det(x)


def test_an_operator_missing_in_bf16_falls_back_to_fp32():
    from pumit.inference.engine import Attempt

    module = NeedsFp32()
    x = torch.eye(3) * 2
    with pytest.raises((RuntimeError, NotImplementedError)) as info, torch.autocast("cpu", dtype=torch.bfloat16):
        module(x)
    assert unsupported_kind(info.value, CPU, torch.bfloat16) == "precision"
    assert unsupported_kind(info.value, CPU, None) is None  # not a precision problem when already fp32
    attempts = [Attempt(CPU, CPU, 1, torch.bfloat16), Attempt(CPU, CPU, 1, None)]
    progress = Progress("none")
    used = []

    def job(attempt, span):
        used.append(attempt.dtype)
        with attempt.autocast():
            return module(x)

    out = run_with_fallback(job, attempts, module=module, span=progress.span("inference", 0.1, 0.9), progress=progress,
                            what="test")
    assert used == [torch.bfloat16, None] and float(out) == pytest.approx(8.0)
    assert any("reduced precision" in n for n in progress.notes)


def test_other_errors_are_not_swallowed():
    assert unsupported_kind(RuntimeError("shape mismatch"), CPU, torch.bfloat16) is None
    assert unsupported_kind(ValueError("x"), CPU, torch.bfloat16) is None


def test_mps_falls_back_to_the_cpu_with_a_note():
    if mps_available():
        assert resolve_device("mps").type == "mps"
        return
    notes: list[str] = []
    assert resolve_device("mps", note=notes.append) == CPU
    assert len(notes) == 1 and notes[0].startswith("note: --device mps:") and "CPU" in notes[0]
    with pytest.raises(InputError, match="mps"):
        resolve_device("mps")  # without a note callback: a clear error, not a silent switch
    with pytest.raises(InputError):
        resolve_device("mps:1")


def test_segment_cli_with_device_mps_runs_and_says_where(tmp_path, models, run_cli):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    code, _, err = run_cli("segment", src, "-o", tmp_path / "seg.nii.gz", "--model", models["seg"], "--device", "mps",
                           "--progress", "none")
    assert code == 0, err
    assert (tmp_path / "seg.nii.gz").is_file()
    if not mps_available():
        assert "--device mps" in err and "running on the CPU instead" in err
