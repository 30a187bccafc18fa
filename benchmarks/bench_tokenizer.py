"""Tokenizer throughput: :meth:`UniversalTokenizer.encode` and :meth:`~UniversalTokenizer.decode` (inference).

Throughput is reported in input voxels per second and tokens per second; memory as in
:mod:`benchmarks.common`. Cases: a 2D batch, an isotropic and an anisotropic 3D batch.
"""

from __future__ import annotations

from typing import Any

import torch
from pumit.models import TokenizerConfig, UniversalTokenizer
from pumit.spacing import planar_spacing

from benchmarks.common import (
    PeakMemory,
    autocast,
    compare,
    dtype_name,
    param_mb,
    record,
    release,
    time_calls,
)
from benchmarks.data import patches

PRESETS: dict[str, dict[str, Any]] = {
    "full": {"tokenizer": "base", "cases": [
        ("2d", 16, (1, 256, 256), planar_spacing(0.8)),
        ("3d-iso", 2, (128, 128, 128), (1.0, 1.0, 1.0)),
        ("3d-aniso", 2, (32, 256, 256), (5.0, 0.8, 0.8)),
    ]},
    "cpu": {"tokenizer": "base", "cases": [
        ("2d", 2, (1, 256, 256), planar_spacing(0.8)),
        ("3d-iso", 1, (64, 96, 96), (1.0, 1.0, 1.0)),
        ("3d-aniso", 1, (16, 128, 128), (5.0, 0.8, 0.8)),
    ]},
    "tiny": {"tokenizer": "tiny", "cases": [
        ("2d", 1, (1, 32, 32), planar_spacing(0.8)),
        ("3d-iso", 1, (16, 32, 32), (1.0, 1.0, 1.0)),
        ("3d-aniso", 1, (4, 32, 32), (4.0, 1.0, 1.0)),
    ]},
}


def run(device: torch.device, *, size: str, repeats: int, warmup: int = 1, dtypes: tuple[torch.dtype, ...] = (torch.float32,),
        formats: tuple[str, ...] = ("contiguous",), log=print) -> tuple[list[dict], list[dict], list[str]]:
    """``formats``: ``contiguous`` and/or ``channels_last_3d`` (model and input); with both, the records of the
    second are compared with the first (the channels-last before/after)."""
    preset = PRESETS[size]
    torch.manual_seed(0)
    tok = UniversalTokenizer(TokenizerConfig.preset(preset["tokenizer"])).eval().to(device)
    records: list[dict] = []
    comparisons: list[dict] = []
    by_key: dict[tuple[str, str, str, str], dict] = {}
    for fmt in formats:
        mf = torch.channels_last_3d if fmt == "channels_last_3d" else torch.contiguous_format
        tok = tok.to(memory_format=mf)
        for name, batch, shape, spacing in preset["cases"]:
            x = patches(batch, shape).to(device).contiguous(memory_format=mf)
            div = tok.required_divisor(spacing)
            assert all(n % k == 0 for n, k in zip(shape, div)), (shape, div)
            for dtype in dtypes:
                with torch.inference_mode(), autocast(device, dtype):
                    probs, _, ts = tok.encode(x, spacing)
                    n_tok = probs.shape[0] * probs.shape[1] * probs.shape[2] * probs.shape[3]
                    shapes = {"input": list(x.shape), "spacing": list(spacing), "tokens": list(probs.shape[:4]),
                              "codebook": tok.codebook_size, "channels": list(tok.config.channels)}
                    calls = (("encode", lambda _t=tok, _x=x, _s=spacing: _t.encode(_x, _s)),
                             ("decode", lambda _t=tok, _p=probs, _ts=ts, _s=spacing: _t.decode(_p, _ts, _s)))
                    for what, fn in calls:
                        release(device)
                        with PeakMemory(device) as pm:
                            walls, cpus = time_calls(fn, device, repeats, warmup)
                        rec = record("tokenizer", f"{what}/{name}/{fmt}/{dtype_name(dtype)}", model=f"tokenizer-{preset['tokenizer']}",
                                     case=name, op=what, memory_format=fmt, device=device, dtype=dtype, shapes=shapes, times=walls,
                                     cpu_times=cpus, warmup=warmup, work=float(x.numel()), work_unit="voxels", peak=pm,
                                     params_mb=param_mb(tok))
                        rec["tokens_per_s"] = n_tok / rec["median_s"]
                        records.append(rec)
                        by_key[(what, name, fmt, dtype_name(dtype))] = rec
                        log(f"  tokenizer {what} {name:9s} {fmt:16s} {dtype_name(dtype):8s} {rec['median_s']*1e3:9.1f} ms  "
                            f"{rec['throughput']/1e6:8.2f} Mvox/s  {rec['tokens_per_s']:9.0f} tok/s  "
                            f"mem {rec['peak_mem_mb'] if rec['peak_mem_mb'] is None else round(rec['peak_mem_mb'])} MB")
                del probs, calls
            del x
    if len(formats) > 1:
        for (what, name, fmt, dt), rec in by_key.items():
            if fmt == formats[0]:
                continue
            ref = by_key.get((what, name, formats[0], dt))
            if ref:
                comparisons.append(compare(f"tokenizer/{what}/{name}/{dt}: {fmt} vs {formats[0]}", rec, ref, metric="median_s",
                                           higher_is_better=False, note="optimization before/after: >1 = the second format is faster"))
    tok.to(memory_format=torch.contiguous_format)
    return records, comparisons, []
