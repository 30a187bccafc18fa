"""Lightning callbacks and plugins of the training jobs.

* :class:`AtomicCheckpointIO` — checkpoints are written to a temporary file in the same folder, flushed
  to disk, then renamed over the target: a killed run never leaves a truncated ``last.ckpt``.
* :class:`PeriodicCheckpoint` — ``last.ckpt`` at every epoch end, every N steps and every M minutes.
* :class:`JsonlProgress` — ``--progress jsonl``: one JSON object per line on a stream (the real stdout)
  ``{"stage", "fraction", "message", "epoch", "step", "dice"/"metric", ...}``.
* :class:`ProgressReporter` — the JSONL writer itself, also used before and after ``fit`` (data
  preparation, export, registration).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import Callback

from pumit.atomic import default_file_mode, temp_file

#: Overall fraction at which training starts / ends (before: data preparation; after: export, registration).
TRAIN_START, TRAIN_END = 0.05, 0.95


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose saves are atomic on local file systems (temp file, fsync, rename).

    Loading is Lightning's (``torch.load``; the Trainer passes ``weights_only=True`` for resumes, see
    :mod:`pumit.training.run`).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        target = Path(path)
        if "://" in str(path):  # remote file systems: Lightning's fsspec transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(target)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            default_file_mode(tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return None


class PeriodicCheckpoint(Callback):
    """Writes ``path`` (``OUTPUT/checkpoints/last.ckpt``) at the end of every training epoch, every
    ``every_n_steps`` optimizer steps (0: off) and every ``every_minutes`` minutes (0: off), so that a kill
    (SIGKILL, a crash, Cancel) loses at most one epoch, or less. The step that reaches ``max_steps`` is not
    saved here: the caller's final ``trainer.save_checkpoint`` after ``fit`` writes it, complete.

    Lightning's own ``ModelCheckpoint(save_top_k=0, save_last=True)`` writes "last" only together with a
    top-k save, i.e. never before the end of the run. The time-based decision is taken on global rank 0
    and broadcast, so every rank saves (collectively) at the same step.
    """

    def __init__(self, path: str | os.PathLike, *, every_n_steps: int = 0, every_minutes: float = 10.0):
        super().__init__()
        self.path = Path(path)
        self.every_n_steps = max(int(every_n_steps or 0), 0)
        self.every_seconds = max(float(every_minutes or 0.0), 0.0) * 60.0
        self._saved_step = -1
        self._since = time.monotonic()

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.global_step == self._saved_step or trainer.sanity_checking:
            return
        # the full state (optimizer, loops, callbacks) so that a resume continues exactly; saying so
        # explicitly also keeps Lightning from logging "`weights_only` was not set" at every save
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step
        self._since = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_step = trainer.global_step  # a resumed run: that state is on disk already
        self._since = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._saved_step or step == 0:
            return
        if trainer.max_steps > 0 and step >= trainer.max_steps:
            # the last step: the run's final save writes this state once the loops have counted the batch.
            # Saved here, mid-step, ``_batches_that_stepped`` lags by one; Lightning adds it back when a resumed
            # run trains on, but a resume with nothing left to train would keep the lag in its final checkpoint
            return
        due = bool(self.every_n_steps) and step % self.every_n_steps == 0
        if self.every_seconds:
            late = trainer.strategy.broadcast(time.monotonic() - self._since >= self.every_seconds, src=0)
            due = due or bool(late)
        if due:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {}


class ProgressReporter:
    """Writes progress as JSON lines (``mode == "jsonl"``) or not at all; fractions never decrease.

    Every line has ``stage``, ``fraction`` (0..1), ``message``, ``epoch`` and ``dice`` (the last validation
    Dice of segmentation, else ``null``) plus the keyword arguments given.
    """

    def __init__(self, mode: str = "none", stream: IO[str] | None = None):
        self.mode = mode
        self.stream = stream if stream is not None else sys.stdout
        self.fraction = 0.0
        self.epoch: int | None = None
        self.dice: float | None = None

    @property
    def enabled(self) -> bool:
        return self.mode == "jsonl"

    def emit(self, stage: str, fraction: float, message: str = "", **extra: Any) -> None:
        self.fraction = min(max(float(fraction), self.fraction, 0.0), 1.0)
        if not self.enabled:
            return
        obj: dict[str, Any] = {"stage": stage, "fraction": round(self.fraction, 6), "message": message,
                               "epoch": self.epoch, "dice": self.dice}
        obj.update({k: _jsonable(v) for k, v in extra.items()})
        self.stream.write(json.dumps(obj) + "\n")
        self.stream.flush()


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Path):
        return str(v)
    return v


class JsonlProgress(Callback):
    """Training progress through a :class:`ProgressReporter`: the optimizer-step fraction mapped to
    ``[TRAIN_START, TRAIN_END]``, at most every ``min_interval`` seconds, plus one line per validation.

    ``monitor`` is the metric reported after each validation (``val/dice`` is reported as ``dice``).
    """

    def __init__(self, reporter: ProgressReporter, monitor: str | None = None, min_interval: float = 1.0):
        super().__init__()
        self.reporter = reporter
        self.monitor = monitor
        self.min_interval = min_interval
        self._last = 0.0
        self._total = 1

    def _fraction(self, trainer: pl.Trainer) -> float:
        done = min(trainer.global_step / max(self._total, 1), 1.0)
        return TRAIN_START + (TRAIN_END - TRAIN_START) * done

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        est = trainer.estimated_stepping_batches
        self._total = int(est) if est is not None and math.isfinite(float(est)) else 1
        if trainer.is_global_zero:
            self.reporter.epoch = trainer.current_epoch
            self.reporter.emit("train", self._fraction(trainer), f"training: step {trainer.global_step}/{self._total}",
                               step=trainer.global_step, total_steps=self._total)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        self.reporter.epoch = trainer.current_epoch
        loss = trainer.callback_metrics.get("train/loss")
        self.reporter.emit("train", self._fraction(trainer),
                           f"epoch {trainer.current_epoch}, step {trainer.global_step}/{self._total}",
                           step=trainer.global_step, loss=loss)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        extra: dict[str, Any] = {"step": trainer.global_step}
        msg = f"validation after epoch {trainer.current_epoch}, step {trainer.global_step}"
        if "val/dice" in metrics:
            self.reporter.dice = float(metrics["val/dice"])
            msg += f": Dice {self.reporter.dice:.4f}"
            extra["dice_per_class"] = {k.split("/", 2)[2]: _jsonable(v) for k, v in metrics.items()
                                       if k.startswith("val/dice/")}
        elif self.monitor and self.monitor in metrics:
            value = float(metrics[self.monitor])
            extra["metric"] = {self.monitor: value}
            msg += f": {self.monitor} {value:.4f}"
        self.reporter.epoch = trainer.current_epoch
        self.reporter.emit("validate", self._fraction(trainer), msg, **extra)
