"""Bad data fails before training with exit code 2 naming the file; out of memory exits 4 naming the knobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pumit.errors import ResourceError
from pumit.training.common import OOM_HINT, is_oom, oom_error
from training_helpers import TINY_VIT, add_undeclared_label, cli_main, corrupt_label_geometry


def _segment(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "segment", "--data", str(data), "--output", str(out), "--name", "bad", "--epochs", "1",
            "--device", "cpu", "--progress", "jsonl", "--num-workers", "0", *extra]


def test_label_geometry_mismatch_exits_2_before_training(hippo_copy: Path, tmp_path: Path, pumit_home: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = corrupt_label_geometry(hippo_copy, index=1)
    out = tmp_path / "run"
    assert cli_main(_segment(hippo_copy, out)) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()[-1]
    assert err.startswith("pumit: error:") and bad.name in err and "size" in err
    assert not (out / "checkpoints").exists() and not (pumit_home / "models").exists()
    for line in cap.out.splitlines():  # stdout stays JSON lines, even on failure
        assert json.loads(line)["stage"] == "prepare"


def test_undeclared_label_value_exits_2(hippo_copy: Path, tmp_path: Path, pumit_home: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = add_undeclared_label(hippo_copy, index=2, value=7)
    assert cli_main(_segment(hippo_copy, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert bad.name in err and "[7]" in err and "not declared" in err


def test_missing_data_and_unknown_base_model(tmp_path: Path, pumit_home: Path, hippo_msd: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(_segment(tmp_path / "nowhere", tmp_path / "r1")) == 2
    assert "not found" in capsys.readouterr().err
    assert cli_main(_segment(hippo_msd, tmp_path / "r2", "--base-model", "no-such-model")) == 3
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "message"), [("--mirror-prob", "2", "mirror_prob must be between 0 and 1"),
                                                        ("--mirror-axes", "0,3", "mirror_axes are model axes")])
def test_bad_mirroring_exits_2_before_the_data_is_prepared(flag: str, value: str, message: str, hippo_msd: Path,
                                                           tmp_path: Path, pumit_home: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert cli_main(_segment(hippo_msd, out, flag, value)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("pumit: error:") and message in err
    assert not (out / "checkpoints").exists() and not (out / "data").exists() and not (pumit_home / "models").exists()


def test_out_of_memory_exits_4_naming_the_knobs(adrenal_npz: Path, tmp_path: Path, pumit_home: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pumit.training.classification import ClassificationModule

    def oom(self, batch, batch_idx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(ClassificationModule, "training_step", oom)
    vit = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_VIT.items()]
    code = cli_main(["train", "classify", "--data", str(adrenal_npz), "--output", str(tmp_path / "oom"),
                     "--input-size", "32,32,32", "--device", "cpu", "--num-workers", "0", "--progress", "none",
                     "--num-sanity-val-steps", "0", *vit])
    assert code == 4
    err = capsys.readouterr().err
    for knob in ("--batch-size", "--precision", "--accumulate-grad-batches", "--grad-checkpointing", "crop"):
        assert knob in err


def test_oom_detection() -> None:
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    wrapped = RuntimeError("worker failed")
    wrapped.__cause__ = MemoryError()
    assert is_oom(wrapped)
    assert not is_oom(RuntimeError("shape mismatch"))
    err = oom_error(torch.OutOfMemoryError("CUDA out of memory"))
    assert isinstance(err, ResourceError) and err.exit_code == 4 and OOM_HINT in str(err)
