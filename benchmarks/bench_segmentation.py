"""End-to-end segmentation (read → sliding window → write) of a CT-sized volume: SPAD-ViT vs SwinUNETR/UNETR.

All three models run through **the same pipeline** at the same ROI, overlap, sliding-window batch,
blending and precision: :func:`pumit.inference.segment` (the engine behind ``pumit segment``) reads the
NIfTI, normalises it (CT window), runs MONAI's sliding window, takes the ``argmax`` on the accumulation
device as ``uint8`` and writes the label map + sidecar. The MONAI models are wrapped to look like a
segmentation model to the engine (they ignore the spacing). When :mod:`pumit.inference` cannot be
imported, a minimal direct pipeline (:func:`direct_segment`: SimpleITK read → MONAI
``sliding_window_inference`` with the volume resident on the device → ``uint8`` argmax → write) is used
instead and the records say so.

Steps measured:

1. ``window`` — one forward pass on one ROI window per model, memory format (contiguous vs
   channels-last-3d) and precision (fp32 vs bf16 autocast): the before/after of those optimizations,
   and the choice of the faster memory format for each model in the end-to-end runs.
2. ``e2e`` — the whole pipeline per model on the benchmark volume (``--quick``: a small volume).
3. ``e2e-full`` — ours on the 512 × 512 × 200 CT-sized volume. With ``full_windows=K`` only the first
   ``K`` windows run the model; the others return zeros and their model time is extrapolated from the
   median of the ``K`` real windows (the record says ``extrapolated: true`` and how).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from pumit.models import SegmenterConfig, SpadViTSegmenter, ViTConfig
from torch import nn

from benchmarks.baselines import segmentation_baselines
from benchmarks.common import (
    CompiledOrEager,
    PeakMemory,
    autocast,
    compare,
    param_mb,
    record,
    release,
    synchronize,
    time_calls,
)
from benchmarks.data import CT_SPACING, ct_volume, normalised_ct

OURS = "SPAD-ViT-Seg"
FULL_SHAPE = (200, 512, 512)  # (D, H, W): 200 slices of 512 x 512

PRESETS: dict[str, dict[str, Any]] = {
    "full": {"vit": "base", "roi": (64, 128, 128), "volume": FULL_SHAPE, "num_classes": 2, "swin_fs": 48},
    # --quick on the CPU: a 2-window volume for the three-model comparison (ours also runs 512x512x200)
    "cpu": {"vit": "base", "roi": (64, 128, 128), "volume": (64, 128, 224), "num_classes": 2, "swin_fs": 48},
    # smoke test: one window end to end; the "full" volume has 2 windows so that the extrapolation runs
    "tiny": {"vit": "tiny", "roi": (32, 64, 64), "volume": (32, 64, 64), "num_classes": 2, "swin_fs": 12, "full_volume": (32, 64, 96)},
}


class EngineModel(nn.Module):
    """Adapts a network to :func:`pumit.inference.load_model` (``model_type``, ``num_classes``,
    ``required_divisor``), adds an optional channels-last-3d input conversion, per-window timing, and
    the ``limit`` used to extrapolate a full-volume run from its first windows."""

    model_type = "segmentation"

    def __init__(self, net: nn.Module, name: str, num_classes: int, divisor: Callable[[Any], tuple[int, int, int]], takes_spacing: bool):
        super().__init__()
        self.net = net
        self.bench_name = name
        self.num_classes = num_classes
        self._divisor = divisor
        self.takes_spacing = takes_spacing
        self.config = SimpleNamespace(in_channels=1, num_classes=num_classes)
        self.meta = {"name": name, "input": {"modality": "ct", "normalization": {"scheme": "ct"}}}
        self.channels_last = False
        self.limit: int | None = None
        self.time_windows = False
        self.real_times: list[float] = []
        self.fake_times: list[float] = []

    def required_divisor(self, spacing) -> tuple[int, int, int]:
        return self._divisor(spacing)

    def set_channels_last(self, on: bool) -> EngineModel:
        self.channels_last = on
        self.net.to(memory_format=torch.channels_last_3d if on else torch.contiguous_format)
        return self

    def reset_counters(self, limit: int | None = None, time_windows: bool = False) -> None:
        self.limit, self.time_windows = limit, time_windows or limit is not None
        self.real_times, self.fake_times = [], []

    def forward(self, x: torch.Tensor, spacing) -> torch.Tensor:
        if self.limit is not None and len(self.real_times) >= self.limit:
            t0 = time.perf_counter()
            y = x.new_zeros((x.shape[0], self.num_classes, *x.shape[2:]))
            self.fake_times.append(time.perf_counter() - t0)
            return y
        if self.time_windows:
            synchronize(x.device)
        t0 = time.perf_counter()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        y = self.net(x, spacing) if self.takes_spacing else self.net(x)
        if self.time_windows:
            synchronize(x.device)
            self.real_times.append(time.perf_counter() - t0)
        return y


def build_models(preset: dict[str, Any]) -> dict[str, EngineModel]:
    torch.manual_seed(0)
    nc, roi = preset["num_classes"], preset["roi"]
    if preset["vit"] == "tiny":
        vit = ViTConfig.preset("tiny", embed_dim=64, num_heads=2, depth=4)
        seg_cfg = SegmenterConfig(vit=vit, num_classes=nc, adapter_channels=(16, 32, 64, 64), stem_channels=(8, 16))
    else:
        seg_cfg = SegmenterConfig(vit=ViTConfig.preset(preset["vit"]), num_classes=nc)
    ours = SpadViTSegmenter(seg_cfg).eval()
    models = {OURS: EngineModel(ours, OURS, nc, ours.required_divisor, True)}
    for name, net in segmentation_baselines(nc, roi, preset["swin_fs"], tiny=preset["vit"] == "tiny").items():
        div = 32 if name.startswith("Swin") else 16
        models[name] = EngineModel(net.eval(), name, nc, lambda s, d=div: (d, d, d), False)
    return models


# ----------------------------------------------------------------------------------------- pipelines


def _engine() -> Any | None:
    try:
        import pumit.inference as inf

        return inf
    except Exception:  # noqa: BLE001 - the engine is developed concurrently: fall back to the direct pipeline
        return None


def engine_segment(inf: Any, model: EngineModel, src: Path, dst: Path, *, device: torch.device, roi, overlap: float,
                   sw_batch: int, precision: str) -> dict[str, float]:
    """One ``pumit.inference.segment`` run; returns the seconds spent in each engine stage."""
    stamps: list[tuple[str, float]] = []

    def cb(stage: str, fraction: float, message: str) -> None:
        if not stamps or stamps[-1][0] != stage:
            stamps.append((stage, time.perf_counter()))

    lm = inf.load_model(model, "segment", meta=model.meta)
    settings = inf.InferenceSettings(device=str(device), precision=precision, roi=tuple(roi), overlap=overlap, sw_batch=sw_batch,
                                     blend="gaussian", accumulate="auto")
    t0 = time.perf_counter()
    inf.segment(str(src), str(dst), lm, settings=settings, progress=cb)
    synchronize(device)
    t1 = time.perf_counter()
    return _stage_times(stamps, t0, t1)


def _stage_times(stamps: list[tuple[str, float]], t0: float, t1: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, (stage, ts) in enumerate(stamps):
        end = stamps[i + 1][1] if i + 1 < len(stamps) else t1
        out[stage] = out.get(stage, 0.0) + end - ts
    out["total"] = t1 - t0
    return out


def direct_segment(model: EngineModel, src: Path, dst: Path, *, device: torch.device, roi, overlap: float, sw_batch: int,
                   precision: str) -> dict[str, float]:
    """Read → normalise → sliding window with the volume *on the device* (no host↔device copies in the
    loop) → ``uint8`` argmax on the device → write. Returns the seconds of each step."""
    from monai.inferers import sliding_window_inference
    from pumit.imageio import (
        from_model_layout,
        read_image,
        to_model_layout,
        write_image,
    )
    from pumit.intensity import IntensitySpec, normalize

    t = [time.perf_counter()]
    image = read_image(src)
    arr, layout = to_model_layout(image)
    t.append(time.perf_counter())
    norm, _ = normalize(arr[0], IntensitySpec(scheme="ct"))
    x = torch.from_numpy(norm)[None, None].to(device)
    synchronize(device)
    t.append(time.perf_counter())
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    spacing = layout.spacing
    model.to(device)
    with torch.inference_mode(), autocast(device, dtype):
        logits = sliding_window_inference(x, roi, sw_batch, lambda w: model(w, spacing).float(), overlap=overlap, mode="gaussian",
                                          sw_device=device, device=device, cval=float(norm.min()))
        labels = logits[0].argmax(0).to(torch.uint8)
        del logits
        labels = labels.cpu().numpy()
    t.append(time.perf_counter())
    write_image(from_model_layout(labels, layout, image, dtype=np.uint8), dst)
    t.append(time.perf_counter())
    return {"read": t[1] - t[0], "preprocess": t[2] - t[1], "inference+argmax": t[3] - t[2], "write": t[4] - t[3], "total": t[4] - t[0]}


def count_windows(shape, roi, overlap: float) -> int:
    try:
        from pumit.inference.sliding import count_windows as cw

        return int(cw(shape, roi, overlap))
    except Exception:  # noqa: BLE001 - same count as the engine, computed here
        import math

        n = 1
        for s, r in zip(shape, roi):
            step = max(int(r * (1 - overlap)), 1) if s > r else r
            n *= max(math.ceil((max(s, r) - r) / step), 0) + 1
        return n


def window_gflops(model: nn.Module, roi, spacing) -> float | None:
    """Forward GFLOP of one window (``torch.utils.flop_counter`` on a meta-device copy: no compute)."""
    import copy

    try:
        from torch.utils.flop_counter import FlopCounterMode

        meta = copy.deepcopy(model).to("meta")
        x = torch.empty((1, 1, *roi), device="meta")
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            meta(x, spacing)
        return counter.get_total_flops() / 1e9
    except Exception:  # noqa: BLE001 - informative only
        return None


# ----------------------------------------------------------------------------------------- benchmark


def run(device: torch.device, *, size: str, repeats: int, warmup: int = 1, overlap: float = 0.25, sw_batch: int | None = None,
        precisions: tuple[str, ...] = ("fp32",), window_variants: tuple[tuple[str, bool], ...] | None = None,
        bf16_window_models: str = "all", e2e_warmup: int | None = None, window_repeats: int | None = None, full_volume: bool = True, full_windows: int | None = None,
        compile_model: bool = False, log=print, workdir: str | Path | None = None) -> tuple[list[dict], list[dict], list[str]]:
    """``window_variants``: ``(precision, channels_last)`` pairs timed on one window (default: fp32 and bf16,
    contiguous and channels-last); ``bf16_window_models``: ``"all"`` or ``"ours"`` (bf16 variants only for ours).
    ``e2e_warmup``: untimed end-to-end runs before the timed ones (default ``warmup``; the window step
    already warmed each model up at the same window shape)."""
    preset = PRESETS[size]
    roi = tuple(preset["roi"])
    sw_batch = sw_batch or (4 if device.type == "cuda" else 1)
    records: list[dict] = []
    comparisons: list[dict] = []
    notes: list[str] = []
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pumit-bench-seg-"))
    tmp.mkdir(parents=True, exist_ok=True)
    inf = _engine()
    pipeline = "pumit.inference.segment" if inf is not None else "direct (benchmarks.bench_segmentation.direct_segment)"
    if inf is None:
        notes.append("segmentation: pumit.inference could not be imported; the direct pipeline was used for every model")
    models = build_models(preset)
    spacing = CT_SPACING
    common = {"roi": list(roi), "overlap": overlap, "sw_batch": sw_batch, "blend": "gaussian", "num_classes": preset["num_classes"],
              "spacing": list(spacing)}

    # 1. one window per model: memory format and precision (before / after)
    window = normalised_ct(roi)
    best_cl: dict[str, bool] = {}
    gflops = {name: window_gflops(m, roi, spacing) for name, m in models.items()}
    for name, m in models.items():
        m.to(device)
        x = window.to(device)
        per: dict[tuple[str, bool], dict] = {}
        variants = window_variants or (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))
        for prec, cl in variants:
            if prec == "bf16" and bf16_window_models == "ours" and name != OURS:
                continue
            m.set_channels_last(cl)
            dtype = torch.bfloat16 if prec == "bf16" else torch.float32

            def fwd(_m=m, _x=x, _d=dtype):
                with torch.inference_mode(), autocast(device, _d):
                    _m(_x, spacing)

            release(device)
            with PeakMemory(device) as pm:
                walls, cpus = time_calls(fwd, device, window_repeats or repeats, warmup)
            rec = record("seg_window", f"{name}/{'channels_last_3d' if cl else 'contiguous'}/{prec}", model=name,
                         memory_format="channels_last_3d" if cl else "contiguous", precision=prec, device=device, dtype=dtype,
                         shapes={"window": [1, 1, *roi], **common}, times=walls, cpu_times=cpus, warmup=warmup,
                         work=float(np.prod(roi)), work_unit="voxels", peak=pm, params_mb=param_mb(m),
                         gflops_per_window=gflops[name])
            if gflops[name]:
                rec["achieved_gflops_per_s"] = gflops[name] / rec["median_s"]
            records.append(rec)
            per[(prec, cl)] = rec
            log(f"  seg window {name:18s} {'cl3d' if cl else 'cont':4s} {prec:4s} {rec['median_s']:7.3f} s  "
                f"mem {rec['peak_mem_mb'] if rec['peak_mem_mb'] is None else round(rec['peak_mem_mb'])} MB")
        base = per.get(("fp32", False))
        # the faster format by the minimum time (the least disturbed by other load on a shared machine)
        best_cl[name] = bool(base and ("fp32", True) in per and per[("fp32", True)]["min_s"] < base["min_s"])
        if base and ("fp32", True) in per:
            comparisons.append(compare(f"seg_window/{name}: channels_last_3d vs contiguous (fp32)", per[("fp32", True)], base,
                                       metric="median_s", higher_is_better=False, note="optimization before/after: >1 = channels-last faster"))
        for cl in (False, True):
            ref = per.get(("fp32", cl))
            if ref and ("bf16", cl) in per:
                fmt = "channels_last_3d" if cl else "contiguous"
                comparisons.append(compare(f"seg_window/{name}: bf16 autocast vs fp32 ({fmt})", per[("bf16", cl)], ref,
                                           metric="median_s", higher_is_better=False, note="optimization before/after: >1 = bf16 faster"))
        if compile_model and name == OURS:
            records += _compiled_window(m, x, spacing, device, repeats, warmup, roi, common, notes, log)
        m.set_channels_last(False)
        m.to("cpu")
        release(device)

    # 2. end to end on the benchmark volume, each model in its faster memory format
    vol_shape = tuple(preset["volume"])
    src = ct_volume(vol_shape, tmp)
    n_win = count_windows(vol_shape, roi, overlap)
    e2e: dict[tuple[str, str], dict] = {}
    for prec in precisions:
        for name, m in models.items():
            m.set_channels_last(best_cl[name])
            rec = _e2e(inf, m, src, tmp, device, roi, overlap, sw_batch, prec, repeats, warmup if e2e_warmup is None else e2e_warmup,
                       common, vol_shape, n_win, pipeline, log)
            rec["gflops_per_window"] = gflops[name]
            records.append(rec)
            e2e[(name, prec)] = rec
            m.set_channels_last(False)
            m.to("cpu")
            release(device)
        ours = e2e[(OURS, prec)]
        for name in models:
            if name == OURS:
                continue
            target = 2.0 if name.startswith("Swin") else None
            comparisons.append(compare(f"seg_e2e/{prec}: {OURS} vs {name}", ours, e2e[(name, prec)], metric="median_s",
                                       higher_is_better=False, target=target,
                                       note="end-to-end seconds, same ROI/overlap/sw-batch/precision/pipeline; ratio = baseline/ours"))

    # 2b. the direct pipeline (volume resident on the device) for ours, against the engine
    if inf is not None and device.type == "cuda":
        m = models[OURS]
        m.set_channels_last(best_cl[OURS])
        rec = _e2e(None, m, src, tmp, device, roi, overlap, sw_batch, precisions[-1], repeats, warmup, common, vol_shape, n_win,
                   "direct (volume on device)", log)
        records.append(rec)
        comparisons.append(compare(f"seg_e2e/{precisions[-1]}: direct pipeline vs pumit.inference.segment ({OURS})", rec,
                                   e2e[(OURS, precisions[-1])], metric="median_s", higher_is_better=False,
                                   note=">1: keeping the whole volume on the GPU (no per-window host→device copy) pays"))
        m.set_channels_last(False)
        m.to("cpu")

    # 3. ours on the full CT-sized volume (extrapolated from K windows when full_windows is set)
    full_shape = tuple(preset.get("full_volume", FULL_SHAPE))
    if full_volume and full_shape == vol_shape and full_windows is None:  # step 2 already ran it, every window
        for prec in precisions:
            rec = dict(e2e[(OURS, prec)], group="seg_e2e_full", windows_total=n_win, windows_run=n_win)
            records.append(rec)
    elif full_volume:
        src_full = ct_volume(full_shape, tmp)
        n_full = count_windows(full_shape, roi, overlap)
        m = models[OURS]
        m.set_channels_last(best_cl[OURS])
        prec = precisions[-1]
        k = None if (full_windows is None or full_windows >= n_full) else max(int(full_windows), 1)
        m.reset_counters(limit=k, time_windows=k is not None)  # no per-window synchronisation in a real full run
        dst = tmp / "full_seg.nii.gz"
        release(device)
        with PeakMemory(device) as pm:
            if inf is not None:
                stages = engine_segment(inf, m, src_full, dst, device=device, roi=roi, overlap=overlap, sw_batch=sw_batch, precision=prec)
            else:
                stages = direct_segment(m, src_full, dst, device=device, roi=roi, overlap=overlap, sw_batch=sw_batch, precision=prec)
        real, fake = list(m.real_times), list(m.fake_times)
        m.reset_counters()
        measured = stages["total"]
        extra: dict[str, Any] = {"windows_total": n_full, "windows_run": len(real) if k else n_full, "measured_wall_s": measured,
                                 "gflops_per_window": gflops[OURS],
                                 "per_window_median_s": statistics.median(real) if real else None, "stages_s": stages}
        total = measured
        if k is not None:
            per_window = statistics.median(real[1:] if len(real) > 2 else real)
            # sw_batch windows per model call: the fake calls stand for (calls) * sw_batch windows
            missing_calls = len(fake)
            total = measured - sum(fake) + missing_calls * per_window
            extra["extrapolation"] = (f"{len(real)} of {len(real) + len(fake)} sliding-window model calls ran the model "
                                      f"({sw_batch} window(s) per call, {n_full} windows); total = measured {measured:.1f} s "
                                      f"- {sum(fake):.2f} s of stand-in calls + {missing_calls} x median {per_window:.2f} s per call. "
                                      "Read, normalisation, blending, argmax and write ran on the full volume.")
        rec = record("seg_e2e_full", f"{OURS}/{prec}/full{'-extrapolated' if k else ''}", model=OURS, precision=prec, device=device,
                     dtype=torch.bfloat16 if prec == "bf16" else torch.float32,
                     shapes={"volume": list(full_shape), **common, "memory_format": "channels_last_3d" if best_cl[OURS] else "contiguous"},
                     times=[total], warmup=0, work=float(np.prod(full_shape)), work_unit="voxels", peak=pm, params_mb=param_mb(m),
                     extrapolated=k is not None, pipeline=pipeline, **extra)
        records.append(rec)
        log(f"  seg full {OURS} {prec}: {total:.1f} s{' (extrapolated)' if k else ''}, measured {measured:.1f} s, "
            f"{extra['windows_run']}/{n_full} windows")
        m.set_channels_last(False)
        m.to("cpu")
    shutil.rmtree(tmp, ignore_errors=True) if workdir is None else None
    release(device)
    return records, comparisons, notes


def _e2e(inf, m: EngineModel, src: Path, tmp: Path, device, roi, overlap, sw_batch, prec, repeats, warmup, common, vol_shape, n_win,
         pipeline: str, log) -> dict:
    dst = tmp / f"seg_{m.bench_name.replace('/', '_').replace('(', '_').replace(')', '_')}.nii.gz"
    stage_runs: list[dict[str, float]] = []

    def once():
        if inf is not None:
            st = engine_segment(inf, m, src, dst, device=device, roi=roi, overlap=overlap, sw_batch=sw_batch, precision=prec)
        else:
            st = direct_segment(m, src, dst, device=device, roi=roi, overlap=overlap, sw_batch=sw_batch, precision=prec)
        stage_runs.append(st)

    for _ in range(warmup):
        once()
    stage_runs.clear()
    release(device)
    with PeakMemory(device) as pm:
        walls, cpus = time_calls(once, device, repeats, 0)
    stages = {k: statistics.median(r[k] for r in stage_runs if k in r) for k in stage_runs[0]}
    rec = record("seg_e2e", f"{m.bench_name}/{prec}/{pipeline.split()[0]}", model=m.bench_name, precision=prec, device=device,
                 dtype=torch.bfloat16 if prec == "bf16" else torch.float32,
                 shapes={"volume": list(vol_shape), **common, "memory_format": "channels_last_3d" if m.channels_last else "contiguous"},
                 times=walls, cpu_times=cpus, warmup=warmup, work=float(np.prod(vol_shape)), work_unit="voxels", peak=pm,
                 params_mb=param_mb(m), windows=n_win, stages_s=stages, pipeline=pipeline, output_dtype="uint8")
    log(f"  seg e2e {m.bench_name:18s} {prec:4s} {rec['median_s']:7.2f} s ({n_win} windows)  "
        f"mem {rec['peak_mem_mb'] if rec['peak_mem_mb'] is None else round(rec['peak_mem_mb'])} MB  stages "
        + " ".join(f"{k}={v:.2f}" for k, v in stages.items()))
    dst.unlink(missing_ok=True)
    return rec


def _compiled_window(m: EngineModel, x, spacing, device, repeats, warmup, roi, common, notes, log) -> list[dict]:
    """Optional torch.compile of our network for one window (clean fallback to eager, with a note)."""
    runner = CompiledOrEager(m.net)

    def fwd():
        with torch.inference_mode():
            runner(x, spacing)

    walls, cpus = time_calls(fwd, device, repeats, warmup)
    if runner.failure:
        notes.append(f"torch.compile of {OURS} failed, eager used: {runner.failure}")
        return []
    rec = record("seg_window", f"{OURS}/{'channels_last_3d' if m.channels_last else 'contiguous'}/fp32/compiled", model=OURS,
                 memory_format="channels_last_3d" if m.channels_last else "contiguous", precision="fp32", compiled=True,
                 compile_s=runner.compile_s, device=device, dtype=torch.float32, shapes={"window": [1, 1, *roi], **common},
                 times=walls, cpu_times=cpus, warmup=warmup)
    log(f"  seg window {OURS} compiled {rec['median_s']:.3f} s (first call incl. compile {runner.compile_s or 0:.0f} s)")
    return [rec]
