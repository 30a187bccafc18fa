"""SAC layers vs plain convolutions of the same shape: the price of spacing awareness.

For each SAC layer two plain references are timed in the same interleaved loop:

* ``plain-full``: the ``nn.Conv3d`` / ``nn.ConvTranspose3d`` a spacing-unaware network would run (the
  full isotropic kernel and stride). On an anisotropic map the SAC layer runs a *smaller* kernel
  (depth taps sum-pooled), so it can be faster than this reference.
* ``plain-same``: a plain conv with exactly the kernel and stride that the SAC layer ends up using.
  ``sac / plain-same`` is the pure overhead (spacing bookkeeping, weight sum-pooling per call).

Forward only (inference) and forward + backward (training) are both measured; also in
channels-last-3d memory format, which pays for 3D convolutions on the CPU (oneDNN) and on recent GPUs.
"""

from __future__ import annotations

from typing import Any

import torch
from pumit.models.sac import SACConv, SACDownsample, SACUpsample, _sum_pool_depth
from pumit.spacing import down_depth_stride, pending_halvings, up_depth_stride
from torch import nn

from benchmarks.common import compare, record, time_interleaved

PRESETS: dict[str, dict[str, Any]] = {
    "full": {"batch": 2, "channels": 64, "shape": (64, 128, 128)},
    "cpu": {"batch": 1, "channels": 32, "shape": (32, 96, 96)},
    "tiny": {"batch": 1, "channels": 4, "shape": (8, 16, 16)},
}
SPACINGS = {"iso": (1.0, 1.0, 1.0), "aniso": (4.0, 0.8, 0.8)}  # aniso: DA 2


def _layers(c: int, spacing: tuple[float, float, float]) -> list[tuple[str, nn.Module, Any, Any, Any]]:
    """``(name, sac_layer, sac_call, plain_full_call, plain_same_call)`` for the three SAC layer kinds."""
    out = []
    conv = SACConv(c, c)
    full = nn.Conv3d(c, c, 3, padding=1)
    full.load_state_dict(conv.state_dict())
    aniso = pending_halvings(spacing) > 0
    same_w = _sum_pool_depth(conv.weight.detach(), 1).clone() if aniso else conv.weight.detach().clone()
    same = nn.Conv3d(c, c, tuple(same_w.shape[2:]), padding=(0, 1, 1) if aniso else 1)
    same.weight.data.copy_(same_w)
    same.bias.data.copy_(conv.bias.detach())
    out.append(("SACConv3", conv, lambda x, m=conv: m(x, spacing)[0], full, same))

    down = SACDownsample(c, 2 * c, 2)
    t = down_depth_stride(spacing, 2)
    full_d = nn.Conv3d(c, 2 * c, 2, stride=2)
    full_d.load_state_dict(down.state_dict())
    same_d = nn.Conv3d(c, 2 * c, (t, 2, 2), stride=(t, 2, 2))
    same_d.weight.data.copy_(_sum_pool_depth(down.weight.detach(), t) if t != 2 else down.weight.detach())
    out.append(("SACDownsample2", down, lambda x, m=down: m(x, spacing)[0], full_d, same_d))

    up = SACUpsample(c, c // 2, 2)
    tu = up_depth_stride(spacing, 2, spacing[0] / 2 if not aniso else spacing[0])
    full_u = nn.ConvTranspose3d(c, c // 2, 2, stride=2)
    full_u.load_state_dict(up.state_dict())
    same_u = nn.ConvTranspose3d(c, c // 2, (tu, 2, 2), stride=(tu, 2, 2))
    same_u.weight.data.copy_(_sum_pool_depth(up.weight.detach(), tu) if tu != 2 else up.weight.detach())
    target = spacing[0] / 2 if not aniso else spacing[0]
    out.append(("SACUpsample2", up, lambda x, m=up, tt=target: m(x, spacing, tt)[0], full_u, same_u))
    return out


def run(device: torch.device, *, size: str, repeats: int, warmup: int = 1, log=print) -> tuple[list[dict], list[dict], list[str]]:
    p = PRESETS[size]
    b, c, shape = p["batch"], p["channels"], p["shape"]
    records: list[dict] = []
    comparisons: list[dict] = []
    for sp_name, spacing in SPACINGS.items():
        torch.manual_seed(0)
        for lname, sac, sac_call, full, same in _layers(c, spacing):
            for m in (sac, full, same):
                m.to(device)
            x0 = torch.randn(b, c, *shape, device=device)
            for fmt in ("contiguous", "channels_last_3d"):
                mf = torch.contiguous_format if fmt == "contiguous" else torch.channels_last_3d
                for m in (sac, full, same):
                    m.to(memory_format=mf)
                x = x0.contiguous(memory_format=mf)
                for mode in ("forward", "fwd+bwd"):
                    xin = x.detach().requires_grad_(mode == "fwd+bwd")

                    def wrap(f, _mode=mode, _x=xin):
                        if _mode == "forward":
                            def g():
                                with torch.inference_mode():
                                    f(_x)
                        else:
                            def g():
                                f(_x).sum().backward()
                        return g

                    fns = {"sac": wrap(sac_call), "plain-full": wrap(full), "plain-same": wrap(same)}
                    timings = time_interleaved(fns, device, repeats, warmup)
                    with torch.no_grad():
                        out_shape = list(sac_call(x).shape)
                    shapes = {"input": list(x.shape), "spacing": list(spacing), "output": out_shape,
                              "sac_kernel": list(same.weight.shape[2:]), "full_kernel": list(full.weight.shape[2:])}
                    recs = {}
                    for k, (walls, cpus) in timings.items():
                        rec = record("sac", f"{lname}/{sp_name}/{fmt}/{mode}/{k}", layer=lname, spacing_kind=sp_name, memory_format=fmt,
                                     mode=mode, impl=k, device=device, dtype=torch.float32, shapes=shapes, times=walls, cpu_times=cpus,
                                     warmup=warmup, work=float(x.numel()), work_unit="voxels")
                        recs[k] = rec
                        records.append(rec)
                    for ref in ("plain-same", "plain-full"):
                        comparisons.append(compare(f"sac/{lname}/{sp_name}/{fmt}/{mode}: sac vs {ref}", recs["sac"], recs[ref],
                                                   metric="median_s", higher_is_better=False,
                                                   note="ratio = plain time / SAC time (1 = no overhead; <1 = SAC slower)"))
                    log(f"  sac {lname:15s} {sp_name:5s} {fmt:16s} {mode:7s} sac {recs['sac']['median_s']*1e3:8.2f} ms  "
                        f"same {recs['plain-same']['median_s']*1e3:8.2f} ms  full {recs['plain-full']['median_s']*1e3:8.2f} ms")
    return records, comparisons, []
