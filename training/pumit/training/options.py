"""Options of ``pumit train JOB``: one schema drives the YAML configs, argparse and ``--help``.

Every option is an :class:`Option` with a YAML key (``max_steps``) and a flag (``--max-steps``). A job's
value of an option is, in increasing precedence:

1. the schema's fallback default (:attr:`Option.default`),
2. the packaged default config ``pumit/configs/JOB.yaml``,
3. the file given with ``--config FILE.yaml`` (only the keys it sets),
4. command-line flags.

YAML files are flat mappings ``key: value`` of the keys listed by ``pumit train JOB --help``; an unknown
key is an :class:`~pumit.errors.InputError` naming the file and the key.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pumit.errors import InputError

JOBS: tuple[str, ...] = ("tokenizer", "mim", "classify", "segment")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


# ---------------------------------------------------------------------- value parsers


def _none_or(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "null")):
            return None
        return conv(v)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def to_bool(v: Any) -> bool:
    """``true/false/yes/no/1/0/on/off`` (any case) or a bool."""
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def to_int_list(v: Any) -> tuple[int, ...]:
    """``"32,64,64"``, ``"32 64 64"`` or a YAML list → a tuple of ints."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return (int(v),)
    items = v if isinstance(v, list | tuple) else str(v).replace(",", " ").split()
    return tuple(int(x) for x in items)


def to_float_list(v: Any) -> tuple[float, ...]:
    """``"0.9,0.999"`` or a YAML list → a tuple of floats."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return (float(v),)
    items = v if isinstance(v, list | tuple) else str(v).replace(",", " ").split()
    return tuple(float(x) for x in items)


def to_str_list(v: Any) -> tuple[str, ...]:
    """``"a,b"`` or a YAML list → a tuple of strings."""
    items = v if isinstance(v, list | tuple) else str(v).split(",")
    return tuple(str(x).strip() for x in items if str(x).strip())


def to_number(v: Any) -> int | float:
    """An int when integral text/number, else a float (Lightning's ``val_check_interval`` semantics)."""
    if isinstance(v, bool):
        raise ValueError("not a number")
    if isinstance(v, int):
        return v
    f = float(v)
    return int(f) if isinstance(v, str) and f.is_integer() and "." not in v else f


def to_devices(v: Any) -> int | str:
    """``auto``, a device count (``2``) or an index list (``"0,1"``), as Lightning's ``devices``."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    s = str(v).strip()
    if s.lower() == "auto":
        return "auto"
    if s.lstrip("-").isdigit():
        return int(s)
    if all(p.strip().isdigit() for p in s.split(",") if p.strip()):
        return s
    raise ValueError(f"devices must be 'auto', a count or an index list like 0,1: {v!r}")


NoneOrInt = _none_or(int)
NoneOrFloat = _none_or(float)
NoneOrStr = _none_or(str)
NoneOrIntList = _none_or(to_int_list)
NoneOrFloatList = _none_or(to_float_list)


@dataclass(frozen=True)
class Option:
    """One option: YAML ``key``, flag ``--key-with-dashes`` (+ ``aliases``), value parser and help text."""

    key: str
    parse: Callable[[Any], Any]
    help: str
    default: Any = None
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    aliases: tuple[str, ...] = ()
    group: str = "training"

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def convert(self, value: Any, where: str) -> Any:
        try:
            out = self.parse(value)
        except (TypeError, ValueError) as e:
            raise InputError(f"{where}: bad value {value!r} for {self.key} ({e})") from None
        if self.choices is not None and out not in self.choices:
            raise InputError(f"{where}: {self.key} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        return out


def _opt(key: str, parse: Callable[[Any], Any], help: str, default: Any = None, **kw: Any) -> Option:
    return Option(key, parse, help, default, **kw)


# ---------------------------------------------------------------------- the schema

_RUN = [
    _opt("output", NoneOrStr, "run folder: checkpoints/, logs/, exported model/. Restarting the same command with the "
         "same --output resumes from OUTPUT/checkpoints/last.ckpt. Default: a new folder "
         "$PUMIT_HOME/runs/JOB-NAME-TIMESTAMP (a fresh run each time)", metavar="DIR", group="run"),
    _opt("resume", str, "'auto': continue from OUTPUT/checkpoints/last.ckpt when it exists; 'never': refuse to "
         "reuse a folder that has checkpoints; or a path to a .ckpt of this job", "auto", metavar="auto|never|CKPT",
         group="run"),
    _opt("name", NoneOrStr, "name of the exported model (store ids are NAME-vX.Y.Z; the version is the next free one)",
         metavar="NAME", group="run"),
    _opt("register", to_bool, "register the exported model into the model store as the next version of --name",
         True, metavar="BOOL", group="run"),
    _opt("store", NoneOrStr, "model store folder (default $PUMIT_HOME/models, else the platform user data folder)",
         metavar="DIR", group="run"),
    _opt("progress", str, "'bar': TQDM progress bars; 'jsonl': one JSON object per stdout line "
         "{stage, fraction, message, epoch, ...} for programs (3D Slicer), everything else on stderr; 'none'",
         "bar", choices=("bar", "jsonl", "none"), group="run"),
    _opt("seed", int, "random seed (weights, crops, masks, data order)", 0, group="run"),
]

_SCALE = [
    _opt("accelerator", str, "hardware: auto, cpu, gpu (cuda), mps", "auto",
         choices=("auto", "cpu", "gpu", "cuda", "mps"), aliases=("--device",), group="scale"),
    _opt("devices", to_devices, "devices per node: auto, a count, or an index list such as 0,1", "auto",
         metavar="N|auto|LIST", group="scale"),
    _opt("num_nodes", int, "number of nodes (multi-node: launch with torchrun or srun; see docs/training.md)", 1,
         group="scale"),
    _opt("strategy", str, "distribution strategy (auto: single device or DDP as needed; fsdp shards parameters)",
         "auto", choices=("auto", "ddp", "fsdp"), group="scale"),
    _opt("precision", str, "numeric precision", "32", choices=("32", "bf16-mixed", "16-mixed"), group="scale"),
    _opt("accumulate_grad_batches", int, "accumulate gradients over N batches before each optimizer step "
         "(effective batch = batch-size x N x devices x nodes)", 1, metavar="N", group="scale"),
    _opt("grad_checkpointing", to_bool, "recompute the ViT blocks in the backward pass (less memory, ~30%% slower; mim, classify, segment)",
         False, metavar="BOOL", group="scale"),
    _opt("max_steps", int, "stop after this many optimizer steps (-1: no step limit)", -1, metavar="N", group="scale"),
    _opt("max_epochs", NoneOrInt, "stop after this many epochs (none: no epoch limit; with max-steps -1 and no "
         "epoch limit Lightning stops at 1000 epochs)", None, metavar="N", aliases=("--epochs",), group="scale"),
    _opt("limit_train_batches", to_number, "batches per training epoch: a fraction (1.0 = all) or a count", 1.0,
         metavar="X", group="scale"),
    _opt("limit_val_batches", to_number, "batches per validation: a fraction or a count (0 disables validation)",
         1.0, metavar="X", group="scale"),
    _opt("val_check_interval", to_number, "validate every X of a training epoch (fraction) or every N training "
         "batches (count)", 1.0, metavar="X", group="scale"),
    _opt("check_val_every_n_epoch", NoneOrInt, "validate every N epochs (none: only by val-check-interval, "
         "which then counts batches across epochs)", 1, metavar="N", group="scale"),
    _opt("num_sanity_val_steps", int, "validation batches run before training to catch errors early (0: none)", 2,
         metavar="N", group="scale"),
    _opt("checkpoint_every_n_steps", int, "also save OUTPUT/checkpoints/last.ckpt every N optimizer steps "
         "(0: off; it is always saved at each epoch end)", 0, metavar="N", group="scale"),
    _opt("checkpoint_every_minutes", float, "also save OUTPUT/checkpoints/last.ckpt every M minutes of training "
         "(0: off), so that a kill loses little even within a long epoch", 10.0, metavar="M", group="scale"),
    _opt("log_every_n_steps", int, "log training metrics (CSV, TensorBoard) every N steps", 10, metavar="N",
         group="scale"),
    _opt("num_workers", int, "data loader worker processes per device", 2, metavar="N", group="data"),
    _opt("batch_size", int, "samples per device per step", 2, metavar="N", group="data"),
]

_OPTIM = [
    _opt("lr", float, "peak learning rate of AdamW", 1e-4, group="optimizer"),
    _opt("min_lr_ratio", float, "final learning rate of the cosine schedule as a fraction of --lr", 0.01,
         group="optimizer"),
    _opt("warmup_steps", int, "linear warm-up steps from 0 to --lr", 0, metavar="N", group="optimizer"),
    _opt("weight_decay", float, "AdamW weight decay (not applied to biases, norms, tokens)", 0.05, group="optimizer"),
    _opt("betas", to_float_list, "AdamW betas (two numbers)", (0.9, 0.999), metavar="B1,B2", group="optimizer"),
    _opt("gradient_clip_val", float, "clip the gradient norm to this value (0: no clipping)", 0.0,
         group="optimizer"),
]

_VIT = [
    _opt("preset", str, "SPAD-ViT size when not starting from --base-model", "base",
         choices=("tiny", "small", "base", "large"), group="model"),
    _opt("patch_size", NoneOrInt, "ViT patch size (power of 2; none: the preset's 16, or the tokenizer's stride "
         "for mim)", None, metavar="P", group="model"),
    _opt("embed_dim", NoneOrInt, "override the preset's width", None, metavar="N", group="model"),
    _opt("depth", NoneOrInt, "override the preset's number of blocks", None, metavar="N", group="model"),
    _opt("num_heads", NoneOrInt, "override the preset's number of heads", None, metavar="N", group="model"),
    _opt("drop_path", float, "stochastic depth rate of the ViT blocks", 0.0, group="model"),
]

_DATA_PRETRAIN = [
    _opt("data", to_str_list, "training data: processed manifests (pumit data preprocess OUTDIR/manifest.jsonl) "
         "or dataset folders/index manifests (pre-processed into OUTPUT/data first); comma-separated",
         (), metavar="PATH[,PATH]", group="data"),
    _opt("crop_tokens", to_int_list, "training crop in tokens (depth, in-plane): TZ x TXY x TXY tokens of the "
         "model's patch P, i.e. TZ*P x TXY*P x TXY*P voxels for isotropic images; the depth shrinks with the "
         "degree of anisotropy (2D images: 1 slice)", (4, 8), metavar="TZ,TXY", group="data"),
    _opt("val_fraction", float, "fraction of the training items held out for validation (when the data has no val "
         "split)", 0.02, group="data"),
]

_TOKENIZER = [
    _opt("base_model", NoneOrStr, "tokenizer (model id or folder) to continue training from; none: new weights",
         None, metavar="ID|PATH", group="model"),
    _opt("tokenizer_preset", str, "tokenizer size", "base", choices=("tiny", "small", "base"), group="model"),
    _opt("channels", NoneOrIntList, "override the encoder channels (one per downsampling)", None,
         metavar="C1,C2,...", group="model"),
    _opt("codebook_size", NoneOrInt, "override the codebook size K", None, metavar="K", group="model"),
    _opt("first_stride", NoneOrInt, "override the first downsampling's stride (total stride = first stride x "
         "2^(len(channels)-1))", None, metavar="S", group="model"),
    _opt("tokenizer_norm", str, "normalization of the conv blocks: group (GroupNorm, as published; the output "
         "depends on the window it is run in) or channel (LayerNorm over each voxel's channels: away from "
         "the window's borders, the output does not depend on it)", "group", choices=("group", "channel"), group="model"),
    _opt("perceptual", str, "perceptual network: random (frozen random VGG16), none, or a VGG16 weights file "
         "(.safetensors / .pth)", "random", metavar="random|none|FILE", group="loss"),
    _opt("l1_weight", float, "weight of the L1 reconstruction loss", 1.0, group="loss"),
    _opt("perceptual_weight", float, "weight of the perceptual loss", 1.0, group="loss"),
    _opt("gan_weight", float, "weight of the generator's adversarial loss", 3e-3, group="loss"),
    _opt("gan_threshold", float, "the GAN term is on only while max(EMA, last) discriminator loss <= this", 0.025,
         group="loss"),
    _opt("diversity_weight", float, "prior regularization: weight of KL(mean token distribution || uniform)", 1.0,
         group="loss"),
    _opt("sharpness_weight", float, "prior regularization: weight of -mean KL(token distribution || uniform)", 0.2,
         group="loss"),
    _opt("sharpness_start", int, "generator step at which the sharpness term starts (reconstruction-first warm-up)",
         0, metavar="STEP", group="loss"),
    _opt("sharpness_ramp", int, "steps over which the sharpness weight rises linearly from 0 to --sharpness-weight "
         "(0: at once)", 0, metavar="STEPS", group="loss"),
    _opt("gan_start", int, "generator step from which the discriminator trains and the GAN gate may open (after "
         "reconstruction has converged)", 0, metavar="STEP", group="loss"),
    _opt("disc_channels", to_int_list, "discriminator channels", (128, 256, 512), metavar="C1,C2,...", group="loss"),
    _opt("disc_lr", float, "discriminator learning rate", 1e-3, group="optimizer"),
]

_MIM = [
    _opt("tokenizer", NoneOrStr, "trained tokenizer (model id or folder) giving the soft-token targets (required)",
         None, metavar="ID|PATH", group="model"),
    _opt("base_model", NoneOrStr, "vit or mim model to continue from (id or folder); none: new weights",
         None, metavar="ID|PATH", group="model"),
    _opt("mask_ratio", float, "fraction of patch tokens masked per sample", 0.55, group="model"),
    _opt("target_temperature", float, "sharpen the tokenizer's token distributions for the MIM target: "
         "softmax(log p / T); 1 = the published soft tokens, < 1 sharper (for a tokenizer whose distributions are "
         "nearly uniform)", 1.0, metavar="T", group="model"),
    _opt("modality_adversary", to_bool, "Universal-Model objective: a modality discriminator behind gradient "
         "reversal, making features modality-invariant", False, metavar="BOOL", group="model"),
    _opt("modality_weight", float, "weight of the modality-adversary loss", 0.1, group="model"),
    _opt("modality_lambda", float, "gradient-reversal factor of the modality adversary", 1.0, group="model"),
    _opt("scale_classifier", to_bool, "Universal-Model objective: predict the degree-of-anisotropy bucket from "
         "the features", False, metavar="BOOL", group="model"),
    _opt("scale_weight", float, "weight of the scale-classification loss", 0.1, group="model"),
]

_CLASSIFY = [
    _opt("data", NoneOrStr, "MedMNIST-style .npz (train_/val_/test_ images and labels), a processed manifest with "
         "targets, or a dataset folder (required)", None, metavar="PATH", group="data"),
    _opt("input_size", to_int_list, "images are resized (trilinear) to this (D, H, W); must be divisible by the "
         "patch size", (64, 64, 64), metavar="D,H,W", group="data"),
    _opt("medmnist_spacing", NoneOrFloat, "voxel size (mm) of MedMNIST images (none: known per set, e.g. "
         "AdrenalMNIST3D 64 mm / 28 voxels, else 1 mm)", None, metavar="MM", group="data"),
    _opt("val_fraction", float, "fraction of the items held out for validation when the data has no val split",
         0.1, group="data"),
    _opt("base_model", NoneOrStr, "vit, mim or classification model to fine-tune (id or folder); none: from "
         "scratch", None, metavar="ID|PATH", group="model"),
    _opt("num_classes", NoneOrInt, "number of classes (none: from the data)", None, metavar="N", group="model"),
]

_SEGMENT = [
    _opt("data", NoneOrStr, "MSD-style dataset folder (imagesTr/, labelsTr/, dataset.json with labels and "
         "modality), an index manifest or a processed manifest (required)", None, metavar="DIR", group="data"),
    _opt("base_model", NoneOrStr, "segmentation model to continue fine-tuning (labels must match, else the head is "
         "re-initialised), or a vit/mim model (pre-trained backbone, new decoder); none: from scratch",
         None, metavar="ID|PATH", group="model"),
    _opt("roi", NoneOrIntList, "training crop and sliding-window size (D, H, W) in voxels, divisible by the "
         "network's divisor; none: the base segmentation model's roi, else the training cases' median size rounded "
         "to the divisor (at most 96,160,160)", None, metavar="D,H,W", group="data"),
    _opt("target_spacing", NoneOrFloatList, "resample to this spacing (mm, thickness,H,W); none: the training set's "
         "median spacing (or the base segmentation model's)", None, metavar="T,H,W", group="data"),
    _opt("intensity", NoneOrStr, "intensity scheme (ct, zscore, percentile, photo); none: from the modality",
         None, metavar="SCHEME", group="data"),
    _opt("val_fraction", float, "fraction of the cases held out for validation (at least 1)", 0.2, group="data"),
    _opt("samples_per_volume", int, "random crops drawn per training case per epoch", 4, metavar="N", group="data"),
    _opt("foreground_ratio", float, "fraction of crops centred on a foreground voxel", 0.67, group="data"),
    _opt("mirror_prob", float, "probability of mirroring a training crop along each of mirror_axes (image and "
         "label; nnU-Net uses 0.5); 0: no augmentation", 0.0, group="data"),
    _opt("mirror_axes", to_int_list, "model axes that may be mirrored: 0 = D (S-I), 1 = H (A-P), 2 = W (L-R); leave "
         "2 out when label names carry a side (Left/Right)", (0, 1, 2), metavar="A,B,...", group="data"),
    _opt("sw_overlap", float, "sliding-window overlap of validation inference", 0.5, group="data"),
    _opt("sw_batch_size", int, "windows per forward pass in sliding-window validation", 2, metavar="N",
         group="data"),
    _opt("decoder", str, "segmentation decoder: light (narrow full-resolution levels, ~10x fewer decoder FLOPs) or "
         "unet (the original U-Net decoder); see docs/benchmarks.md", "light", metavar="NAME", group="model"),
    _opt("adapter_channels", NoneOrIntList, "channels of the 4 adapter levels (none: the decoder's default, light "
         "32,64,128,256, unet 128,256,512,512)", None, metavar="C1,C2,C3,C4", group="model"),
    _opt("stem_channels", NoneOrIntList, "channels of the full-resolution conv stem levels (none: the decoder's default, "
         "light 8,16, unet 32,64)", None, metavar="C1,C2", group="model"),
    _opt("conv_levels", NoneOrInt, "light decoder: continue the conv stem into this many ViT-derived levels and add "
         "it there (0 = tokens only; none: the decoder's default, light 2, unet 0); see docs/benchmarks.md", None,
         metavar="K", group="model"),
    _opt("blocks_per_level", NoneOrInt, "light decoder: SAC conv blocks per level, the extra ones residual (none: the "
         "decoder's default, light 2); see docs/results.md", None, metavar="N", group="model"),
]

JOB_OPTIONS: dict[str, list[Option]] = {
    "tokenizer": _RUN + _SCALE + _OPTIM + _DATA_PRETRAIN + _TOKENIZER,
    "mim": _RUN + _SCALE + _OPTIM + _DATA_PRETRAIN + _VIT + _MIM,
    "classify": _RUN + _SCALE + _OPTIM + _VIT + _CLASSIFY,
    "segment": _RUN + _SCALE + _OPTIM + _VIT + _SEGMENT,
}

JOB_HELP: dict[str, str] = {
    "tokenizer": "train the universal visual tokenizer (L1 + perceptual + gated GAN + prior regularization)",
    "mim": "pre-train SPAD-ViT by masked image modeling against a frozen tokenizer's soft tokens",
    "classify": "fine-tune SPAD-ViT for classification (AUC/ACC, best-val checkpoint)",
    "segment": "fine-tune SPAD-ViT + a segmentation decoder (light by default, or U-Net) with DiceCE and sliding-window Dice",
}

GROUP_TITLES: dict[str, str] = {
    "run": "run folder, export and output",
    "scale": "devices, precision and limits (Lightning Trainer)",
    "optimizer": "optimizer: AdamW + linear warm-up + cosine",
    "data": "data",
    "model": "model",
    "loss": "loss",
    "training": "training",
}


def options(job: str) -> dict[str, Option]:
    """The options of ``job`` by key."""
    if job not in JOB_OPTIONS:
        raise InputError(f"unknown training job {job!r}; choose one of {', '.join(JOBS)}")
    return {o.key: o for o in JOB_OPTIONS[job]}


def default_config_path(job: str) -> Path:
    """The packaged default config ``pumit/configs/JOB.yaml``."""
    return CONFIG_DIR / f"{job}.yaml"


def read_yaml(path: str | os.PathLike, job: str) -> dict[str, Any]:
    """Read and validate a flat YAML config of ``job`` (unknown keys and bad values raise :class:`InputError`)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{p}: a config must be a mapping of option: value")
    opts = options(job)
    unknown = sorted(set(raw) - set(opts))
    if unknown:
        raise InputError(f"{p}: unknown option(s) for 'pumit train {job}': {', '.join(map(str, unknown))} "
                         f"(see pumit train {job} --help)")
    return {k: opts[k].convert(v, str(p)) for k, v in raw.items()}


def resolve_config(job: str, config_file: str | os.PathLike | None = None,
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full option dict of ``job``: schema defaults ← packaged YAML ← ``config_file`` ← ``overrides``."""
    opts = options(job)
    cfg = {k: o.default for k, o in opts.items()}
    packaged = default_config_path(job)
    if packaged.is_file():
        cfg.update(read_yaml(packaged, job))
    if config_file:
        cfg.update(read_yaml(config_file, job))
    for k, v in (overrides or {}).items():
        if k not in opts:
            raise InputError(f"unknown option {k!r} for 'pumit train {job}'")
        cfg[k] = opts[k].convert(v, "command line")
    return cfg


def _fmt(v: Any) -> str:
    if isinstance(v, tuple | list):
        return ",".join(map(str, v)) if v else "(none)"
    return "none" if v is None else str(v)


def add_job_arguments(parser: argparse.ArgumentParser, job: str) -> None:
    """Add ``--config`` and one flag per option; flags default to SUPPRESS so only given ones override."""
    packaged: dict[str, Any] = {}
    try:
        packaged = read_yaml(default_config_path(job), job)
    except InputError:
        packaged = {}
    parser.add_argument("--config", metavar="FILE.yaml", default=None,
                        help=f"YAML file of option: value pairs applied over the packaged "
                             f"pumit/configs/{job}.yaml (flags override both)")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for o in JOB_OPTIONS[job]:
        g = groups.get(o.group)
        if g is None:
            g = groups[o.group] = parser.add_argument_group(GROUP_TITLES.get(o.group, o.group))
        default = packaged.get(o.key, o.default)
        kw: dict[str, Any] = dict(dest=o.key, default=argparse.SUPPRESS,
                                  help=f"{o.help} [{o.key}: {_fmt(default)}]".replace("%%", "%%"))
        if o.choices is not None:
            kw["choices"] = [str(c) for c in o.choices]
            kw["metavar"] = o.metavar or "{" + ",".join(map(str, o.choices)) + "}"
        elif o.metavar:
            kw["metavar"] = o.metavar
        g.add_argument(o.flag, *o.aliases, **kw)


def config_from_args(job: str, args: argparse.Namespace) -> dict[str, Any]:
    """Merge an argparse namespace (only the flags given) over the YAML defaults."""
    given = {o.key: getattr(args, o.key) for o in JOB_OPTIONS[job] if hasattr(args, o.key)}
    return resolve_config(job, getattr(args, "config", None), given)


def check_config_keys(job: str, keys: Sequence[str]) -> list[str]:
    """Keys of a config that are not options of ``job`` (for tests and linting)."""
    opts = options(job)
    return [k for k in keys if k not in opts]
