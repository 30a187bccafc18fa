"""Segmentation fine-tuning: SPAD-ViT + adapter + SAC U-Net decoder (:class:`~pumit.models.SpadViTSegmenter`).

Training batches are random crops ``{"image": (B, C, *roi), "label": (B, *roi) int, "spacing": (B, 3)}``;
the loss is MONAI's :class:`~monai.losses.DiceCELoss` (softmax, one-hot labels, background included).

Validation runs on whole volumes, one per batch (``image (1, C, D, H, W)``, ``label (1, D, H, W)``), with
MONAI's :func:`~monai.inferers.sliding_window_inference` (window ``roi``, overlap ``sw_overlap``, Gaussian
blending). Per-class Dice (MONAI :func:`~monai.metrics.compute_dice`, background excluded, classes absent
from a case's ground truth ignored) is averaged over cases with torchmetrics ``MeanMetric`` (synchronised
across processes) and logged as ``val/dice/<label name>``; ``val/dice`` is their mean (the best-checkpoint
metric).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import compute_dice
from torch import nn
from torchmetrics import MeanMetric

from pumit.data.dataset import PAD_VALUE
from pumit.errors import InputError
from pumit.models import SegmenterConfig, SpadViTSegmenter
from pumit.spacing import Spacing, required_divisor
from pumit.training.common import adamw_warmup_cosine, batch_spacing, load_base_model, total_optimizer_steps
from pumit.training.mim import vit_config_from

log = logging.getLogger(__name__)


def _labels_of(meta: dict[str, Any]) -> dict[str, str] | None:
    labels = meta.get("labels")
    if isinstance(labels, list):
        return {str(i): str(v) for i, v in enumerate(labels)}
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    return None


def resolve_roi(roi: Any, divisor: tuple[int, int, int], median_shape: tuple[int, ...] | None = None,
                base_roi: Any = None, cap: tuple[int, int, int] = (96, 160, 160)) -> tuple[int, int, int]:
    """The training/sliding-window ``roi (D, H, W)``: ``roi`` if given (validated), else ``base_roi`` (a base
    segmentation model's), else ``median_shape`` rounded to the nearest multiple of ``divisor`` (at least one
    divisor, at most ``cap`` rounded down)."""
    chosen = roi if roi else base_roi
    if chosen:
        out = tuple(int(v) for v in chosen)
        if len(out) != 3 or any(r < 1 or r % d for r, d in zip(out, divisor)):
            raise InputError(f"roi {out} must be 3 sizes divisible by {divisor} (the network's divisor at this spacing)")
        return out  # type: ignore[return-value]
    if not median_shape:
        raise InputError("give --roi D,H,W (no training cases to derive it from)")
    out = []
    for n, d, c in zip(median_shape, divisor, cap):
        top = max(c // d, 1) * d
        out.append(min(max(int(round(n / d)) * d, d), top))
    return tuple(out)  # type: ignore[return-value]


def build_segmenter(cfg: dict[str, Any], labels: dict[str, str], in_channels: int = 1,
                    notices: list[str] | None = None, base: nn.Module | None = None) -> SpadViTSegmenter:
    """A segmenter for ``labels`` (``{"0": "background", "1": ...}``, contiguous values ``0..C-1``).

    * ``base_model`` a segmentation model: continue fine-tuning. Its labels must equal ``labels``; otherwise the
      classification head (the last 1×1 conv) is re-initialised for the new classes and a notice is added.
    * ``base_model`` a vit/mim model: its backbone with a new adapter + decoder + head.
    * no ``base_model``: a new model of ``preset`` size.

    ``notices`` collects user-facing messages (e.g. the head re-initialisation). ``base``: the already loaded
    ``base_model`` (else it is loaded here).
    """
    notices = notices if notices is not None else []
    num_classes = len(labels)
    adapter, stem = cfg.get("adapter_channels"), cfg.get("stem_channels")
    seg_over = dict(num_classes=num_classes, decoder=str(cfg.get("decoder") or "light"),
                    adapter_channels=tuple(adapter) if adapter else None, stem_channels=tuple(stem) if stem else None,
                    conv_levels=None if cfg.get("conv_levels") is None else int(cfg["conv_levels"]),
                    blocks_per_level=None if cfg.get("blocks_per_level") is None else int(cfg["blocks_per_level"]))
    if not cfg.get("base_model"):
        return SpadViTSegmenter(SegmenterConfig(vit=vit_config_from(cfg, in_channels=in_channels), **seg_over))
    if base is None:
        base = load_base_model(cfg["base_model"], ("segmentation", "vit", "mim"), cfg.get("store"))
    gc = {"grad_checkpointing": bool(cfg.get("grad_checkpointing")), "drop_path": float(cfg.get("drop_path") or 0.0)}
    if base.model_type == "segmentation":
        bcfg = base.config.to_dict()
        bcfg["vit"] = {**bcfg["vit"], **gc}
        base_labels = _labels_of(getattr(base, "meta", {}))
        same = base.config.num_classes == num_classes and (base_labels is None or base_labels == labels)
        model = SpadViTSegmenter(SegmenterConfig.from_dict({**bcfg, "num_classes": num_classes}))
        state = base.state_dict()
        if not same:
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
            notices.append(
                f"the base model's labels {base_labels or base.config.num_classes} differ from the dataset's {labels}: "
                "the segmentation head is re-initialised (backbone and decoder are kept)")
        model.load_state_dict(state, strict=same)
    else:
        vcfg = type(base.config).from_dict({**base.config.to_dict(), **gc})
        model = SpadViTSegmenter(SegmenterConfig(vit=vcfg, **seg_over))
        model.vit.load_state_dict(base.state_dict() if base.model_type == "vit" else base.vit.state_dict())
    if model.config.vit.in_channels != in_channels:
        raise InputError(f"base model expects {model.config.vit.in_channels} channel(s), the data has {in_channels}")
    return model


class SegmentationModule(pl.LightningModule):
    """LightningModule of the segmentation job.

    ``labels`` maps label values to names (``{"0": "background", ...}``); ``target_spacing`` is the spacing
    (mm) all cases were resampled to, used to check (or choose, see :func:`resolve_roi`) the ``roi``;
    ``median_shape`` is the training cases' median ``(D, H, W)``; ``base`` an already loaded base model.
    """

    monitor = ("val/dice", "max")
    #: the backbone's mask token (and, for segmentation, blocks/norm after the last tapped block) get no gradient
    ddp_find_unused_parameters = True

    def __init__(self, cfg: dict[str, Any], labels: dict[str, str], target_spacing: Spacing, in_channels: int = 1,
                 model: SpadViTSegmenter | None = None, notices: list[str] | None = None,
                 median_shape: tuple[int, ...] | None = None, base: nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters({"cfg": dict(cfg), "labels": dict(labels), "target_spacing": list(target_spacing),
                                   "in_channels": in_channels})
        self.cfg = cfg
        self.labels = {str(k): str(v) for k, v in labels.items()}
        if sorted(int(k) for k in self.labels) != list(range(len(self.labels))):
            raise InputError(f"segmentation labels must be the values 0..N-1, got {sorted(self.labels)}")
        self.notices: list[str] = notices if notices is not None else []
        self.segmenter = model if model is not None else build_segmenter(cfg, self.labels, in_channels, self.notices,
                                                                          base)
        div = required_divisor(target_spacing, self.segmenter.total_stride)
        base_meta = getattr(base, "meta", {}) if base is not None and base.model_type == "segmentation" else {}
        self.roi = resolve_roi(cfg.get("roi"), div, median_shape, (base_meta.get("input") or {}).get("roi"))
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=True)
        self.fg_names = [self.labels[str(i)] for i in range(1, len(self.labels))]
        self.val_dice = nn.ModuleList(MeanMetric(nan_strategy="ignore") for _ in self.fg_names)

    @property
    def model(self) -> SpadViTSegmenter:
        """The model that is exported."""
        return self.segmenter

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def forward(self, x: torch.Tensor, spacing: Any) -> torch.Tensor:
        """Logits ``(B, num_classes, D, H, W)`` of ``x (B, C, D, H, W)`` (size divisible by the network's divisor)."""
        return self.segmenter(x, batch_spacing(spacing))

    def configure_optimizers(self) -> Any:
        c = self.cfg
        opt, sched = adamw_warmup_cosine(
            self.segmenter, lr=c["lr"], weight_decay=c["weight_decay"], betas=tuple(c["betas"]),
            warmup_steps=c["warmup_steps"], total_steps=total_optimizer_steps(self.trainer), min_lr_ratio=c["min_lr_ratio"])
        return {"optimizer": opt, "lr_scheduler": sched}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch["image"], batch["label"]
        logits = self(x, batch["spacing"])
        loss = self.loss_fn(logits.float(), y.unsqueeze(1).long())
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    @torch.no_grad()
    def predict_volume(self, x: torch.Tensor, spacing: Any) -> torch.Tensor:
        """Sliding-window logits ``(B, num_classes, D, H, W)`` of a whole volume ``x (B, C, D, H, W)``."""
        s = batch_spacing(spacing)
        return sliding_window_inference(
            x, self.roi, int(self.cfg.get("sw_batch_size", 2)), lambda t: self.segmenter(t, s),
            overlap=float(self.cfg.get("sw_overlap", 0.5)), mode="gaussian", cval=PAD_VALUE)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        x, y = batch["image"], batch["label"].long()
        logits = self.predict_volume(x, batch["spacing"])
        pred = F.one_hot(logits.argmax(1), self.num_classes).movedim(-1, 1)
        truth = F.one_hot(y.clamp(0, self.num_classes - 1), self.num_classes).movedim(-1, 1)
        dice = compute_dice(pred, truth, include_background=False, ignore_empty=True)  # (B, C-1), nan = absent
        for i, metric in enumerate(self.val_dice):
            metric.update(dice[:, i])
        self.log("val/loss", self.loss_fn(logits.float(), y.unsqueeze(1)), sync_dist=True, batch_size=x.shape[0])

    def on_validation_epoch_end(self) -> None:
        values = []
        for name, metric in zip(self.fg_names, self.val_dice):
            v = metric.compute()
            metric.reset()
            values.append(v)
            self.log(f"val/dice/{name}", v)
        valid = [v for v in values if torch.isfinite(v)]
        mean = torch.stack(valid).mean() if valid else torch.tensor(0.0, device=self.device)
        self.log("val/dice", mean, prog_bar=True)
