"""Task heads on SPAD-ViT: classification from ``[CLS]`` and the optional Universal-Model (2020) heads.

* :class:`SpadViTClassifier` — ``(B, C, D, H, W)`` + spacing → class logits ``(B, num_classes)``.
* :class:`ModalityDiscriminator` — predicts the modality from pooled features behind a gradient
  reversal layer, so minimising its loss makes the backbone *modality-invariant* (adversarial).
* :class:`ScaleClassifier` — predicts the scale (e.g. the DA bucket or an in-plane spacing bin) from
  pooled features, an auxiliary objective making the backbone aware of physical scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from pumit.models.vit import SpadViT, ViTConfig
from pumit.spacing import SpacingLike


@dataclass
class ClassifierConfig:
    vit: ViTConfig = field(default_factory=ViTConfig)
    num_classes: int = 2

    def to_dict(self) -> dict[str, Any]:
        return {"vit": self.vit.to_dict(), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        return cls(vit=ViTConfig.from_dict(d["vit"]), num_classes=int(d["num_classes"]))


class SpadViTClassifier(nn.Module):
    """``[CLS]`` → LayerNorm → Linear. Returns logits ``(B, num_classes)``."""

    model_type = "classification"

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config or ClassifierConfig()
        self.vit = SpadViT(self.config.vit)
        self.fc_norm = nn.LayerNorm(self.config.vit.embed_dim, eps=1e-6)
        self.head = nn.Linear(self.config.vit.embed_dim, self.config.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, spacing: SpacingLike) -> torch.Tensor:
        return self.head(self.fc_norm(self.vit(x, spacing)))


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:  # type: ignore[override]
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``−lambd`` backward."""
    return _GradientReversal.apply(x, lambd)


def _mlp(dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))


class ModalityDiscriminator(nn.Module):
    """MLP on mean-pooled patch tokens ``(B, N, C)`` behind gradient reversal → modality logits ``(B, M)``."""

    def __init__(self, dim: int, num_modalities: int, hidden: int = 256, lambd: float = 1.0):
        super().__init__()
        self.lambd = lambd
        self.mlp = _mlp(dim, hidden, num_modalities)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(grad_reverse(tokens.mean(1), self.lambd))


class ScaleClassifier(nn.Module):
    """MLP on mean-pooled patch tokens ``(B, N, C)`` → scale-class logits ``(B, S)``."""

    def __init__(self, dim: int, num_scales: int, hidden: int = 256):
        super().__init__()
        self.mlp = _mlp(dim, hidden, num_scales)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens.mean(1))


def config_dict(obj: Any) -> dict[str, Any]:
    """``to_dict`` of a config dataclass (helper for :mod:`pumit.models.checkpoint`)."""
    return obj.to_dict() if hasattr(obj, "to_dict") else asdict(obj)
