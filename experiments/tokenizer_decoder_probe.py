"""Probe (issue 10): how much sharper can tokenizer v0.3 reconstruct if only its decoder is trained further?

The encoder and the soft-token quantizer are frozen, so the token distributions (the MIM targets) are unchanged
and the whole MIM / label-efficiency chain stays valid. Arms: ``same`` (v0.3's decoder, trained on), ``wide``
(a wider decoder with a full-resolution refinement level). L1 loss on the tokenizer's training crops
(runs/data/tok3/train.jsonl), scored on held-out hippocampus crops through ``reconstruct_image`` (as
``pumit reconstruct`` runs it).

    python experiments/tokenizer_decoder_probe.py --arm same --steps 1500 --output runs/ref/decprobe-same
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn as nn

from pumit.atomic import atomic_write_bytes, atomic_write_text
from pumit.inference import InferenceSettings
from pumit.inference.modelinfo import load_model
from pumit.inference.preprocess import read_input
from pumit.inference.reconstruct import reconstruct_image
from pumit.models.sac import SACConv, SACConvBlock, SACSequential, SACUpsample
from pumit.training.common import batch_spacing
from pumit.training.datamodules import PretrainDataModule

SHARED = Path("../shared/data")


def wide_decoder(dim: int, width: tuple[int, int, int]) -> SACSequential:
    """Embedding (dim, d, h, w) at stride 4 -> image at stride 1: widths (stride 4, stride 2, stride 1)."""
    a, b, c = width
    return SACSequential([
        SACConvBlock(dim, a), SACConvBlock(a, a), SACConvBlock(a, a),
        SACUpsample(a, b, 2), SACConvBlock(b, b), SACConvBlock(b, b),
        SACUpsample(b, c, 2), SACConvBlock(c, c), SACConv(c, 1, kernel_size=1),
    ])


def score(model: nn.Module, cases: list[str]) -> dict:
    rows = []
    for c in cases:
        p = SHARED / "msd_task04_hippocampus/imagesTr" / f"{c}.nii.gz"
        r = reconstruct_image(read_input(p), model, settings=InferenceSettings(device="cpu"))
        rows.append({k: float(r.metrics[k]) for k in ("pearson", "ssim", "std_ratio")})
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]} | {"n": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", choices=("same", "wide"), required=True)
    ap.add_argument("--width", type=int, nargs=3, default=(128, 64, 32))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--hippocampus", type=int, default=10)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    torch.manual_seed(0)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    base = load_model("pumit-ref-tokenizer-v0.3.0", "reconstruct")
    tok = copy.deepcopy(base.module)
    tok.meta = dict(base.meta)
    wrapped = dataclasses.replace(base, module=tok)  # the same inputs / metadata, this session's decoder
    if a.arm == "wide":
        tok.decoder = wide_decoder(tok.config.embed_dim, tuple(a.width))
    for m in (tok.encoder, tok.quantize):
        m.requires_grad_(False)
    cases = (Path("experiments/data/hippocampus_val.txt").read_text().split())[: a.hippocampus]
    log: list[dict] = []
    if a.arm == "same":
        log.append({"step": 0, **score(wrapped, cases)})
        print(log[-1], flush=True)
    cfg = {"data": ["runs/data/tok3/train.jsonl"], "val_fraction": 0.02, "seed": 0, "num_workers": 0,
           "crop_tokens": [4, 12], "batch_size": a.batch}
    dm = PretrainDataModule(cfg, out / "work")
    dm.prepare()
    dm.set_patch(4)
    opt = torch.optim.AdamW(tok.decoder.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.05)
    step, t0 = 0, time.perf_counter()
    losses: list[float] = []
    while step < a.steps:
        for batch in dm.train_dataloader():
            tok.train()
            tok.encoder.eval(), tok.quantize.eval()
            x, s = batch["image"], batch_spacing(batch["spacing"])
            with torch.no_grad():
                z, ts = tok.encoder(x, s)
                zq, _, _ = tok.quantize(z)
            recon, _ = tok.decoder(zq, ts, target_thickness=s[0])
            loss = (recon - x).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tok.decoder.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss))
            step += 1
            if step % 100 == 0:
                print(f"step {step} l1 {np.mean(losses[-100:]):.4f} {time.perf_counter() - t0:.0f}s", flush=True)
            if step % a.eval_every == 0 or step == a.steps:
                tok.eval()
                log.append({"step": step, "train_l1": round(float(np.mean(losses[-100:])), 4),
                            "seconds": round(time.perf_counter() - t0, 1), **score(wrapped, cases)})
                print(log[-1], flush=True)
                atomic_write_text(out / "log.json", json.dumps({"args": vars(a), "log": log}, indent=2))
                state = {k: v.contiguous() for k, v in tok.decoder.state_dict().items()}
                atomic_write_bytes(out / "decoder.safetensors", safetensors.torch.save(state))
            if step >= a.steps:
                break


if __name__ == "__main__":
    main()
