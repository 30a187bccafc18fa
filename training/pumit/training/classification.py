"""Classification fine-tuning of SPAD-ViT (``[CLS]`` → LayerNorm → Linear), e.g. MedMNIST-3D.

Batches: ``{"image": (B, C, D, H, W), "spacing": (B, 3), "target": (B,) or (B, 1)}``. Images are resized
(trilinear) to ``input_size`` inside the module, on the device, and the spacing is scaled accordingly so
the ViT sees the physical size it was pre-trained on. Metrics (torchmetrics, synchronised across
processes): ``val/auc`` (binary AUROC, or macro one-vs-rest AUROC for more classes), ``val/acc``,
``val/loss``; the best checkpoint is the one with the highest ``val/auc``.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchmetrics import AUROC, Accuracy

from pumit.errors import InputError
from pumit.models import ClassifierConfig, SpadViTClassifier
from pumit.spacing import Spacing
from pumit.training.common import adamw_warmup_cosine, batch_spacing, load_base_model, total_optimizer_steps
from pumit.training.mim import vit_config_from

log = logging.getLogger(__name__)


def build_classifier(cfg: dict[str, Any], num_classes: int, in_channels: int = 1) -> SpadViTClassifier:
    """A classifier from ``base_model`` (vit / mim backbone, or a classifier to continue) or from ``preset``.

    A classifier with another number of classes keeps its backbone and gets a new head (logged).
    """
    if not cfg.get("base_model"):
        vit = vit_config_from(cfg, in_channels=in_channels)
        return SpadViTClassifier(ClassifierConfig(vit=vit, num_classes=num_classes))
    base = load_base_model(cfg["base_model"], ("vit", "mim", "classification"), cfg.get("store"))
    vit_cfg = base.config.vit if base.model_type == "classification" else base.config
    vit_cfg = type(vit_cfg).from_dict({**vit_cfg.to_dict(), "grad_checkpointing": bool(cfg.get("grad_checkpointing")),
                                       "drop_path": float(cfg.get("drop_path") or 0.0)})
    model = SpadViTClassifier(ClassifierConfig(vit=vit_cfg, num_classes=num_classes))
    if base.model_type == "classification" and base.config.num_classes == num_classes:
        model.load_state_dict(base.state_dict())
    else:
        if base.model_type == "classification":
            log.warning("base model has %d classes, the data %d: the classification head is re-initialised",
                        base.config.num_classes, num_classes)
        model.vit.load_state_dict(base.state_dict() if base.model_type == "vit" else base.vit.state_dict())
    if model.config.vit.in_channels != in_channels:
        raise InputError(f"base model expects {model.config.vit.in_channels} channel(s), the data has {in_channels}")
    return model


def resize_batch(x: torch.Tensor, spacing: Spacing, size: tuple[int, int, int]) -> tuple[torch.Tensor, Spacing]:
    """Trilinear resize of ``x (B, C, D, H, W)`` to ``size``; the spacing scales by ``old / new`` per axis."""
    if tuple(x.shape[2:]) == tuple(size):
        return x, spacing
    new_sp = tuple(s * n / m for s, n, m in zip(spacing, x.shape[2:], size))
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False), new_sp  # type: ignore[return-value]


def batch_target(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Class indices ``(B,)`` from ``batch["target"]`` (or ``"label"``) of shape ``(B,)`` or ``(B, 1)``."""
    t = batch.get("target", batch.get("label"))
    if t is None:
        raise InputError("classification batches need a 'target' (class index per image)")
    t = torch.as_tensor(t)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise InputError(f"classification targets must be one class index per image, got shape {tuple(t.shape)} "
                         "(multi-label targets are not supported)")
    return t.long()


class ClassificationModule(pl.LightningModule):
    """LightningModule of the classification job. ``class_names`` are stored with the exported model."""

    monitor = ("val/auc", "max")
    #: the backbone's mask token (and, for segmentation, blocks/norm after the last tapped block) get no gradient
    ddp_find_unused_parameters = True

    def __init__(self, cfg: dict[str, Any], num_classes: int, in_channels: int = 1,
                 class_names: list[str] | None = None, model: SpadViTClassifier | None = None):
        super().__init__()
        self.save_hyperparameters({"cfg": dict(cfg), "num_classes": num_classes, "in_channels": in_channels,
                                   "class_names": list(class_names or [])})
        self.cfg = cfg
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.input_size = tuple(int(v) for v in cfg.get("input_size", (64, 64, 64)))
        self.classifier = model if model is not None else build_classifier(cfg, num_classes, in_channels)
        div = self.classifier.vit.patch_size
        if any(n % div for n in self.input_size[1:]):
            raise InputError(f"input_size {self.input_size} must be divisible by the patch size {div} in-plane")
        task = "binary" if num_classes == 2 else "multiclass"
        self.val_auc = AUROC(task=task, num_classes=num_classes)
        self.val_acc = Accuracy(task=task, num_classes=num_classes)
        self.test_auc = AUROC(task=task, num_classes=num_classes)
        self.test_acc = Accuracy(task=task, num_classes=num_classes)

    @property
    def model(self) -> SpadViTClassifier:
        """The model that is exported."""
        return self.classifier

    def forward(self, x: torch.Tensor, spacing: Any) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of images ``x (B, C, D, H, W)`` at any size (resized here)."""
        x, s = resize_batch(x, batch_spacing(spacing), self.input_size)
        return self.classifier(x, s)

    def configure_optimizers(self) -> Any:
        c = self.cfg
        opt, sched = adamw_warmup_cosine(
            self.classifier, lr=c["lr"], weight_decay=c["weight_decay"], betas=tuple(c["betas"]),
            warmup_steps=c["warmup_steps"], total_steps=total_optimizer_steps(self.trainer), min_lr_ratio=c["min_lr_ratio"])
        return {"optimizer": opt, "lr_scheduler": sched}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"], batch["spacing"])
        loss = F.cross_entropy(logits.float(), batch_target(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss

    def _probs_for_metric(self, logits: torch.Tensor) -> torch.Tensor:
        p = logits.float().softmax(-1)
        return p[:, 1] if self.num_classes == 2 else p

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"], batch["spacing"])
        y = batch_target(batch)
        self.log("val/loss", F.cross_entropy(logits.float(), y), sync_dist=True, batch_size=y.shape[0])
        p = self._probs_for_metric(logits)
        self.val_auc.update(p, y)
        self.val_acc.update(p, y)
        self.log("val/auc", self.val_auc, prog_bar=True, on_epoch=True, batch_size=y.shape[0])
        self.log("val/acc", self.val_acc, prog_bar=True, on_epoch=True, batch_size=y.shape[0])

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"], batch["spacing"])
        y = batch_target(batch)
        p = self._probs_for_metric(logits)
        self.test_auc.update(p, y)
        self.test_acc.update(p, y)
        self.log("test/auc", self.test_auc, on_epoch=True, batch_size=y.shape[0])
        self.log("test/acc", self.test_acc, on_epoch=True, batch_size=y.shape[0])
