"""A killed run restarted with the same command continues from OUTPUT/checkpoints/last.ckpt: same final step
count, no lost or unreadable checkpoint; ``--resume never`` refuses a used folder."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
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


class _Tiny(pl.LightningModule):
    """A one-weight regression: enough for Lightning's loops, checkpoints and restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(1, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return (self.w(batch) - 1.0).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.ones(32, 1), batch_size=2)  # 16 batches: no epoch end at step 4


def _fit(tmp_path: Path, callbacks: list[pl.Callback], ckpt: Path | None = None) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=4, callbacks=callbacks, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         default_root_dir=str(tmp_path))
    trainer.fit(_Tiny(), ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    return trainer


def test_periodic_checkpoint_leaves_the_last_step_to_the_final_save(tmp_path: Path) -> None:
    """Saved inside the last step, Lightning's logging-step counter lags by one and a resume with nothing left to
    train kept the lag (the flake of the kill test above when its kill landed after step 4). Every state the
    periodic checkpoint writes must resume to the counters of an uninterrupted run."""
    from pumit.training.callbacks import PeriodicCheckpoint

    last = tmp_path / "last.ckpt"
    written: list[int] = []

    class Spy(pl.Callback):  # runs after PeriodicCheckpoint: copies whatever it just wrote
        def on_train_batch_end(self, trainer, *args) -> None:  # type: ignore[no-untyped-def]
            if last.is_file():
                step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
                if step not in written:
                    written.append(step)
                    (tmp_path / f"at{step}.ckpt").write_bytes(last.read_bytes())

    trainer = _fit(tmp_path, [PeriodicCheckpoint(last, every_n_steps=1, every_minutes=0), Spy()])
    assert written == [1, 2, 3]  # step 4 is the final save's (run.py after fit), not a mid-step copy
    assert trainer.fit_loop.epoch_loop._batches_that_stepped == 4
    for step in written:  # a kill after each of them: the same command resumes to the uninterrupted counters
        again = _fit(tmp_path / f"r{step}", [PeriodicCheckpoint(tmp_path / f"r{step}.ckpt", every_n_steps=1)],
                     ckpt=tmp_path / f"at{step}.ckpt")
        assert again.global_step == 4
        assert again.fit_loop.epoch_loop._batches_that_stepped == 4
