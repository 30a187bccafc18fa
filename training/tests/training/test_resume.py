"""A killed run restarted with the same command continues from OUTPUT/checkpoints/last.ckpt: same final step
count, no lost or unreadable checkpoint; ``--resume never`` refuses a used folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pumit.errors import InputError
from pumit.training.run import find_resume_checkpoint
from training_helpers import TINY_VIT, kill_once_checkpointed, run_cli, tiny_cfg


def _classify_args(npz: Path, out: Path, steps: int) -> list[str]:
    vit = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_VIT.items()]
    return ["train", "classify", "--data", str(npz), "--output", str(out), "--name", "resume-test",
            "--max-steps", str(steps), "--checkpoint-every-n-steps", "1", "--batch-size", "8", "--input-size", "32,32,32",
            "--device", "cpu", "--devices", "1", "--num-workers", "0", "--progress", "none", "--warmup-steps", "0",
            "--num-sanity-val-steps", "0", *vit]


def test_killed_run_resumes_to_the_same_step_count(adrenal_npz: Path, tmp_path: Path) -> None:
    out, home = tmp_path / "run", tmp_path / "home"
    args = _classify_args(adrenal_npz, out, steps=4)
    last = out / "checkpoints" / "last.ckpt"

    kill_once_checkpointed(args, home, last)  # SIGKILL: no chance to clean up, only atomic writes survive
    first = torch.load(last, map_location="cpu", weights_only=True)
    assert 1 <= first["global_step"] <= 4
    # a kill during a later write may leave its temp file, but never a half-written last.ckpt (loaded above)

    again = run_cli(args, home)  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stderr
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert ckpt["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] == 4
    run = json.loads((out / "run.json").read_text())
    assert run["job"] == "classify" and len(run["launches"]) == 2
    assert run["launches"][1]["resumed_from"] == str(last)
    assert run["exports"][-1]["step"] == 4 and Path(run["exports"][-1]["model_dir"]).is_dir()
    assert not list((out / "checkpoints").glob(".*.tmp"))  # the restart cleaned up after the killed writer
    for p in (out / "checkpoints").glob("*.ckpt"):
        torch.load(p, map_location="cpu", weights_only=True)  # every kept checkpoint is complete and safe to load


def test_stop_and_continue_in_process(adrenal_npz: Path, tmp_path: Path, pumit_home: Path) -> None:
    from pumit.training.run import run_job

    out = tmp_path / "run2"
    base = dict(data=str(adrenal_npz), output=str(out), input_size=(32, 32, 32), batch_size=8, register=False, **TINY_VIT)
    assert run_job("classify", tiny_cfg("classify", max_steps=2, **base)).global_step == 2
    result = run_job("classify", tiny_cfg("classify", max_steps=4, **base))
    assert result.global_step == 4
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert sorted(p.name for p in out.glob("model*")) == ["model", "model.1"]  # earlier export kept, not overwritten
    assert len(list((out / "logs" / "csv").glob("version_*"))) == 2

    with pytest.raises(InputError, match="already has checkpoints"):
        find_resume_checkpoint(out, "never")
