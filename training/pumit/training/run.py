"""Running a training job: run folder, data preparation, the Lightning ``Trainer``, resume, export.

:func:`run_job` is what ``pumit train JOB`` calls. The run folder (``--output``) holds::

    OUTPUT/run.json                 the job, the options of each launch, the exports
    OUTPUT/checkpoints/last.ckpt    the latest state: each epoch end, every --checkpoint-every-minutes (10) and
                                    every --checkpoint-every-n-steps; a kill loses at most one epoch
    OUTPUT/checkpoints/best.ckpt    the best state by the job's validation metric (when there is validation)
    OUTPUT/logs/csv/version_N/      CSV metrics of launch N
    OUTPUT/logs/tensorboard/version_N/
    OUTPUT/data/                    pre-processed data (reused by later launches)
    OUTPUT/model[.N]/               the exported model folder(s) (config.json + model.safetensors)

**Resume**: with ``--resume auto`` (default) a launch whose ``OUTPUT/checkpoints/last.ckpt`` exists continues
from it: weights, optimizer and scheduler states, the step and epoch counters, callbacks (best score).
On SLURM, an ``hpc_ckpt_*.ckpt`` written by Lightning on pre-emption (requeue) is used when newer. Checkpoints
are written atomically (temporary file + rename) and loaded with ``torch.load(weights_only=True)``: they hold
only tensors and plain Python values. They are still pickles; load only checkpoints of your own runs.

Distributed training is Lightning's: ``--devices``, ``--num-nodes``, ``--strategy``; launched by Lightning
itself on one node, or by ``torchrun`` / ``srun`` across nodes (Lightning reads their environment). Only the
global rank 0 exports and registers the model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

from pumit.errors import CancelledError, InputError, ModelError, PumitError
from pumit.atomic import clean_stale_temps, describe_removed
from pumit.imageio import atomic_write_text
from pumit.store.paths import user_data_dir
from pumit.training.callbacks import TRAIN_END, AtomicCheckpointIO, JsonlProgress, PeriodicCheckpoint, ProgressReporter
from pumit.training.common import is_oom, oom_error
from pumit.training.loggers import build_loggers
from pumit.training.export import export_model, next_version, register_model

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
BEST = "best.ckpt"

TASKS = {"tokenizer": "tokenizer", "mim": "masked image modeling pre-training", "classify": "classification",
         "segment": "segmentation"}


@dataclass
class RunResult:
    """What a finished job produced (on global rank 0; other ranks get ``model_dir``/``model_id`` None)."""

    job: str
    run_dir: Path
    global_step: int
    epochs: int
    best: dict[str, Any] | None = None
    model_dir: Path | None = None
    model_id: str | None = None
    notices: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- run folder and resume


def world_size_hint(cfg: dict[str, Any]) -> int:
    """Processes this job will run as, as far as can be told before the Trainer starts: a launcher's
    ``WORLD_SIZE``, else ``num_nodes`` x an explicit device count/list (``auto`` counts as 1)."""
    env = int(os.environ.get("WORLD_SIZE", "1") or 1)
    dev = cfg.get("devices", "auto")
    if isinstance(dev, int):
        per_node = max(dev, 1)
    elif isinstance(dev, str) and "," in dev:
        per_node = len([p for p in dev.split(",") if p.strip()])
    else:
        per_node = 1
    return max(env, int(cfg.get("num_nodes") or 1) * per_node)


#: Set by the launching process to the auto-created run folder, so that processes Lightning starts for the other
#: devices (they inherit the environment) use the same folder.
RUN_DIR_ENV = "PUMIT_TRAIN_RUN_DIR"


def global_rank_hint() -> int:
    """This process's global rank as launchers announce it (torchrun ``RANK``, SLURM ``SLURM_PROCID``, Lightning's
    own ``NODE_RANK``/``LOCAL_RANK``); 0 for a single process. Used before the Trainer exists."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").strip().isdigit():
            return int(os.environ[var])
    return int(os.environ.get("NODE_RANK", "0") or 0) + int(os.environ.get("LOCAL_RANK", "0") or 0)


def resolve_run_dir(job: str, cfg: dict[str, Any]) -> tuple[Path, bool]:
    """``(run folder, auto_created)``: ``--output``, else a new ``$PUMIT_HOME/runs/JOB-NAME-TIMESTAMP``."""
    if cfg.get("output"):
        return Path(cfg["output"]).expanduser().resolve(), False
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV]), True
    external = any(int(os.environ.get(v, "1") or 1) > 1 for v in ("WORLD_SIZE", "SLURM_NTASKS"))
    if int(cfg.get("num_nodes") or 1) > 1 or external or global_rank_hint() > 0:
        # processes started by torchrun / srun cannot agree on a new folder name: they need the same --output
        raise InputError("multi-node or torchrun/srun-launched training needs --output DIR (the same folder for "
                         "every process)")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = user_data_dir() / "runs" / f"{job}-{cfg.get('name') or 'model'}-{stamp}"
    d, n = base, 1
    while d.exists():
        d, n = base.with_name(f"{base.name}-{n}"), n + 1
    os.environ[RUN_DIR_ENV] = str(d)
    return d, True


def find_resume_checkpoint(run_dir: Path, resume: str) -> Path | None:
    """The checkpoint to continue from, per ``--resume`` (``auto`` | ``never`` | a path).

    Temporary files of checkpoint writes that a killed run left behind (``.NAME.ckpt.*.tmp``) are removed:
    the checkpoints they were meant to replace are intact, as writes are atomic.
    """
    ckpt_dir = run_dir / CHECKPOINT_DIR
    removed = clean_stale_temps(ckpt_dir)
    for stale in ckpt_dir.glob(".*.ckpt.*.tmp"):  # older names without the writer's process id
        removed.append((stale, stale.stat().st_size))
        stale.unlink(missing_ok=True)
    if removed and global_rank_hint() == 0:
        print(f"pumit: note: {describe_removed(removed)}", file=sys.stderr, flush=True)
    candidates = [p for p in [ckpt_dir / LAST, *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    if resume not in ("auto", "never"):
        p = Path(resume).expanduser()
        if not p.is_file():
            raise InputError(f"--resume checkpoint not found: {p}")
        return p
    if resume == "never":
        if candidates:
            raise InputError(f"{run_dir} already has checkpoints ({candidates[0].name}); use --resume auto to continue "
                             "it or choose another --output")
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def inspect_checkpoint(path: Path, module: pl.LightningModule | None = None) -> tuple[int, int]:
    """``(epoch, global_step)`` of a checkpoint to resume from, after checking that it loads with
    ``torch.load(weights_only=True)`` (nothing but tensors and plain values is ever unpickled) and, given
    ``module``, that its weights fit it (names and shapes).

    Raises :class:`~pumit.errors.ModelError` (exit 3) in one line for a pickle with other objects (never
    executed), a truncated or corrupt file, a file that is not a Lightning checkpoint, or weights of
    another model or job.
    """
    import pickle
    import zipfile

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        raise ModelError(f"checkpoint {path} holds objects other than tensors and plain values; it is not loaded "
                         "(it is never unpickled); resume only from checkpoints of your own pumit runs") from None
    except (EOFError, RuntimeError, OSError, ValueError, zipfile.BadZipFile, AttributeError, ImportError):
        raise ModelError(f"checkpoint {path} is truncated or corrupt; delete it to start over, or resume from another "
                         "checkpoint") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict) or "global_step" not in ckpt:
        raise ModelError(f"{path} is not a checkpoint of 'pumit train' (no state_dict/global_step)")
    if module is not None:
        own = module.state_dict()
        theirs = ckpt["state_dict"]
        bad = sorted(set(own) ^ set(theirs)) + sorted(k for k in set(own) & set(theirs)
                                                      if tuple(own[k].shape) != tuple(getattr(theirs[k], "shape", ())))
        if bad:
            raise ModelError(f"checkpoint {path} is of another model or job: {len(bad)} weight(s) do not match "
                             f"(e.g. {bad[0]}); use the options it was trained with, or another --output")
    return int(ckpt.get("epoch", 0)), int(ckpt["global_step"])


def _read_run_json(run_dir: Path) -> dict[str, Any]:
    p = run_dir / "run.json"
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _write_run_json(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2, default=str))


# ---------------------------------------------------------------------- building


def build_job(job: str, cfg: dict[str, Any], run_dir: Path, notices: list[str]) -> tuple[pl.LightningModule, Any]:
    """The job's ``(LightningModule, LightningDataModule)``; the data is prepared (validated) first."""
    data_dir = run_dir / "data"
    if job == "tokenizer":
        from pumit.training.datamodules import PretrainDataModule
        from pumit.training.tokenizer import TokenizerModule

        dm = PretrainDataModule(cfg, data_dir)
        dm.prepare()
        module = TokenizerModule(cfg)
        dm.set_patch(module.tokenizer.total_stride)
        return module, dm
    if job == "mim":
        from pumit.training.datamodules import PretrainDataModule
        from pumit.training.mim import MIMModule

        dm = PretrainDataModule(cfg, data_dir)
        dm.prepare()
        module = MIMModule(cfg)
        dm.set_patch(module.mim.config.patch_size)
        return module, dm
    if job == "classify":
        from pumit.training.classification import ClassificationModule
        from pumit.training.datamodules import ClassificationDataModule

        dm = ClassificationDataModule(cfg, data_dir)
        dm.prepare()
        names = [str(i) for i in range(dm.num_classes)]
        return ClassificationModule(cfg, dm.num_classes, dm.in_channels, names), dm
    if job == "segment":
        from pumit.training.common import load_base_model
        from pumit.training.datamodules import SegmentationDataModule
        from pumit.training.segmentation import SegmentationModule

        base_spacing = base_scheme = base = None
        if cfg.get("base_model"):  # a base segmentation model fixes the spacing and normalization (unless overridden)
            base = load_base_model(cfg["base_model"], ("segmentation", "vit", "mim"), cfg.get("store"))
            meta = getattr(base, "meta", {}) or {}
            if base.model_type == "segmentation" and meta.get("spacing"):
                base_spacing = tuple(float(v) for v in meta["spacing"])
            if base.model_type == "segmentation" and isinstance(meta.get("normalization"), dict):
                base_scheme = meta["normalization"].get("scheme")
        dm = SegmentationDataModule(cfg, data_dir)
        dm.prepare(base_spacing=base_spacing, base_intensity=base_scheme)  # type: ignore[arg-type]
        module = SegmentationModule(cfg, dm.labels, dm.target_spacing, dm.in_channels, notices=notices,
                                    median_shape=dm.median_shape, base=base)
        dm.set_roi(module.roi)
        return module, dm
    raise InputError(f"unknown training job {job!r}")


def _strategy(cfg: dict[str, Any], module: pl.LightningModule) -> Any:
    name = cfg.get("strategy", "auto")
    find_unused = bool(getattr(module, "ddp_find_unused_parameters", True))
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        from pumit.models.vit import Block

        return FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full")
    all_gpus = (str(cfg.get("devices", "auto")) in ("auto", "-1") and cfg.get("accelerator", "auto") in ("auto", "gpu", "cuda")
                and torch.cuda.is_available() and torch.cuda.device_count() > 1)
    if name == "ddp" or (name == "auto" and (world_size_hint(cfg) > 1 or all_gpus)):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=find_unused)
    return "auto"


def build_trainer(cfg: dict[str, Any], run_dir: Path, module: pl.LightningModule, *, has_val: bool,
                  reporter: ProgressReporter | None = None) -> tuple[pl.Trainer, PeriodicCheckpoint, ModelCheckpoint | None]:
    """The Trainer with checkpoints (last + best), CSV + TensorBoard loggers and the progress display.

    Returns ``(trainer, last_checkpoint_callback, best_checkpoint_callback or None)``.
    """
    ckpt_dir = run_dir / CHECKPOINT_DIR
    last_cb = PeriodicCheckpoint(ckpt_dir / LAST, every_n_steps=int(cfg.get("checkpoint_every_n_steps") or 0),
                                 every_minutes=float(cfg.get("checkpoint_every_minutes", 10.0) or 0.0))
    callbacks: list[pl.Callback] = [last_cb, LearningRateMonitor(logging_interval="step")]
    best_cb = None
    monitor, mode = getattr(module, "monitor", (None, "min"))
    if has_val and monitor:
        best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                                  save_last=False, auto_insert_metric_name=False, enable_version_counter=False,
                                  save_on_train_epoch_end=False)
        callbacks.append(best_cb)
    progress = cfg.get("progress", "bar")
    if progress == "bar":
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    elif progress == "jsonl" and reporter is not None:
        callbacks.append(JsonlProgress(reporter, monitor=monitor))
    loggers = build_loggers(run_dir / "logs")  # CSV, + TensorBoard when installed
    manual = not module.automatic_optimization
    accelerator = {"cuda": "gpu"}.get(cfg.get("accelerator", "auto"), cfg.get("accelerator", "auto"))
    trainer = pl.Trainer(
        default_root_dir=run_dir,
        accelerator=accelerator,
        devices=cfg.get("devices", "auto"),
        num_nodes=int(cfg.get("num_nodes", 1)),
        strategy=_strategy(cfg, module),
        precision=cfg.get("precision", "32"),
        max_steps=int(cfg.get("max_steps", -1)),
        max_epochs=cfg.get("max_epochs"),
        accumulate_grad_batches=1 if manual else int(cfg.get("accumulate_grad_batches", 1)),
        gradient_clip_val=None if manual or not cfg.get("gradient_clip_val") else float(cfg["gradient_clip_val"]),
        limit_train_batches=cfg.get("limit_train_batches", 1.0),
        limit_val_batches=cfg.get("limit_val_batches", 1.0) if has_val else 0,
        val_check_interval=cfg.get("val_check_interval", 1.0),
        check_val_every_n_epoch=cfg.get("check_val_every_n_epoch", 1),
        num_sanity_val_steps=int(cfg.get("num_sanity_val_steps", 2)) if has_val else 0,
        log_every_n_steps=int(cfg.get("log_every_n_steps", 10)),
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress == "bar",
        use_distributed_sampler=False,  # DABatchSampler splits the data across ranks itself
    )
    return trainer, last_cb, best_cb


# ---------------------------------------------------------------------- export


def _model_meta(job: str, cfg: dict[str, Any], module: pl.LightningModule, dm: Any, trainer: pl.Trainer,
                best: dict[str, Any] | None, version: str) -> dict[str, Any]:
    name = cfg.get("name") or f"pumit-{job}"
    meta: dict[str, Any] = {"name": name, "version": version, "task": TASKS[job],
                            "description": f"pumit train {job}"}
    training = {"job": job, "steps": int(trainer.global_step), "epochs": int(trainer.current_epoch),
                "best_metric": best, "base_model": cfg.get("base_model"), "data": dm.summary(),
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}}
    if job == "mim":
        training["tokenizer"] = cfg.get("tokenizer")
    intensity, by_modality = None, {}
    if dm.records:
        from pumit.training.datamodules import common_intensity, intensity_by_modality

        intensity, by_modality = common_intensity(dm.records), intensity_by_modality(dm.records)
    model = module.model
    if job == "segment":
        from pumit.spacing import is_planar, required_divisor

        sp = list(dm.target_spacing)
        meta.update(labels=dict(module.labels), normalization=dm.intensity, spacing=sp)
        planar = is_planar(dm.target_spacing)
        meta["input"] = {"channels": dm.in_channels, "modality": dm.modality, "spacing": sp,
                         # inputs outside this range are resampled by `pumit segment` (the model saw only `spacing`)
                         "spacing_range_mm": None if planar else [[round(0.8 * v, 6), round(1.25 * v, 6)] for v in sp],
                         "normalization": dm.intensity, "roi": list(module.roi),
                         "divisor": list(required_divisor(dm.target_spacing, model.total_stride)),
                         "sw_overlap": float(cfg.get("sw_overlap", 0.5))}
    elif job == "classify":
        names = list(module.class_names)
        meta.update(class_names=names, labels={str(i): n for i, n in enumerate(names)}, normalization=intensity)
        sp = dm.records[0].spacing if dm.records else None
        meta["input"] = {"channels": dm.in_channels, "size": list(module.input_size), "normalization": intensity,
                         "spacing": list(sp) if sp else None, "modality": dm.records[0].modality if dm.records else None}
        training["class_counts"] = {str(k): v for k, v in sorted(getattr(dm, "class_counts", {}).items())}
    else:
        meta["normalization"] = intensity
        meta["input"] = {"channels": int(getattr(model.config, "in_channels", 1)), "normalization": intensity,
                         "crop_tokens": list(cfg.get("crop_tokens", ())), "patch": dm.patch}
        if by_modality:  # several modalities: `pumit reconstruct --modality` (or the DICOM tag) picks the spec
            meta["input"]["normalization_by_modality"] = by_modality
    from pumit.imageio import CANONICAL_ORIENTATION

    # the data were read in the canonical orientation (pumit.imageio.plan_layout); inference does the same
    meta["input"]["orientation"] = CANONICAL_ORIENTATION
    meta["training"] = training
    return meta


def _load_best_weights(module: pl.LightningModule, best_path: str | None) -> None:
    if best_path and Path(best_path).is_file():
        ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"])


# ---------------------------------------------------------------------- the job


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool):
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def _sigint_cancels():
    """Ctrl+C raises :class:`CancelledError` (exit 130) instead of Lightning's ``sys.exit(1)``."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise CancelledError("cancelled")

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def run_job(job: str, cfg: dict[str, Any], *, stdout: IO[str] | None = None) -> RunResult:
    """Run ``pumit train JOB`` with the resolved options ``cfg`` (see :mod:`pumit.training.options`).

    Raises :class:`~pumit.errors.InputError` (bad data/options, before training), :class:`ModelError` (base
    model), :class:`ResourceError` (out of memory, naming the knobs), :class:`CancelledError`.
    """
    out_stream = stdout if stdout is not None else sys.stdout
    reporter = ProgressReporter(cfg.get("progress", "bar") if global_rank_hint() == 0 else "none", out_stream)
    run_dir, auto_dir = resolve_run_dir(job, cfg)
    previous = _read_run_json(run_dir)
    if previous.get("job") and previous["job"] != job:
        raise InputError(f"{run_dir} is a '{previous['job']}' run; choose another --output for 'pumit train {job}'")
    ckpt = find_resume_checkpoint(run_dir, str(cfg.get("resume", "auto")))
    if ckpt is not None:
        inspect_checkpoint(ckpt)  # a corrupt or unsafe checkpoint fails before any data preparation
    notices: list[str] = []
    if ckpt is not None and job == "segment":
        _keep_decoder_of_older_run(cfg, previous, notices)
    cancelled = False
    try:
        with _stdout_to_stderr(cfg.get("progress") == "jsonl"), _sigint_cancels():  # stdout: JSON lines only
            result = _run(job, cfg, run_dir, ckpt, reporter, previous, notices)
    except CancelledError:
        cancelled = True
        raise
    except PumitError:
        raise
    except BaseException as e:
        if is_oom(e):
            raise oom_error(e) from e
        raise
    finally:
        if auto_dir:
            os.environ.pop(RUN_DIR_ENV, None)
        if cancelled and auto_dir and run_dir.exists() and global_rank_hint() == 0:
            shutil.rmtree(run_dir, ignore_errors=True)  # a fresh auto-named run cannot be resumed anyway
    return result


def _keep_decoder_of_older_run(cfg: dict[str, Any], previous: dict[str, Any], notices: list[str]) -> None:
    """A segmentation run started before the ``decoder`` option existed has the U-Net decoder in its
    checkpoints; resume it with that decoder instead of today's default (which could not load them)."""
    launches = previous.get("launches") or []
    first = launches[0].get("config", {}) if launches and isinstance(launches[0], dict) else {}
    if first and "decoder" not in first and cfg.get("decoder") != "unet":
        cfg["decoder"] = "unet"
        notices.append("this run was started before the 'decoder' option existed: resuming it with its U-Net decoder")


def _run(job: str, cfg: dict[str, Any], run_dir: Path, ckpt: Path | None, reporter: ProgressReporter,
         previous: dict[str, Any], notices: list[str]) -> RunResult:
    rank = global_rank_hint()
    run_dir.mkdir(parents=True, exist_ok=True)
    reporter.emit("prepare", 0.0, "checking and preparing the data")
    pl.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)
    t0 = time.monotonic()
    module, dm = build_job(job, cfg, run_dir, notices)
    for n in notices:
        print(f"pumit: note: {n}", file=sys.stderr, flush=True)
        reporter.emit("prepare", 0.04, f"note: {n}")
    reporter.emit("prepare", 0.05, f"data ready in {time.monotonic() - t0:.0f} s: {dm.summary()['counts']}")
    if rank == 0:
        launches = list(previous.get("launches", []))
        launches.append({"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "resumed_from": str(ckpt) if ckpt else None,
                         "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}})
        _write_run_json(run_dir, {**previous, "job": job, "launches": launches})
    try:
        trainer, _last_cb, best_cb = build_trainer(cfg, run_dir, module, has_val=dm.has_val, reporter=reporter)
    except MisconfigurationException as e:  # e.g. --device cuda without a GPU, unsupported precision
        raise InputError(f"invalid training options: {e}") from e
    if ckpt is not None:
        epoch, step = inspect_checkpoint(ckpt, module)
        print(f"pumit: resuming from {ckpt} (epoch {epoch}, step {step})", file=sys.stderr, flush=True)
        reporter.emit("prepare", 0.05, f"resuming from {ckpt.name} at epoch {epoch}, step {step}", step=step)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    except MisconfigurationException as e:
        raise InputError(f"invalid training options: {e}") from e
    except BaseException as e:
        if is_oom(e):
            raise oom_error(e) from e
        raise
    if trainer.interrupted:
        raise CancelledError("training was interrupted")
    # the final state, so that a restart of a finished run does not repeat its last steps
    trainer.save_checkpoint(run_dir / CHECKPOINT_DIR / LAST, weights_only=False)
    best = None
    if best_cb is not None and best_cb.best_model_score is not None:
        best = {"name": best_cb.monitor, "value": float(best_cb.best_model_score), "mode": best_cb.mode}
    result = RunResult(job, run_dir, int(trainer.global_step), int(trainer.current_epoch), best, notices=notices)
    if job == "classify" and dm.has_test:  # test metrics of the best checkpoint (all ranks take part)
        reporter.emit("test", TRAIN_END, "evaluating the best checkpoint on the test split")
        best_path = best_cb.best_model_path if best_cb is not None and best_cb.best_model_path else None
        metrics = trainer.test(module, datamodule=dm, ckpt_path=best_path, weights_only=True, verbose=False)
        if metrics:
            result.best = {**(best or {}), "test": {k: float(v) for k, v in metrics[0].items()}}
    if not trainer.is_global_zero:
        return result

    exports = list(_read_run_json(run_dir).get("exports", []))
    done_before = next((e for e in exports if e.get("step") == result.global_step and
                        e.get("best") == (best_cb.best_model_path if best_cb else None)), None)
    if done_before and Path(done_before["model_dir"]).is_dir():  # restart of a finished run: nothing new to export
        result.model_dir = Path(done_before["model_dir"])
        result.model_id = done_before.get("model_id")
        reporter.emit("export", TRAIN_END, f"already exported at step {result.global_step}: {result.model_dir}")
    else:
        reporter.emit("export", TRAIN_END, "exporting the model")
        _load_best_weights(module, best_cb.best_model_path if best_cb else None)
        name = cfg.get("name") or f"pumit-{job}"
        register = bool(cfg.get("register", True)) and bool(cfg.get("name"))
        version = next_version(name, cfg.get("store")) if register else "1.0.0"
        meta = _model_meta(job, cfg, module, dm, trainer, result.best, version)
        result.model_dir = export_model(module.model, run_dir, meta)
        if register:
            reporter.emit("register", 0.97, f"registering {name} in the model store")
            entry = register_model(result.model_dir, name, cfg.get("store"))
            result.model_id = entry.id
        exports.append({"step": result.global_step, "best": best_cb.best_model_path if best_cb else None,
                        "model_dir": str(result.model_dir), "model_id": result.model_id,
                        "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        _write_run_json(run_dir, {**_read_run_json(run_dir), "job": job, "exports": exports})
    msg = f"trained {result.global_step} steps; model {result.model_id or result.model_dir}"
    reporter.emit("done", 1.0, msg, model_id=result.model_id, model_path=str(result.model_dir),
                  run_dir=str(run_dir), steps=result.global_step, best=result.best)
    return result
