"""Tokenizer training loss: L1 + perceptual + gated GAN + extended prior regularization.

Perceptual network (pluggable, never downloaded):

* ``"none"`` — no perceptual term.
* ``"random"`` (default) — a VGG16-shaped 2D feature network with *frozen, seeded random* weights,
  applied per slice (LPIPS-style unit-normalised features, squared differences averaged). Random deep
  features still penalise structural (edge/texture) errors that L1 misses, but are weaker than LPIPS;
  point ``perceptual`` at real weights when you have them.
* a path to a ``.safetensors`` (or ``.pt``/``.pth`` read with ``weights_only=True``) file holding
  torchvision VGG16 weights (keys ``features.N.weight``/``bias``; any ``classifier.*`` keys ignored),
  e.g. the ImageNet VGG16 a user already has on disk.
* any ``nn.Module`` mapping ``(N, 3, H, W)`` slices in ImageNet normalisation to a list of feature maps.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from pumit.errors import ModelError
from pumit.models.discriminator import PatchDiscriminator, generator_adversarial_loss, hinge_discriminator_loss
from pumit.models.tokenizer import TokenizerOutput, prior_regularization
from pumit.spacing import SpacingLike

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_VGG16_TAPS = (3, 8, 15, 22, 29)  # ReLU after conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 in torchvision indexing
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """VGG16 ``features`` (torchvision layout, so its weights load by key) returning the 5 LPIPS taps."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(prev, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                prev = int(v)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _VGG16_TAPS:
                out.append(x)
            if i >= _VGG16_TAPS[-1]:
                break
        return out


def build_perceptual(spec: str | os.PathLike | nn.Module | None = "random", seed: int = 0) -> nn.Module | None:
    """Build the frozen perceptual feature network described in the module docstring."""
    if spec is None or spec == "none":
        return None
    if isinstance(spec, nn.Module):
        net = spec
    elif spec == "random":
        net = VGG16Features()
        gen = torch.Generator().manual_seed(seed)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                m.weight.data = torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5
                m.bias.data.zero_()
    else:
        path = Path(spec)
        if not path.is_file():
            raise ModelError(f"perceptual weights not found: {path} (use 'random' or 'none', or a VGG16 weights file)")
        from pumit.models.convert import extract_state_dict, read_checkpoint

        state = extract_state_dict(read_checkpoint(path))  # ModelError (never a bare UnpicklingError) for unsafe/corrupt files
        state = {k: v for k, v in state.items() if k.startswith("features.")}
        net = VGG16Features()
        missing, _ = net.load_state_dict(state, strict=False)
        if missing:
            raise ModelError(f"{path} is not a VGG16 weights file: missing {missing[:3]}...")
    net.eval().requires_grad_(False)
    return net


class PerceptualLoss(nn.Module):
    """LPIPS-style distance on up to ``max_slices`` random depth slices of ``(B, C, D, H, W)`` in ``[-1, 1]``."""

    def __init__(self, net: nn.Module, max_slices: int = 24):
        super().__init__()
        self.net = net
        self.max_slices = max_slices
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.net.eval()  # the feature network stays frozen
        return self

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(2, 1).flatten(0, 1)  # (B*D, C, H, W)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return ((x + 1) / 2 - self.mean) / self.std

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b = self._prep(x), self._prep(y)
        if a.shape[0] > self.max_slices:
            idx = torch.randperm(a.shape[0], device=a.device)[: self.max_slices]
            a, b = a[idx], b[idx]
        loss = a.new_zeros(())
        for fa, fb in zip(self.net(a), self.net(b)):
            fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
            fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
            loss = loss + (fa - fb).pow(2).sum(1).mean()
        return loss


class TokenizerLoss(nn.Module):
    """Composition of the tokenizer's losses with the discriminator-loss gate and a step schedule.

    The GAN term (``gan_weight · −mean D(x̂)``) is applied only from generator step ``gan_start`` on and
    only while ``max(EMA(disc loss), last disc loss) <= gan_threshold``: a discriminator that is not (yet)
    good enough gives no adversarial gradient (the paper found VQGAN's adaptive weight did not converge).
    The gate state is kept in buffers so it is checkpointed.

    Sharpness schedule (reconstruction first): the sharpness part of the prior regularization has weight 0
    before step ``sharpness_start``, then rises linearly to ``sharpness_weight`` over ``sharpness_ramp``
    steps (see :meth:`sharpness_at`). Added at full weight from step 0 it dominates the L1 gradient and
    makes tokens one-hot before they have learnt to reconstruct (docs/results.md, tokenizer ablations).
    """

    def __init__(
        self,
        in_channels: int = 1,
        perceptual: str | os.PathLike | nn.Module | None = "random",
        l1_weight: float = 1.0,
        perceptual_weight: float = 1.0,
        gan_weight: float = 3e-3,
        gan_threshold: float = 0.025,
        disc_ema_momentum: float = 0.9,
        diversity_weight: float = 1.0,
        sharpness_weight: float = 0.2,
        disc_channels: tuple[int, ...] = (128, 256, 512),
        max_perceptual_slices: int = 24,
        sharpness_start: int = 0,
        sharpness_ramp: int = 0,
        gan_start: int = 0,
    ):
        super().__init__()
        net = build_perceptual(perceptual)
        self.perceptual = PerceptualLoss(net, max_perceptual_slices) if net is not None else None
        self.discriminator = PatchDiscriminator(in_channels, disc_channels)
        self.l1_weight, self.perceptual_weight, self.gan_weight = l1_weight, perceptual_weight, gan_weight
        self.gan_threshold, self.disc_ema_momentum = gan_threshold, disc_ema_momentum
        self.diversity_weight, self.sharpness_weight = diversity_weight, sharpness_weight
        self.sharpness_start, self.sharpness_ramp = max(int(sharpness_start), 0), max(int(sharpness_ramp), 0)
        self.gan_start = max(int(gan_start), 0)
        self.register_buffer("disc_loss_ema", torch.tensor(0.1))
        self.register_buffer("disc_loss_last", torch.tensor(0.1))

    @property
    def gan_active(self) -> bool:
        return bool(torch.maximum(self.disc_loss_ema, self.disc_loss_last) <= self.gan_threshold)

    def sharpness_at(self, step: int | None) -> float:
        """Sharpness weight at generator step ``step`` (``None``: the full weight)."""
        if step is None:
            return self.sharpness_weight
        if step < self.sharpness_start:
            return 0.0
        if self.sharpness_ramp == 0:
            return self.sharpness_weight
        return self.sharpness_weight * min(1.0, (step - self.sharpness_start + 1) / self.sharpness_ramp)

    def discriminator_on(self, step: int | None) -> bool:
        """Whether the discriminator trains at ``step`` (only with a GAN term, from ``gan_start`` on)."""
        return self.gan_weight > 0 and (step is None or step >= self.gan_start)

    def generator_loss(
        self, x: torch.Tensor, out: TokenizerOutput, spacing: SpacingLike, step: int | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total generator loss at generator step ``step`` and its logged parts (detached).

        Logged besides the loss terms: ``token_entropy`` (mean per-token entropy, nats), ``perplexity``
        (``exp H(p̄)``, the effective number of codes in use), ``codes_used`` (fraction of the ``K`` codes
        that are some token's argmax in this batch) and ``sharpness_w`` (the scheduled weight).
        """
        l1 = (out.recon - x).abs().mean()
        total = self.l1_weight * l1
        logs = {"l1": l1}
        if self.perceptual is not None and self.perceptual_weight > 0:
            p = self.perceptual(out.recon, x)
            total = total + self.perceptual_weight * p
            logs["perceptual"] = p
        gan_on = self.discriminator_on(step) and self.gan_active
        if gan_on:
            g = generator_adversarial_loss(self.discriminator(out.recon, spacing))
            total = total + self.gan_weight * g
            logs["gan"] = g
        sharp_w = self.sharpness_at(step)
        reg = prior_regularization(out.probs, self.diversity_weight, sharp_w)
        total = total + reg.loss
        k = out.probs.shape[-1]
        with torch.no_grad():
            used = torch.unique(out.probs.detach().reshape(-1, k).argmax(-1)).numel() / k
        logs.update(prior=reg.loss, diversity_kl=reg.diversity_kl, token_entropy=reg.mean_token_entropy,
                    perplexity=torch.exp(math.log(k) - reg.diversity_kl), codes_used=torch.tensor(float(used)),
                    sharpness_w=torch.tensor(float(sharp_w)))
        logs["gan_active"] = torch.tensor(float(gan_on))
        return total, {k_: v.detach() for k_, v in logs.items()}

    def discriminator_loss(self, x: torch.Tensor, recon: torch.Tensor, spacing: SpacingLike) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Hinge loss of the discriminator on real ``x`` vs reconstruction; updates the GAN gate."""
        loss = hinge_discriminator_loss(self.discriminator(x, spacing), self.discriminator(recon.detach(), spacing))
        with torch.no_grad():
            self.disc_loss_last.copy_(loss.detach())
            self.disc_loss_ema.mul_(self.disc_ema_momentum).add_((1 - self.disc_ema_momentum) * loss.detach())
        return loss, {"disc": loss.detach(), "disc_ema": self.disc_loss_ema.clone()}
