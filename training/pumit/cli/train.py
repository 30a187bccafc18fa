"""``pumit train tokenizer|mim|classify|segment``: training jobs on PyTorch Lightning.

Options come from YAML configs (the packaged ``pumit/configs/JOB.yaml``, then ``--config FILE.yaml``) and are
overridden by flags of the same name (``max_steps: 100`` ↔ ``--max-steps 100``); ``pumit train JOB --help``
lists every option with its current default. See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import textwrap

from pumit.errors import InputError
from pumit.training.options import JOB_HELP, JOBS, add_job_arguments, config_from_args, default_config_path

#: Top-level modules of the ``train`` extra (``pip install 'pumit[train]'``).
TRAIN_EXTRA = ("lightning", "lightning_fabric", "torchmetrics", "tensorboard")

_DESCRIPTION = """Train or fine-tune PUMIT models with PyTorch Lightning (single device, multi-GPU DDP/FSDP,
multi-node via torchrun or SLURM srun). Every run writes checkpoints, CSV + TensorBoard logs and the exported
model into its run folder (--output); restarting the same command with the same --output resumes from
OUTPUT/checkpoints/last.ckpt. Trained models are exported with safetensors and registered into the model
store as the next version of --name (existing versions are never overwritten)."""

_EPILOG = """exit codes: 0 success, 1 internal error, 2 bad data or option (checked before training: label geometry,
undeclared label values, missing files), 3 model problem (unknown --base-model, wrong model type),
4 out of memory (the message names the knobs), 130 cancelled"""

_JOB_EXAMPLES = {
    "tokenizer": "pumit train tokenizer --data /data/processed/manifest.jsonl --output runs/tok --name my-tokenizer",
    "mim": "pumit train mim --data /data/processed/manifest.jsonl --tokenizer my-tokenizer --output runs/mim "
           "--name my-vit --devices 4 --precision bf16-mixed",
    "classify": "pumit train classify --data adrenalmnist3d.npz --base-model my-vit --output runs/adrenal "
                "--name adrenal-cls --max-epochs 100",
    "segment": "pumit train segment --data Task04_Hippocampus --base-model my-vit --name hippo-seg --epochs 50 "
               "--progress jsonl",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pumit train`` and its four jobs."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("train", help="train the tokenizer, pre-train SPAD-ViT (MIM), fine-tune classifiers "
                              "and segmenters", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=fmt)
    sub = p.add_subparsers(dest="train_job", metavar="JOB")
    sub.required = True
    for job in JOBS:
        desc = (f"{JOB_HELP[job][0].upper()}{JOB_HELP[job][1:]}.\n\nDefaults: {default_config_path(job)} "
                f"(YAML keys = option names with '_'); --config FILE.yaml is applied over it and flags override both.\n\nexample:\n  {_JOB_EXAMPLES[job]}")
        q = sub.add_parser(job, help=JOB_HELP[job], description=desc, epilog=_EPILOG, formatter_class=fmt)
        add_job_arguments(q, job)
        q.set_defaults(func=functools.partial(cmd_train, job))


def cmd_train(job: str, args: argparse.Namespace) -> int:
    """Run one training job; prints the exported model (id and folder) at the end."""
    try:
        from pumit.training.run import run_job  # Lightning is imported only when training
    except ImportError as e:
        missing = (e.name or "").split(".")[0]
        if missing in TRAIN_EXTRA:
            raise InputError(f"'pumit train' needs the training extra ({missing} is not installed); install it with: "
                             "pip install 'pumit[train]'") from None
        raise

    cfg = config_from_args(job, args)
    result = run_job(job, cfg)
    if cfg.get("progress") != "jsonl" and result.model_dir is not None:
        lines = [f"run folder: {result.run_dir}", f"steps: {result.global_step}"]
        if result.best:
            lines.append(f"best {result.best.get('name')}: {result.best.get('value')}")
        lines.append(f"model folder: {result.model_dir}")
        if result.model_id:
            lines.append(f"registered model: {result.model_id}")
        print("\n".join(textwrap.shorten(ln, 300) for ln in lines), file=sys.stdout, flush=True)
    return 0
