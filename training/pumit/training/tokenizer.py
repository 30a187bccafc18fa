"""Tokenizer training: generator (the :class:`~pumit.models.UniversalTokenizer`) and patch discriminator
trained alternately with Lightning's *manual optimization* (the only job that needs it).

Each batch ``{"image": (B, C, D, H, W) in [-1, 1], "spacing": (B, 3)}``:

1. generator step: ``L = l1 + perceptual + [gan gate] gan + prior`` (:meth:`TokenizerLoss.generator_loss`,
   with the sharpness weight scheduled by step: reconstruction first, sharpness annealed in);
2. discriminator step (only with a GAN term and from ``gan_start`` on): hinge loss on real vs detached
   reconstruction, which also updates the GAN gate.

Logged per step: the loss terms, ``token_entropy`` (mean per-token entropy), ``perplexity`` (effective
number of codes used) and ``codes_used``; at validation ``val/l1``, ``val/pearson`` and ``val/l1_hard``
(reconstruction from the argmax tokens).

Gradient accumulation (``accumulate_grad_batches``) and clipping are done here (Lightning does not do them
for manual optimization). ``trainer.global_step`` counts *generator* steps only: the discriminator
optimizer's step is not counted, so ``--max-steps`` means generator steps.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from pumit.models import TokenizerConfig, TokenizerLoss, UniversalTokenizer
from pumit.models.tokenizer import entropy
from pumit.metrics import batch_pearson
from pumit.training.common import adamw_warmup_cosine, batch_spacing, load_base_model, total_optimizer_steps


def build_tokenizer(cfg: dict[str, Any]) -> UniversalTokenizer:
    """A new tokenizer from ``tokenizer_preset`` / ``channels`` / ``codebook_size``, or ``base_model``'s weights."""
    if cfg.get("base_model"):
        return load_base_model(cfg["base_model"], ("tokenizer",), cfg.get("store"))  # type: ignore[return-value]
    over: dict[str, Any] = {"in_channels": int(cfg.get("in_channels", 1))}
    if cfg.get("channels"):
        over["channels"] = tuple(cfg["channels"])
    if cfg.get("codebook_size"):
        over["codebook_size"] = int(cfg["codebook_size"])
    if cfg.get("first_stride"):
        over["first_stride"] = int(cfg["first_stride"])
    if cfg.get("tokenizer_norm"):
        over["norm"] = str(cfg["tokenizer_norm"])
    return UniversalTokenizer(TokenizerConfig.preset(cfg.get("tokenizer_preset", "base"), **over))


class TokenizerModule(pl.LightningModule):
    """LightningModule of the tokenizer job (see module docstring). ``cfg`` is the job's option dict."""

    #: metric of the best checkpoint and its direction
    monitor = ("val/l1", "min")
    #: the generator and discriminator backward passes each touch only their own parameters
    ddp_find_unused_parameters = True

    def __init__(self, cfg: dict[str, Any], tokenizer: UniversalTokenizer | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters({"cfg": dict(cfg)})
        self.cfg = cfg
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(cfg)
        self.loss_fn = TokenizerLoss(
            in_channels=self.tokenizer.config.in_channels,
            perceptual=cfg.get("perceptual", "random"),
            l1_weight=cfg.get("l1_weight", 1.0),
            perceptual_weight=cfg.get("perceptual_weight", 1.0),
            gan_weight=cfg.get("gan_weight", 3e-3),
            gan_threshold=cfg.get("gan_threshold", 0.025),
            diversity_weight=cfg.get("diversity_weight", 1.0),
            sharpness_weight=cfg.get("sharpness_weight", 0.2),
            disc_channels=tuple(cfg.get("disc_channels", (128, 256, 512))),
            sharpness_start=int(cfg.get("sharpness_start", 0) or 0),
            sharpness_ramp=int(cfg.get("sharpness_ramp", 0) or 0),
            gan_start=int(cfg.get("gan_start", 0) or 0),
        )
        self.accumulate = max(int(cfg.get("accumulate_grad_batches", 1)), 1)

    @property
    def model(self) -> UniversalTokenizer:
        """The model that is exported."""
        return self.tokenizer

    def configure_optimizers(self) -> Any:
        c = self.cfg
        total = total_optimizer_steps(self.trainer, self.accumulate)
        common = dict(weight_decay=c["weight_decay"], betas=tuple(c["betas"]), warmup_steps=c["warmup_steps"],
                      total_steps=total, min_lr_ratio=c["min_lr_ratio"])
        opt_g, sch_g = adamw_warmup_cosine(self.tokenizer, lr=c["lr"], **common)
        opt_d, sch_d = adamw_warmup_cosine(self.loss_fn.discriminator, lr=c["disc_lr"], **common)
        sch_d["name"] = "lr_disc"
        return [opt_g, opt_d], [sch_g, sch_d]

    def _step_optimizer(self, opt: Any, sched: Any, counted: bool) -> None:
        clip = float(self.cfg.get("gradient_clip_val") or 0.0)
        if clip > 0:
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        if not counted:  # keep global_step = generator steps (Lightning counts every LightningOptimizer.step)
            before, after = opt._on_before_step, opt._on_after_step
            opt._on_before_step = opt._on_after_step = lambda: None
            try:
                opt.step()
            finally:
                opt._on_before_step, opt._on_after_step = before, after
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One generator + discriminator update on ``batch["image"] (B, C, D, H, W)``."""
        opt_g, opt_d = self.optimizers()
        sch_g, sch_d = self.lr_schedulers()
        x = batch["image"]
        s = batch_spacing(batch["spacing"])
        boundary = (batch_idx + 1) % self.accumulate == 0 or self.trainer.is_last_batch

        step = int(self.global_step)
        self.toggle_optimizer(opt_g)
        out = self.tokenizer(x, s)
        g_loss, g_logs = self.loss_fn.generator_loss(x, out, s, step=step)
        self.manual_backward(g_loss / self.accumulate)
        if boundary:
            self._step_optimizer(opt_g, sch_g, counted=True)
        self.untoggle_optimizer(opt_g)

        d_logs: dict[str, torch.Tensor] = {}
        if self.loss_fn.discriminator_on(step):  # no GAN term (yet): skip the discriminator's cost
            self.toggle_optimizer(opt_d)
            d_loss, d_logs = self.loss_fn.discriminator_loss(x, out.recon, s)
            self.manual_backward(d_loss / self.accumulate)
            if boundary:
                self._step_optimizer(opt_d, sch_d, counted=False)
            self.untoggle_optimizer(opt_d)

        bs = x.shape[0]
        self.log("train/loss", g_loss.detach(), prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v.float() for k, v in {**g_logs, **d_logs}.items()}, batch_size=bs)
        return g_loss.detach()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        x = batch["image"]
        s = batch_spacing(batch["spacing"])
        out = self.tokenizer(x, s)
        l1 = (out.recon - x).abs().mean()
        self.log("val/l1", l1, prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        self.log("val/token_entropy", entropy(out.probs.float()).mean(), sync_dist=True, batch_size=x.shape[0])
        self.log("val/pearson", batch_pearson(out.recon.float(), x.float()), sync_dist=True, batch_size=x.shape[0])
        # hard decoding (argmax one-hot tokens): how much the soft tokens carry beyond their argmax
        hard = torch.nn.functional.one_hot(out.probs.argmax(-1), out.probs.shape[-1]).to(out.probs.dtype)
        recon_hard = self.tokenizer.decode(hard, out.token_spacing, s)
        self.log("val/l1_hard", (recon_hard - x).abs().mean(), sync_dist=True, batch_size=x.shape[0])
