"""Patch discriminator for the tokenizer's adversarial loss (SAC, so it accepts 2D and anisotropic 3D).

Input ``(B, C, D, H, W)`` with spacing; output patch logits ``(B, 1, d, h, w)`` at in-plane 1/8.
"""

from __future__ import annotations

import torch
from torch import nn

from pumit.models.sac import SACConv, SACDownsample, SACSequential
from pumit.spacing import SpacingLike


class PatchDiscriminator(nn.Module):
    """``n`` × (SAC 3³ conv stride 2 → GroupNorm(16) → LeakyReLU), one more 3³ block, then a conv to 1 logit."""

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (128, 256, 512), groups: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            layers += [SACDownsample(prev, c, 2, kernel_size=3), nn.GroupNorm(min(groups, c), c), nn.LeakyReLU(0.2, inplace=True)]
            prev = c
        layers += [SACConv(prev, prev), nn.GroupNorm(min(groups, prev), prev), nn.LeakyReLU(0.2, inplace=True), SACConv(prev, 1)]
        self.main = SACSequential(layers)

    def forward(self, x: torch.Tensor, spacing: SpacingLike) -> torch.Tensor:
        return self.main(x, spacing)[0]


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``0.5 · (mean relu(1 − D(x)) + mean relu(1 + D(x̂)))``."""
    return 0.5 * (torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean())


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``−mean D(x̂)``."""
    return -fake_logits.mean()
