"""Masked image modeling (MIM) pre-training of SPAD-ViT against a frozen tokenizer's soft tokens.

Per batch ``{"image": (B, C, D, H, W), "spacing": (B, 3), "modality": (B,), "da": (B,)}``:

* targets: the frozen tokenizer's token distributions ``p (B, d, h, w, K)`` (no gradient), optionally sharpened
  (``target_temperature`` ``T``: ``softmax(log p / T)``; 1 = the published soft tokens);
* a random ``mask (B, N)`` with ``round(mask_ratio · N)`` positions per sample (55 % by default), replaced
  by the learnable mask token at the input (BEiT style);
* loss: soft-target cross-entropy of the MIM head's ``(B, N, K)`` logits on masked positions.

Optional Universal-Model objectives (switchable, off by default), on the mean-pooled patch tokens:

* ``modality_adversary``: a :class:`~pumit.models.ModalityDiscriminator` behind gradient reversal
  (``modality_lambda``) predicts the modality; its cross-entropy (× ``modality_weight``) trains the head
  to recognise the modality while the reversed gradient pushes the backbone to hide it;
* ``scale_classifier``: a :class:`~pumit.models.ScaleClassifier` predicts the DA bucket ``0..5``
  (× ``scale_weight``), making features scale-aware.

The ViT's patch size is the tokenizer's total stride ``S`` (the published setting: the grids coincide) or ``S``
times a power of 2: then each patch's target is the **mean of the token distributions it covers** (an
average-pooled distribution, still a distribution over the same codebook; :func:`pool_token_distributions`), so a
fine tokenizer (stride 4) can teach a coarser ViT (patch 8).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from pumit.modality import MODALITIES
from pumit.errors import InputError
from pumit.models import ModalityDiscriminator, ScaleClassifier, SpadViTMIM, UniversalTokenizer, ViTConfig
from pumit.models.vit import random_mask, soft_cross_entropy
from pumit.spacing import MAX_BUCKET_DA
from pumit.training.common import adamw_warmup_cosine, batch_spacing, freeze, load_base_model, total_optimizer_steps


def vit_config_from(cfg: dict[str, Any], **fixed: Any) -> ViTConfig:
    """A :class:`ViTConfig` from ``preset`` and the ``patch_size``/``embed_dim``/``depth``/``num_heads``/``drop_path``
    overrides (``None`` keeps the preset's value) plus ``fixed`` values."""
    over: dict[str, Any] = {}
    for k in ("patch_size", "embed_dim", "depth", "num_heads"):
        if cfg.get(k) is not None:
            over[k] = int(cfg[k])
    over["drop_path"] = float(cfg.get("drop_path", 0.0) or 0.0)
    over["grad_checkpointing"] = bool(cfg.get("grad_checkpointing", False))
    over.update(fixed)
    return ViTConfig.preset(cfg.get("preset", "base"), **over)


def pool_token_distributions(probs: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Token distributions ``(B, d, h, w, K)`` → ``(B, gd, gh, gw, K)`` on the ViT's ``grid``: each ViT patch gets
    the mean of the distributions of the tokens it covers (``d / gd`` etc. must be whole numbers)."""
    d, h, w = probs.shape[1:4]
    if (d, h, w) == tuple(grid):
        return probs
    kernel = []
    for n, g in zip((d, h, w), grid):
        if g < 1 or n % g:
            raise InputError(f"tokenizer grid {(d, h, w)} cannot be pooled onto the ViT grid {tuple(grid)}: the ViT patch "
                             "must cover a whole number of tokens along every axis")
        kernel.append(n // g)
    pooled = F.avg_pool3d(probs.permute(0, 4, 1, 2, 3).float(), kernel_size=kernel, stride=kernel)
    return pooled.permute(0, 2, 3, 4, 1).to(probs.dtype)


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(log p / T)`` over the last axis (``T = 1``: ``p`` itself; ``T < 1``: sharper, same argmax)."""
    if temperature == 1.0:
        return probs
    if temperature <= 0:
        raise InputError(f"target_temperature must be > 0, got {temperature}")
    return torch.softmax(probs.float().clamp_min(1e-12).log() / temperature, dim=-1).to(probs.dtype)


def build_mim(cfg: dict[str, Any], tokenizer: UniversalTokenizer) -> SpadViTMIM:
    """A new or continued :class:`SpadViTMIM` whose grid and codebook match ``tokenizer``."""
    k, stride = tokenizer.codebook_size, tokenizer.total_stride
    if cfg.get("base_model"):
        base = load_base_model(cfg["base_model"], ("vit", "mim"), cfg.get("store"))
        vc = ViTConfig.from_dict({**base.config.to_dict(), "codebook_size": k,
                                  "grad_checkpointing": bool(cfg.get("grad_checkpointing", False))})
        model = SpadViTMIM(vc)
        if base.model_type == "mim" and base.config.codebook_size == k:
            model.load_state_dict(base.state_dict())
        else:
            model.vit.load_state_dict(base.state_dict() if base.model_type == "vit" else base.vit.state_dict())
    else:
        model = SpadViTMIM(vit_config_from(cfg, codebook_size=k, in_channels=tokenizer.config.in_channels,
                                           **({} if cfg.get("patch_size") else {"patch_size": stride})))
    ratio = model.config.patch_size / stride
    if ratio < 1 or ratio != int(ratio) or int(ratio) & (int(ratio) - 1):
        raise InputError(
            f"ViT patch size {model.config.patch_size} must be the tokenizer's total stride {stride} times a power of 2 "
            f"({stride}, {2 * stride}, {4 * stride}, ...) so that every patch covers whole tokens; set --patch-size or "
            "use a matching tokenizer"
        )
    if model.config.in_channels != tokenizer.config.in_channels:
        raise InputError(f"ViT in_channels {model.config.in_channels} != tokenizer in_channels "
                         f"{tokenizer.config.in_channels}")
    return model


class MIMModule(pl.LightningModule):
    """LightningModule of the MIM job. ``tokenizer`` is frozen (eval mode, no gradient, not optimized)."""

    #: every trainable parameter gets a gradient each step: DDP needs no unused-parameter search
    ddp_find_unused_parameters = False
    #: metric of the best checkpoint and its direction
    monitor = ("val/mim", "min")

    def __init__(self, cfg: dict[str, Any], tokenizer: UniversalTokenizer | None = None,
                 model: SpadViTMIM | None = None):
        super().__init__()
        self.save_hyperparameters({"cfg": dict(cfg)})
        self.cfg = cfg
        if tokenizer is None:
            if not cfg.get("tokenizer"):
                raise InputError("pumit train mim needs --tokenizer ID_OR_PATH (a trained tokenizer)")
            tokenizer = load_base_model(cfg["tokenizer"], ("tokenizer",), cfg.get("store"))  # type: ignore[assignment]
        self.tokenizer = freeze(tokenizer)
        self.mim = model if model is not None else build_mim(cfg, self.tokenizer)
        dim = self.mim.config.embed_dim
        self.modality_head: nn.Module | None = None
        self.scale_head: nn.Module | None = None
        if cfg.get("modality_adversary"):
            self.modality_head = ModalityDiscriminator(dim, len(MODALITIES), lambd=float(cfg.get("modality_lambda", 1.0)))
        if cfg.get("scale_classifier"):
            self.scale_head = ScaleClassifier(dim, MAX_BUCKET_DA + 1)
        self.mask_ratio = float(cfg.get("mask_ratio", 0.55))
        t = cfg.get("target_temperature")
        self.target_temperature = 1.0 if t is None else float(t)
        if self.target_temperature <= 0:
            raise InputError(f"target_temperature must be > 0, got {self.target_temperature}")

    @property
    def model(self) -> SpadViTMIM:
        """The model that is exported."""
        return self.mim

    def train(self, mode: bool = True) -> MIMModule:
        super().train(mode)
        self.tokenizer.eval()  # frozen: keep norm layers in inference mode
        return self

    def configure_optimizers(self) -> Any:
        c = self.cfg
        params = nn.ModuleList([m for m in (self.mim, self.modality_head, self.scale_head) if m is not None])
        opt, sched = adamw_warmup_cosine(
            params, lr=c["lr"], weight_decay=c["weight_decay"], betas=tuple(c["betas"]),
            warmup_steps=c["warmup_steps"], total_steps=total_optimizer_steps(self.trainer), min_lr_ratio=c["min_lr_ratio"])
        return {"optimizer": opt, "lr_scheduler": sched}

    def _losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``{"mim", "modality"?, "scale"?, "loss"}`` for a batch; shapes in the module docstring. A CPU
        ``generator`` makes the mask reproducible (validation)."""
        x = batch["image"]
        s = batch_spacing(batch["spacing"])
        with torch.no_grad():
            probs, _, _ = self.tokenizer.encode(x, s)  # (B, d, h, w, K)
            grid, _ = self.mim.vit.token_grid(tuple(x.shape[2:]), s)
            probs = sharpen(probs, self.target_temperature)
            target = pool_token_distributions(probs, grid).flatten(1, 3)  # (B, N, K) on the ViT grid
        b, n = target.shape[:2]
        if generator is None:
            mask = random_mask(b, n, self.mask_ratio, device=x.device)
        else:
            mask = random_mask(b, n, self.mask_ratio, generator=generator).to(x.device)
        h, grid, _ = self.mim.vit.forward_features(x, s, mask)  # (B, 1 + N, C)
        if h.shape[1] - 1 != n:
            raise InputError(f"tokenizer grid {tuple(probs.shape[1:4])} does not match the ViT grid {grid}")  # a bug
        tokens = h[:, 1:]
        out = {"mim": soft_cross_entropy(self.mim.mim_head(tokens), target, mask)}
        total = out["mim"]
        if self.modality_head is not None:
            out["modality"] = F.cross_entropy(self.modality_head(tokens).float(), batch["modality"].long())
            total = total + float(self.cfg.get("modality_weight", 0.1)) * out["modality"]
        if self.scale_head is not None:
            da = batch["da"].long().clamp(0, MAX_BUCKET_DA)
            out["scale"] = F.cross_entropy(self.scale_head(tokens).float(), da)
            total = total + float(self.cfg.get("scale_weight", 0.1)) * out["scale"]
        out["loss"] = total
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._losses(batch)
        bs = batch["image"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items() if k != "loss"}, batch_size=bs)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self._losses(batch, torch.Generator().manual_seed(batch_idx))  # same masks at every validation
        bs = batch["image"].shape[0]
        self.log("val/mim", out["mim"], prog_bar=True, sync_dist=True, batch_size=bs)
        self.log_dict({f"val/{k}": v for k, v in out.items() if k not in ("mim", "loss")}, sync_dist=True,
                      batch_size=bs)
