"""Pieces shared by the training jobs: batch spacing, the AdamW + warm-up + cosine schedule, model
loading for fine-tuning, and the translation of out-of-memory failures into :class:`ResourceError`.

Batches follow the data pipeline's collate: ``image (B, C, D, H, W)``, ``spacing (B, 3)`` in mm
``(thickness, H, W)``, ``modality (B,)`` integer ids, ``da (B,)`` and, where present, ``label``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from pumit.errors import InputError, ModelError, ResourceError
from pumit.spacing import Spacing, as_spacing, degree_of_anisotropy

#: The knobs named by the out-of-memory message.
OOM_HINT = (
    "reduce --batch-size, reduce the crop size (--crop-size / --roi), use --precision bf16-mixed (or 16-mixed "
    "on GPUs without bf16), trade batch size for --accumulate-grad-batches N, or enable --grad-checkpointing"
)


def batch_spacing(spacing: torch.Tensor | Iterable[float]) -> Spacing:
    """One spacing for a whole batch: the element-wise median of ``spacing (B, 3)`` (or a single ``(3,)``).

    The networks take one spacing per batch (it decides the SAC depth strides), so every sample must
    have the same degree of anisotropy, clipped at :data:`~pumit.spacing.MAX_BUCKET_DA` as the DA-bucketed
    sampler groups them (beyond it, e.g. 2D images of different pixel sizes, every stride of a network
    downsampling up to 32× in-plane is the same). A mixed batch raises :class:`InputError`.
    """
    s = torch.as_tensor(spacing, dtype=torch.float64).detach().cpu()
    if s.ndim == 1:
        return as_spacing(s)
    if s.ndim != 2 or s.shape[1] != 3:
        raise InputError(f"batch spacing must have shape (B, 3), got {tuple(s.shape)}")
    das = {degree_of_anisotropy(row) for row in s}
    if len(das) > 1:
        raise InputError(
            f"a batch mixes degrees of anisotropy {sorted(das)} (spacings {s.tolist()}); batches must be drawn "
            "with the DA-bucketed sampler so that one spacing describes them"
        )
    return as_spacing(s.median(dim=0).values)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up ``0 → 1`` over ``warmup_steps``, then cosine ``1 → min_ratio`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: no weight decay for biases, norms, tokens and embeddings (1-D params, ``*_token``,
    ``pos_embed``)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("_token", "pos_embed", "q_bias", "v_bias")):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def adamw_warmup_cosine(
    params: Iterable[Any] | nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float,
) -> tuple[torch.optim.Optimizer, dict[str, Any]]:
    """AdamW and a per-step :class:`LambdaLR` (linear warm-up + cosine), as Lightning's scheduler config dict."""
    if isinstance(params, nn.Module):
        params = param_groups(params, weight_decay)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)
    total = max(int(total_steps), 1)
    warm = min(int(warmup_steps), max(total - 1, 0))
    sched = LambdaLR(opt, lambda step: warmup_cosine(step, warm, total, min_lr_ratio))
    return opt, {"scheduler": sched, "interval": "step", "frequency": 1, "name": "lr"}


def total_optimizer_steps(trainer: Any, accumulate: int = 1, fallback: int = 10_000) -> int:
    """Optimizer steps of the whole run (the length of the cosine schedule), from the Trainer's limits.

    With automatic optimization this is ``trainer.estimated_stepping_batches``. Jobs with manual optimization
    that accumulate ``accumulate`` batches themselves (the Trainer sees ``accumulate_grad_batches=1``) get
    ``min(max_steps, batches per epoch x max_epochs / accumulate)``.
    """
    est = float(trainer.estimated_stepping_batches)  # also sets up the training data (num_training_batches)
    if accumulate <= 1:
        return max(int(est), 1) if math.isfinite(est) else fallback
    by_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else math.inf
    batches = float(trainer.num_training_batches)
    epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
    by_epochs = batches * epochs / accumulate if epochs and math.isfinite(batches) else math.inf
    total = min(by_steps, by_epochs)
    return max(int(total), 1) if math.isfinite(total) else fallback


def is_oom(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU out-of-memory errors (also when wrapped as another error's cause)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, torch.OutOfMemoryError | MemoryError):
            return True
        text = str(e).lower()
        if isinstance(e, RuntimeError) and (
            "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


def oom_error(exc: BaseException, where: str = "training") -> ResourceError:
    """A :class:`ResourceError` (exit code 4) naming the knobs that reduce memory."""
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return ResourceError(f"out of memory during {where} ({first}); to fit: {OOM_HINT}")


def load_base_model(id_or_path: str, expected: tuple[str, ...], store_root: str | None = None) -> nn.Module:
    """Load a model folder/file or a store id (``NAME`` or ``NAME-vX.Y.Z``) of one of the ``expected`` types.

    Raises :class:`ModelError` (exit 3) for an unknown id or a model of another type.
    """
    from pumit.models import load_pretrained
    from pumit.store import ModelStore

    p = Path(id_or_path).expanduser()
    path = p if p.exists() else ModelStore(store_root).resolve(str(id_or_path))
    model = load_pretrained(path, expected)
    model.meta = dict(getattr(model, "meta", {}) or {})  # type: ignore[attr-defined]
    model.meta.setdefault("source_path", str(path))  # type: ignore[attr-defined]
    return model.train()


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The SPAD-ViT backbone weights of a ``vit``/``mim``/``classification``/``segmentation`` model."""
    mtype = getattr(model, "model_type", None)
    if mtype == "vit":
        return model.state_dict()
    vit = getattr(model, "vit", None)
    if vit is None:
        raise ModelError(f"a {mtype} model has no SPAD-ViT backbone to fine-tune")
    return vit.state_dict()


def freeze(module: nn.Module) -> nn.Module:
    """``requires_grad_(False)`` and eval mode."""
    module.requires_grad_(False)
    return module.eval()
