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
    load_snapshot,
    param_mb,
    record,
    release,
    synchronize,
    time_calls,
    timed,
)
from benchmarks.data import CT_SPACING, ct_volume, normalised_ct

OURS = "SPAD-ViT-Seg"  # the light decoder: pumit's default segmentation architecture
OURS_UNET = "SPAD-ViT-Seg(unet)"  # the original U-Net decoder (the shipped hippocampus model's design)
FULL_SHAPE = (200, 512, 512)  # (D, H, W): 200 slices of 512 x 512
ISO_SPACING = (1.0, 1.0, 1.0)
#: issue 13's per-window goals for ours: >= 1.5x faster than the nnU-Net-like DynUNet, not slower than UNETR
WINDOW_TARGETS = {"DynUNet": 1.5, "UNETR": 1.0}

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
        self.memory_format = torch.channels_last_3d if on else torch.contiguous_format  # the engine keeps it
        self.net.to(memory_format=self.memory_format)
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
    models: dict[str, EngineModel] = {}
    for name, decoder in ((OURS, "light"), (OURS_UNET, "unet")):
        torch.manual_seed(0)
        if preset["vit"] == "tiny":
            vit = ViTConfig.preset("tiny", embed_dim=64, num_heads=2, depth=4)
            widths = {"light": ((8, 16, 32, 64), (4, 8)), "unet": ((16, 32, 64, 64), (8, 16))}[decoder]
            seg_cfg = SegmenterConfig(vit=vit, num_classes=nc, adapter_channels=widths[0], stem_channels=widths[1], decoder=decoder)
        else:  # the default configuration of each decoder (pumit train segment --decoder light|unet, ViT-B)
            seg_cfg = SegmenterConfig(vit=ViTConfig.preset(preset["vit"]), num_classes=nc, decoder=decoder)
        net = SpadViTSegmenter(seg_cfg).eval()
        models[name] = EngineModel(net, name, nc, net.required_divisor, True)
    torch.manual_seed(0)
    for name, net in segmentation_baselines(nc, roi, preset["swin_fs"], tiny=preset["vit"] == "tiny", spacing=CT_SPACING).items():
        div = 32 if name.startswith(("Swin", "DynUNet")) else 16
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
    dtype = torch.bfloat16 if _resolved_precision(device, precision) == "bf16" else torch.float32
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


def _forward(m: nn.Module, x: torch.Tensor, spacing, device: torch.device, dtype: torch.dtype) -> None:
    """One inference forward pass of ``m`` under ``dtype`` autocast (what the per-window benchmarks time)."""
    with torch.inference_mode(), autocast(device, dtype):
        m(x, spacing)


def _rotated(items: list, r: int) -> list:
    """Round ``r`` of a rotation: start at item ``r mod n``; odd rounds also reversed (no one always first)."""
    if not items:
        return items
    k = r % len(items)
    out = items[k:] + items[:k]
    return out[::-1] if r % 2 else out


def _engine_defaults(inf: Any | None) -> dict[str, Any]:
    """The defaults of ``pumit segment`` (:class:`pumit.inference.InferenceSettings`), read from the engine."""
    if inf is None:
        return {"overlap": 0.5, "precision": "auto", "blend": "gaussian", "sw_batch": None}
    d = inf.InferenceSettings()
    return {"overlap": d.overlap, "precision": d.precision, "blend": d.blend, "sw_batch": d.sw_batch}


def _resolved_precision(device: torch.device, precision: str) -> str:
    """What ``precision`` (``auto``/``fp32``/``bf16``) means for segmentation on ``device``: ``fp32`` or ``bf16``."""
    if precision != "auto":
        return precision
    try:
        from pumit.inference.devices import resolve_precision

        dt = resolve_precision("auto", device, cpu_bf16=True)
    except Exception:  # noqa: BLE001 - engine unavailable: fp32
        return "fp32"
    return "bf16" if dt == torch.bfloat16 else ("fp16" if dt == torch.float16 else "fp32")


def run(device: torch.device, *, size: str, repeats: int, warmup: int = 1, overlap: float | None = None, sw_batch: int | None = None,
        precisions: tuple[str, ...] = ("auto",), window_variants: tuple[tuple[str, bool], ...] | None = None,
        bf16_window_models: str = "all", e2e_warmup: int | None = None, window_repeats: int | None = None, full_volume: bool = True,
        full_windows: int | None = None, compile_model: bool = False, log=print, workdir: str | Path | None = None,
        steps: tuple[str, ...] = ("window", "e2e", "full"), formats_from: str | Path | None = None) -> tuple[list[dict], list[dict], list[str]]:
    """Every step interleaves the models **with rotation** after warm-up calls of each (so background load and
    cache/thermal drift hit all alike), and records process CPU time beside wall time plus the load before/after.

    ``overlap`` / ``sw_batch`` / ``precisions``: ``None`` / ``"auto"`` = the engine's defaults (what ``pumit segment``
    does); ``window_variants``: ``(precision, channels_last)`` pairs timed on one window (default: fp32 and bf16,
    contiguous and channels-last); ``bf16_window_models``: ``"all"`` or ``"ours"``. ``e2e_warmup``: untimed end-to-end
    runs of each model before the timed ones (default ``warmup``). ``full_windows=K`` runs only K windows of the
    512x512x200 volume and extrapolates (``None``: all windows, measured). ``steps``: which of window / e2e / full."""
    preset = PRESETS[size]
    roi = tuple(preset["roi"])
    records: list[dict] = []
    comparisons: list[dict] = []
    notes: list[str] = []
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pumit-bench-seg-"))
    tmp.mkdir(parents=True, exist_ok=True)
    inf = _engine()
    pipeline = "pumit.inference.segment" if inf is not None else "direct (benchmarks.bench_segmentation.direct_segment)"
    if inf is None:
        notes.append("segmentation: pumit.inference could not be imported; the direct pipeline was used for every model")
    defaults = _engine_defaults(inf)
    overlap = defaults["overlap"] if overlap is None else overlap
    sw_batch = sw_batch or defaults["sw_batch"] or (4 if device.type == "cuda" else 1)
    models = build_models(preset)
    spacing = CT_SPACING
    common = {"roi": list(roi), "overlap": overlap, "sw_batch": sw_batch, "blend": "gaussian", "num_classes": preset["num_classes"],
              "spacing": list(spacing)}
    notes.append(f"segmentation settings: overlap {overlap}, sw_batch {sw_batch}, precision {list(precisions)} "
                 f"(engine defaults: {defaults}); every step interleaves the models with rotation after warm-up")

    # 1. one window per model, memory format x precision, all (model, variant) pairs interleaved with rotation
    window = normalised_ct(roi)
    gflops = {name: window_gflops(m, roi, spacing) for name, m in models.items()}
    gflops_iso = window_gflops(models[OURS], roi, ISO_SPACING)
    variants = list(window_variants or (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)))
    per: dict[tuple[str, str, bool, tuple], dict] = {}
    best_cl: dict[tuple[str, str], bool] = {}
    if "window" in steps:
        entries: list[tuple[str, str, bool, tuple]] = []
        for name in models:
            for prec, cl in variants:
                if prec == "bf16" and bf16_window_models == "ours" and name not in (OURS, OURS_UNET):
                    continue
                entries.append((name, prec, cl, spacing))
        for prec, cl in variants:  # ours at isotropic 1 mm: the token grid of a spacing-aware ViT depends on the spacing
            entries.append((OURS, prec, cl, ISO_SPACING))
        names = list(models)
        times: dict[tuple, tuple[list[float], list[float]]] = {e: ([], []) for e in entries}
        load0 = load_snapshot()
        n_rep = window_repeats or repeats
        for r in range(warmup + n_rep):
            for name in _rotated(names, r):  # models rotate; a model's variants run together (weights converted once)
                m = models[name]
                m.to(device)
                x = window.to(device)
                for e in _rotated([e for e in entries if e[0] == name], r):
                    _, prec, cl, sp = e
                    m.set_channels_last(cl)
                    dtype = torch.bfloat16 if prec == "bf16" else torch.float32
                    wall, cpu = timed(lambda: _forward(m, x, sp, device, dtype), device)
                    if r >= warmup:
                        times[e][0].append(wall)
                        times[e][1].append(cpu)
                m.set_channels_last(False)
                if device.type != "cpu":
                    m.to("cpu")
                release(device)
        load1 = load_snapshot()
        for e, (walls, cpus) in times.items():
            name, prec, cl, sp = e
            iso = sp == ISO_SPACING
            gf = gflops_iso if iso else gflops[name]
            dtype = torch.bfloat16 if prec == "bf16" else torch.float32
            rec = record("seg_window", f"{name}/{'channels_last_3d' if cl else 'contiguous'}/{prec}" + ("/iso1mm" if iso else ""),
                         model=name, memory_format="channels_last_3d" if cl else "contiguous", precision=prec, device=device,
                         dtype=dtype, shapes={"window": [1, 1, *roi], **common, "spacing": list(sp)}, times=walls, cpu_times=cpus,
                         warmup=warmup, work=float(np.prod(roi)), work_unit="voxels", params_mb=param_mb(models[name]),
                         gflops_per_window=gf, interleaved=True, load_before=load0, load_after=load1)
            if gf:
                rec["achieved_gflops_per_s"] = gf / rec["median_s"]
            records.append(rec)
            per[e] = rec
            log(f"  seg window {name:20s} {'cl3d' if cl else 'cont':4s} {prec:4s}{' iso' if iso else ''} {rec['median_s']:7.3f} s "
                f"(cpu {rec.get('cpu_median_s', 0):.2f} s, {gf or 0:.0f} GFLOP)")
        for name in models:
            for prec in ("fp32", "bf16"):
                a, b = per.get((name, prec, True, spacing)), per.get((name, prec, False, spacing))
                if a and b:
                    best_cl[(name, prec)] = a["median_s"] < b["median_s"]
                    comparisons.append(compare(f"seg_window/{name}: channels_last_3d vs contiguous ({prec})", a, b, metric="median_s",
                                               higher_is_better=False, note="optimization before/after: >1 = channels-last faster"))
            for cl in (False, True):
                a, b = per.get((name, "bf16", cl, spacing)), per.get((name, "fp32", cl, spacing))
                if a and b:
                    comparisons.append(compare(f"seg_window/{name}: bf16 autocast vs fp32 ({'channels_last_3d' if cl else 'contiguous'})",
                                               a, b, metric="median_s", higher_is_better=False, note="optimization before/after: >1 = bf16 faster"))
        # ours vs every baseline per window, each in its faster memory format, per precision
        for prec in ("fp32", "bf16"):
            def best(name: str, sp=spacing) -> dict | None:
                cands = [per.get((name, prec, cl, sp)) for cl in (False, True)]
                cands = [c for c in cands if c]
                return min(cands, key=lambda c: c["median_s"]) if cands else None

            ours = best(OURS)
            for name in models:
                if name == OURS or ours is None or best(name) is None:
                    continue
                target = WINDOW_TARGETS.get(name.split("(")[0]) if name != OURS_UNET else None
                comparisons.append(compare(f"seg_window/{prec}: {OURS} vs {name}", ours, best(name), metric="median_s",
                                           higher_is_better=False, target=target,
                                           note="one 64x128x128 window at CT spacing, each model in its faster memory format"))
            iso = best(OURS, ISO_SPACING)
            unetr = next((best(n) for n in models if n.startswith("UNETR")), None)
            if iso and unetr:
                comparisons.append(compare(f"seg_window/{prec}: {OURS} at isotropic 1 mm vs {unetr['model']}", iso, unetr,
                                           metric="median_s", higher_is_better=False,
                                           note="UNETR's 16^3 patches give 256 tokens at any spacing; ours 256 at 1 mm, 512 at 2.5 mm slices"))
        # sliding-window batch: ours at 1 vs 2 windows per forward pass (default precision, its faster format), interleaved
        eff = _resolved_precision(device, precisions[-1])
        m = models[OURS]
        m.to(device)
        m.set_channels_last(best_cl.get((OURS, eff), False))
        dtype = torch.bfloat16 if eff == "bf16" else torch.float32
        batches = [1, 2]
        bt: dict[int, tuple[list[float], list[float]]] = {b: ([], []) for b in batches}
        load0 = load_snapshot()
        for r in range(warmup + n_rep):
            for b in _rotated(batches, r):
                xb = window.to(device).expand(b, -1, -1, -1, -1).contiguous()
                wall, cpu = timed(lambda: _forward(m, xb, spacing, device, dtype), device)
                if r >= warmup:
                    bt[b][0].append(wall / b)
                    bt[b][1].append(cpu / b)
        load1 = load_snapshot()
        brec = {}
        for b, (walls, cpus) in bt.items():
            brec[b] = record("seg_window", f"{OURS}/sw_batch{b}/{eff}", model=OURS, precision=eff, sw_batch_measured=b, device=device,
                             dtype=dtype, shapes={"window": [b, 1, *roi], **common}, times=walls, cpu_times=cpus, warmup=warmup,
                             work=float(np.prod(roi)), work_unit="voxels", per="window", gflops_per_window=gflops[OURS],
                             memory_format="channels_last_3d" if m.channels_last else "contiguous", interleaved=True,
                             load_before=load0, load_after=load1)
            records.append(brec[b])
            log(f"  seg window {OURS} sw_batch {b}: {brec[b]['median_s']:.3f} s per window")
        comparisons.append(compare(f"seg_window/{OURS}: sw_batch 2 vs 1 ({eff}, per window)", brec[2], brec[1], metric="median_s",
                                   higher_is_better=False, note="optimization before/after: >1 = two windows per pass faster per window"))
        m.set_channels_last(False)
        if compile_model:
            m = models[OURS]
            records += _compiled_window(m, window.to(device), spacing, device, repeats, warmup, roi, common, notes, log)
            m.to("cpu")

    if not best_cl and formats_from:  # each model's faster format from an earlier run's window step
        import json

        prev = json.loads(Path(formats_from).read_text())
        for c in prev.get("comparisons", []):
            mm = c["name"].split("seg_window/", 1)[-1]
            if c["name"].startswith("seg_window/") and ": channels_last_3d vs contiguous (" in mm and c.get("ratio"):
                name, prec = mm.split(": channels_last_3d vs contiguous (")
                best_cl[(name, prec.rstrip(")"))] = c["ratio"] > 1.0
        notes.append(f"segmentation: memory formats from the window step of {formats_from}")

    # 2. end to end on the benchmark volume at the engine's defaults, models interleaved with rotation
    vol_shape = tuple(preset["volume"])
    n_win = count_windows(vol_shape, roi, overlap)
    e2e: dict[tuple[str, str], dict] = {}
    if "e2e" in steps:
        src = ct_volume(vol_shape, tmp)
        for prec in precisions:
            eff = _resolved_precision(device, prec)
            for name, m in models.items():
                m.set_channels_last(best_cl.get((name, eff), False))
            runs = _e2e_interleaved(inf, models, src, tmp, device, roi, overlap, sw_batch, prec, repeats,
                                    warmup if e2e_warmup is None else e2e_warmup, common, vol_shape, n_win, pipeline, log)
            for name, rec in runs.items():
                rec["gflops_per_window"] = gflops[name]
                rec["precision_resolved"] = eff
                records.append(rec)
                e2e[(name, prec)] = rec
            for m in models.values():
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
                                           note=f"end-to-end seconds ({n_win} windows), same ROI/overlap/sw-batch/precision/pipeline, "
                                                "interleaved with rotation; ratio = baseline/ours"))

        # 2b. the direct pipeline (volume resident on the device) for ours, against the engine
        if inf is not None and device.type == "cuda":
            m = models[OURS]
            prec = precisions[-1]
            m.set_channels_last(best_cl.get((OURS, _resolved_precision(device, prec)), False))
            rec = _e2e(None, m, src, tmp, device, roi, overlap, sw_batch, prec, repeats, warmup, common, vol_shape, n_win,
                       "direct (volume on device)", log)
            records.append(rec)
            comparisons.append(compare(f"seg_e2e/{prec}: direct pipeline vs pumit.inference.segment ({OURS})", rec,
                                       e2e[(OURS, prec)], metric="median_s", higher_is_better=False,
                                       note=">1: keeping the whole volume on the GPU (no per-window host→device copy) pays"))
            m.set_channels_last(False)
            m.to("cpu")

    # 3. ours on the full CT-sized volume at the engine's defaults: measured (every window) unless full_windows is set
    full_shape = tuple(preset.get("full_volume", FULL_SHAPE))
    if "full" in steps and full_volume:
        src_full = ct_volume(full_shape, tmp)
        n_full = count_windows(full_shape, roi, overlap)
        m = models[OURS]
        prec = precisions[-1]
        eff = _resolved_precision(device, prec)
        m.set_channels_last(best_cl.get((OURS, eff), False))
        k = None if (full_windows is None or full_windows >= n_full) else max(int(full_windows), 1)
        m.reset_counters(limit=k, time_windows=k is not None)  # no per-window synchronisation in a real full run
        dst = tmp / "full_seg.nii.gz"
        release(device)
        load0 = load_snapshot()
        c0 = time.process_time()
        with PeakMemory(device) as pm:
            if inf is not None:
                stages = engine_segment(inf, m, src_full, dst, device=device, roi=roi, overlap=overlap, sw_batch=sw_batch, precision=prec)
            else:
                stages = direct_segment(m, src_full, dst, device=device, roi=roi, overlap=overlap, sw_batch=sw_batch, precision=prec)
        cpu_s = time.process_time() - c0
        load1 = load_snapshot()
        real, fake = list(m.real_times), list(m.fake_times)
        m.reset_counters()
        measured = stages["total"]
        extra: dict[str, Any] = {"windows_total": n_full, "windows_run": len(real) if k else n_full, "measured_wall_s": measured,
                                 "gflops_per_window": gflops[OURS], "stages_s": stages, "load_before": load0, "load_after": load1,
                                 "precision_resolved": eff, "memory_format": "channels_last_3d" if m.channels_last else "contiguous"}
        total = measured
        if k is not None:
            per_window = statistics.median(real[1:] if len(real) > 2 else real)
            missing_calls = len(fake)
            total = measured - sum(fake) + missing_calls * per_window
            extra["per_window_median_s"] = per_window
            extra["extrapolation"] = (f"{len(real)} of {len(real) + len(fake)} sliding-window model calls ran the model "
                                      f"({sw_batch} window(s) per call, {n_full} windows); total = measured {measured:.1f} s "
                                      f"- {sum(fake):.2f} s of stand-in calls + {missing_calls} x median {per_window:.2f} s per call. "
                                      "Read, normalisation, blending, argmax and write ran on the full volume.")
        else:
            extra["per_window_median_s"] = stages.get("inference", measured) / max(n_full, 1)
        rec = record("seg_e2e_full", f"{OURS}/{prec}/full{'-extrapolated' if k else ''}", model=OURS, precision=prec, device=device,
                     dtype=torch.bfloat16 if eff == "bf16" else torch.float32,
                     shapes={"volume": list(full_shape), **common}, times=[total], cpu_times=[cpu_s], warmup=0,
                     work=float(np.prod(full_shape)), work_unit="voxels", peak=pm, params_mb=param_mb(m),
                     extrapolated=k is not None, pipeline=pipeline, **extra)
        records.append(rec)
        log(f"  seg full {OURS} {prec}({eff}): {total:.1f} s{' (extrapolated)' if k else ' (measured)'}, cpu {cpu_s:.1f} s, "
            f"{extra['windows_run']}/{n_full} windows, load {load0.get('loadavg_1_5_15')} -> {load1.get('loadavg_1_5_15')}")
        m.set_channels_last(False)
        m.to("cpu")
    shutil.rmtree(tmp, ignore_errors=True) if workdir is None else None
    release(device)
    return records, comparisons, notes


def _e2e_interleaved(inf, models: dict[str, EngineModel], src: Path, tmp: Path, device, roi, overlap, sw_batch, prec, repeats,
                     warmup, common, vol_shape, n_win, pipeline: str, log) -> dict[str, dict]:
    """End to end runs of every model: ``warmup`` untimed runs each, then ``repeats`` rounds with the model order
    rotated each round. Returns one record per model."""
    names = list(models)
    stage_runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    load0 = load_snapshot()
    for r in range(warmup + repeats):
        for name in _rotated(names, r):
            m = models[name]
            dst = tmp / f"seg_{name.replace('/', '_').replace('(', '_').replace(')', '_')}.nii.gz"
            release(device)
            c0, t0 = time.process_time(), time.perf_counter()
            if inf is not None:
                st = engine_segment(inf, m, src, dst, device=device, roi=roi, overlap=overlap, sw_batch=sw_batch, precision=prec)
            else:
                st = direct_segment(m, src, dst, device=device, roi=roi, overlap=overlap, sw_batch=sw_batch, precision=prec)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if device.type != "cpu":
                m.to("cpu")
            dst.unlink(missing_ok=True)
            if r >= warmup:
                walls[name].append(wall)
                cpus[name].append(cpu)
                stage_runs[name].append(st)
    load1 = load_snapshot()
    out: dict[str, dict] = {}
    for name in names:
        m = models[name]
        stages = {k: statistics.median(x[k] for x in stage_runs[name] if k in x) for k in stage_runs[name][0]}
        rec = record("seg_e2e", f"{name}/{prec}/{pipeline.split()[0]}", model=name, precision=prec, device=device,
                     dtype=torch.bfloat16 if _resolved_precision(device, prec) == "bf16" else torch.float32,
                     shapes={"volume": list(vol_shape), **common, "memory_format": "channels_last_3d" if m.channels_last else "contiguous"},
                     times=walls[name], cpu_times=cpus[name], warmup=warmup, work=float(np.prod(vol_shape)), work_unit="voxels",
                     params_mb=param_mb(m), windows=n_win, stages_s=stages, pipeline=pipeline, output_dtype="uint8",
                     interleaved=True, load_before=load0, load_after=load1)
        out[name] = rec
        log(f"  seg e2e {name:20s} {prec:4s} {rec['median_s']:7.2f} s (cpu {rec['cpu_median_s']:.1f} s, {n_win} windows)  stages "
            + " ".join(f"{k}={v:.2f}" for k, v in stages.items()))
    return out


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
