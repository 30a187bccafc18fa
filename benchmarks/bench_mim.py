"""MIM pre-training step: SPAD-ViT (:class:`pumit.models.SpadViTMIM`) vs ViT baselines.

One step = forward (mask-token replacement, blocks, MIM head) + soft-target cross-entropy on the masked
tokens + backward + AdamW step. Targets are fixed soft distributions (the tokenizer that produces them in
real pre-training is frozen and the same for every model, so it is left out). Both models see the same
number of tokens: the baseline's patch is our adaptive patch ``(pd, P, P)``.

Cases: a 2D batch (``D = 1``, planar spacing), an isotropic 3D batch and an anisotropic 3D batch (5 mm
slices, 0.8 mm in-plane: DA 2, so our depth patch is ``16 >> 2 = 4``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from pumit.models import SpadViTMIM, ViTConfig
from pumit.models.vit import random_mask, soft_cross_entropy
from pumit.spacing import planar_spacing

from benchmarks.baselines import mim_baselines
from benchmarks.common import (
    CompiledOrEager,
    PeakMemory,
    autocast,
    compare,
    param_mb,
    record,
    release,
    time_calls,
    time_interleaved,
)
from benchmarks.data import patches


@dataclass(frozen=True)
class MimCase:
    name: str
    batch: int
    shape: tuple[int, int, int]  # (D, H, W)
    spacing: tuple[float, float, float]


#: size presets: model config overrides and the three batches
PRESETS: dict[str, dict[str, Any]] = {
    # the real pre-training size (ViT-B); for CUDA
    "full": {
        "vit": {"preset": "base"},
        "cases": [
            MimCase("2d", 32, (1, 224, 224), planar_spacing(0.8)),
            MimCase("3d-iso", 4, (128, 128, 128), (1.0, 1.0, 1.0)),
            MimCase("3d-aniso", 4, (32, 256, 256), (5.0, 0.8, 0.8)),
        ],
    },
    # 2 CPU cores: ViT-S width, 6 blocks, small batches
    "cpu": {
        "vit": {"preset": "small", "depth": 6},
        "cases": [
            MimCase("2d", 4, (1, 224, 224), planar_spacing(0.8)),
            MimCase("3d-iso", 2, (96, 96, 96), (1.0, 1.0, 1.0)),
            MimCase("3d-aniso", 2, (16, 128, 128), (5.0, 0.8, 0.8)),
        ],
    },
    # smoke test
    "tiny": {
        "vit": {"preset": "tiny", "embed_dim": 64, "num_heads": 2, "depth": 2, "patch_size": 8, "codebook_size": 64},
        "cases": [
            MimCase("2d", 2, (1, 32, 32), planar_spacing(0.8)),
            MimCase("3d-iso", 1, (16, 16, 16), (1.0, 1.0, 1.0)),
            MimCase("3d-aniso", 1, (4, 32, 32), (4.0, 1.0, 1.0)),
        ],
    },
}


def _vit_config(spec: dict[str, Any]) -> ViTConfig:
    spec = dict(spec)
    return ViTConfig.preset(spec.pop("preset"), **spec)


class _Trainer:
    """Holds one model, its AdamW and the batch; ``step()`` runs one training step.

    ``forward(module, mask)`` runs the model given as ``module`` (the eager model, or its
    :func:`torch.compile` version when compiling)."""

    def __init__(self, name: str, model: torch.nn.Module, forward, device: torch.device, dtype: torch.dtype):
        self.name, self.model, self.forward, self.device, self.dtype = name, model, forward, device, dtype
        self.runner: Any = model
        self.opt: torch.optim.Optimizer | None = None

    def to(self, device: torch.device) -> _Trainer:
        self.model.to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.05)
        return self

    def offload(self) -> None:
        self.opt = None
        self.model.to("cpu")

    def step(self, target: torch.Tensor, mask: torch.Tensor) -> None:
        with autocast(self.device, self.dtype):
            logits = self.forward(self.runner, mask)
        loss = soft_cross_entropy(logits, target, mask)
        loss.backward()
        assert self.opt is not None
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def run(device: torch.device, *, size: str, repeats: int, warmup: int = 1, dtypes: tuple[torch.dtype, ...] = (torch.float32,),
        use_timm: bool = True, cases: tuple[str, ...] | None = None, compile_model: bool = False, log=print) -> tuple[list[dict], list[dict], list[str]]:
    preset = PRESETS[size]
    cfg = _vit_config(preset["vit"])
    records: list[dict] = []
    comparisons: list[dict] = []
    notes: list[str] = []
    interleave = device.type == "cpu"
    for case in preset["cases"]:
        if cases and case.name not in cases:
            continue
        torch.manual_seed(0)
        ours = SpadViTMIM(cfg)
        grid, patch = ours.vit.token_grid(case.shape, case.spacing)
        n_tok = grid[0] * grid[1] * grid[2]
        x = patches(case.batch, case.shape).to(device)
        gen = torch.Generator().manual_seed(1)
        mask = random_mask(case.batch, n_tok, 0.55, generator=gen).to(device)
        target = torch.softmax(torch.randn(case.batch, n_tok, cfg.codebook_size, generator=gen) * 3, -1).to(device)
        baselines, bnotes = mim_baselines(dim=cfg.embed_dim, depth=cfg.depth, heads=cfg.num_heads, codebook=cfg.codebook_size,
                                          img_size=case.shape, patch=patch, grid=grid, use_timm=use_timm)
        notes += [f"mim/{case.name}: {n}" for n in bnotes]
        trainers = [_Trainer("spad-vit", ours, lambda mod, m, _x=x, _s=case.spacing: mod(_x, _s, m)[0], device, torch.float32)]
        for b in baselines:
            xb = b.image(x) if hasattr(b, "image") else x
            trainers.append(_Trainer(b.name, b, lambda mod, m, _x=xb: mod(_x, m), device, torch.float32))
        for t in [t for t in trainers if t.name.startswith("timm")]:  # an optional baseline must not sink the case
            try:
                t.to(device).step(target, mask)
            except Exception as e:  # noqa: BLE001 - timm's API differs across versions
                notes.append(f"mim/{case.name}: {t.name} dropped after a failed trial step: {type(e).__name__}: {str(e)[:160]}")
                trainers.remove(t)
            finally:
                t.offload()
        shapes = {"input": [case.batch, 1, *case.shape], "spacing": list(case.spacing), "token_grid": list(grid), "patch": list(patch),
                  "tokens_per_step": case.batch * n_tok, "embed_dim": cfg.embed_dim, "depth": cfg.depth, "heads": cfg.num_heads,
                  "codebook": cfg.codebook_size}
        variants = [(dt, False) for dt in dtypes] + ([(dtypes[-1], True)] if compile_model else [])
        for dtype, compiled in variants:
            for t in trainers:
                t.dtype = dtype
                t.runner = t.model
                if compiled:
                    t.runner = CompiledOrEager(t.model)
            tag = dtype_str(dtype) + ("-compiled" if compiled else "")
            timings: dict[str, tuple[list[float], list[float]]] = {}
            mems: dict[str, PeakMemory] = {}
            if interleave:
                for t in trainers:
                    t.to(device)
                timings = time_interleaved({t.name: (lambda _t=t, _y=target, _m=mask: _t.step(_y, _m)) for t in trainers},
                                           device, repeats, warmup)
                for t in trainers:
                    with PeakMemory(device) as pm:
                        t.step(target, mask)
                    mems[t.name] = pm
            else:
                for t in trainers:  # one model on the GPU at a time: absolute peak memory is its own
                    release(device)
                    with PeakMemory(device) as pm:
                        t.to(device)
                        timings[t.name] = time_calls(lambda _t=t, _y=target, _m=mask: _t.step(_y, _m), device, repeats, warmup)
                    mems[t.name] = pm
                    t.offload()
            recs = {}
            for t in trainers:
                walls, cpus = timings[t.name]
                rec = record("mim_step", f"{t.name}/{case.name}/{tag}", model=t.name, case=case.name, compiled=compiled, device=device,
                             dtype=dtype, shapes=shapes,
                             times=walls, cpu_times=cpus, warmup=warmup, work=case.batch * n_tok, work_unit="tokens",
                             peak=mems[t.name], params_mb=param_mb(t.model),
                             params_m=round(sum(p.numel() for p in t.model.parameters()) / 1e6, 2),
                             sdpa_blocks=getattr(t.model, "sdpa_blocks", None))
                if compiled and isinstance(t.runner, CompiledOrEager):
                    rec["compile_s"] = t.runner.compile_s
                    rec["compile_failure"] = t.runner.failure
                    if t.runner.failure:
                        notes.append(f"mim/{case.name}: torch.compile({t.name}) failed, eager used: {t.runner.failure}")
                recs[t.name] = rec
                records.append(rec)
                log(f"  mim {case.name:9s} {t.name:10s} {tag:15s} {rec['median_s']*1e3:9.1f} ms  {rec['throughput']:10.0f} tok/s  "
                    f"mem {rec['peak_mem_mb'] if rec['peak_mem_mb'] is None else round(rec['peak_mem_mb'])} MB")
            for t in trainers[1:]:
                comparisons.append(compare(f"mim_step/{case.name}/{tag}: spad-vit vs {t.name}", recs["spad-vit"], recs[t.name],
                                           metric="throughput", target=0.95,
                                           note="tokens/s, same width/depth/heads and token count"))
        for t in trainers:
            t.runner = t.model
            t.offload()
        del trainers, baselines, ours, x
        release(device)
    return records, comparisons, notes


def dtype_str(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
