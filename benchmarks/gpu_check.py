"""One prepared GPU check (issue 13, item 5), ≤ 8 minutes on one GPU: CUDA correctness of the pieces that CPU
tests cannot reach, then the segmentation and MIM benchmarks. Run through ``benchmarks/gpu_check.sh``.

Checks (each one a record with ``ok``, the measured numbers and, on failure, the error):

1. ``amp`` — the light SPAD-ViT segmenter (ViT-B) on one 64×128×128 CT window: bf16 (and fp16) autocast on the
   GPU vs fp32 on the GPU vs fp32 on the CPU: max |Δ logits| relative to the logit range, argmax agreement.
2. ``sliding`` — ``pumit.inference.segment_image`` on a CT-like volume with windows and accumulation on the GPU
   vs accumulation on the CPU vs all on the CPU (fp32): identical label maps expected up to float rounding.
3. ``oom_fallback`` — the same run with the GPU memory capped (``torch.cuda.set_per_process_memory_fraction``) so
   that GPU accumulation cannot fit: the engine must fall back (warning) and still produce the same labels.
4. ``mim_step`` — one MIM step (forward + soft-token CE + backward + AdamW) of SpadViTMIM on the GPU in fp32 and bf16
   autocast: finite loss, finite gradients, loss within 5 % between precisions.
5. ``benchmarks`` — ``python -m benchmarks --device cuda --only segmentation mim`` (full sizes, ViT-B,
   512×512×200 for ours) into ``benchmarks/results/``, skipped when the time budget is short.

``--cpu`` runs checks 1-4 on the CPU at tiny sizes (and skips 5): it tests this script where no GPU is lent.
Writes ``benchmarks/results/gpu-check-<device>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import REPO_ROOT, RESULTS_DIR, device_label, env_info, load_snapshot, write_json


def _segmenter(tiny: bool, num_classes: int = 3):
    from pumit.models import SegmenterConfig, SpadViTSegmenter, ViTConfig

    torch.manual_seed(0)
    vit = ViTConfig(embed_dim=64, depth=4, num_heads=2, patch_size=16) if tiny else ViTConfig.preset("base")
    model = SpadViTSegmenter(SegmenterConfig(vit=vit, num_classes=num_classes, decoder="light")).eval()
    # random weights give near-tied logits; a larger head scale makes the argmax comparison meaningful
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    return model


def check_amp(device: torch.device, tiny: bool) -> dict[str, Any]:
    from benchmarks.data import CT_SPACING, normalised_ct

    roi = (32, 64, 64) if tiny else (64, 128, 128)
    model = _segmenter(tiny)
    x = normalised_ct(roi)
    with torch.inference_mode():
        ref_cpu = model(x, CT_SPACING).float()
        model.to(device)
        xd = x.to(device)
        out: dict[str, Any] = {"roi": list(roi)}
        ref = model(xd, CT_SPACING).float()
        scale = float(ref.abs().max())
        out["fp32_device_vs_cpu_rel"] = float((ref.cpu() - ref_cpu).abs().max()) / scale
        ok = out["fp32_device_vs_cpu_rel"] < 1e-3
        dtypes = [torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
        for dt in dtypes:
            with torch.autocast(device.type, dtype=dt):
                y = model(xd, CT_SPACING).float()
            name = str(dt).replace("torch.", "")
            rel = float((y - ref).abs().max()) / scale
            agree = float((y.argmax(1) == ref.argmax(1)).float().mean())
            out[f"{name}_rel_max_diff"] = rel
            out[f"{name}_argmax_agreement"] = agree
            ok = ok and bool(torch.isfinite(y).all()) and agree > 0.98
    model.to("cpu")
    out["ok"] = ok
    return out


def _ct_image(shape: tuple[int, int, int]):
    import SimpleITK as sitk

    from benchmarks.data import CT_SPACING, resize_real_ct

    arr = resize_real_ct(shape)  # (D, H, W) int16 HU
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((CT_SPACING[2], CT_SPACING[1], CT_SPACING[0]))
    return img


def _segment_labels(image, model, device: str, accumulate: str, precision: str = "fp32", roi=None) -> tuple[np.ndarray, list[str], str]:
    import SimpleITK as sitk

    from pumit.inference import InferenceSettings, load_model, segment_image
    from pumit.inference.progress import Progress

    lm = load_model(model, "segment", meta={"name": "gpu-check", "labels": {"0": "bg", "1": "a", "2": "b"},
                                           "input": {"modality": "ct", "normalization": {"scheme": "ct"}, "roi": list(roi)}})
    prog = Progress("none")
    res = segment_image(image, lm, settings=InferenceSettings(device=device, precision=precision, accumulate=accumulate),
                        progress=prog)
    return sitk.GetArrayFromImage(res.labels), list(prog.notes), res.execution


def check_sliding(device: torch.device, tiny: bool) -> dict[str, Any]:
    shape = (48, 96, 160) if tiny else (96, 256, 320)
    roi = (32, 64, 64) if tiny else (64, 128, 128)
    image = _ct_image(shape)
    model = _segmenter(tiny)
    on_dev, _, ex_dev = _segment_labels(image, model, str(device), "device", roi=roi)
    on_cpu_acc, _, ex_acc = _segment_labels(image, model, str(device), "cpu", roi=roi)
    all_cpu, _, ex_cpu = _segment_labels(image, model, "cpu", "auto", roi=roi)
    a = float((on_dev == all_cpu).mean())
    b = float((on_cpu_acc == all_cpu).mean())
    return {"shape": list(shape), "roi": list(roi), "execution": [ex_dev, ex_acc, ex_cpu],
            "agreement_device_accumulation_vs_cpu": a, "agreement_cpu_accumulation_vs_cpu": b, "ok": a > 0.999 and b > 0.999}


def check_oom_fallback(device: torch.device, tiny: bool) -> dict[str, Any]:
    if device.type != "cuda":
        return {"ok": True, "skipped": "needs CUDA (torch.cuda.set_per_process_memory_fraction)"}
    shape = (96, 256, 320)
    roi = (64, 128, 128)
    image = _ct_image(shape)
    model = _segmenter(tiny)
    ref, _, _ = _segment_labels(image, model, "cpu", "auto", roi=roi)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    weights = sum(p.numel() * 4 for p in model.parameters())
    frac = min(0.95, (weights + 1.5 * 2**30) / total)  # room for the model and windows, not for the full-volume buffers
    torch.cuda.set_per_process_memory_fraction(frac, device)
    try:
        labels, notes, execution = _segment_labels(image, model, str(device), "device", roi=roi)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    agree = float((labels == ref).mean())
    fell_back = any("out of memory" in n for n in notes) or "accumulation on cpu" in execution
    return {"memory_fraction": frac, "execution": execution, "notes": notes, "agreement_vs_cpu": agree,
            "fell_back": fell_back, "ok": agree > 0.999}


def check_mim_step(device: torch.device, tiny: bool) -> dict[str, Any]:
    from pumit.models import SpadViTMIM, ViTConfig
    from pumit.models.vit import random_mask, soft_cross_entropy

    cfg = ViTConfig.preset("tiny", depth=2, embed_dim=64, num_heads=2, patch_size=8, codebook_size=64) if tiny else \
        ViTConfig.preset("base", codebook_size=1024)
    shape = (2, 1, 16, 64, 64) if tiny else (4, 1, 64, 128, 128)
    spacing = (1.0, 1.0, 1.0)
    out: dict[str, Any] = {"shape": list(shape)}
    losses = {}
    ok = True
    for name, dt in (("fp32", None), ("bf16", torch.bfloat16)):
        torch.manual_seed(0)
        model = SpadViTMIM(cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
        grid, _ = model.vit.token_grid(tuple(shape[2:]), spacing)
        n = int(np.prod(grid))
        mask = random_mask(shape[0], n, generator=torch.Generator().manual_seed(0)).to(device)
        target = torch.softmax(torch.randn(shape[0], n, cfg.codebook_size, generator=torch.Generator().manual_seed(1)), -1).to(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dt, enabled=dt is not None):
            logits = model(x, spacing, mask)[0]
            logits_shape = list(logits.shape)
            loss = soft_cross_entropy(logits, target, mask)
        loss.backward()
        grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        losses[name] = float(loss.detach())
        out[name] = {"loss": float(loss.detach()), "grads_finite": grads_finite, "seconds": time.perf_counter() - t0, "logits": logits_shape}
        ok = ok and grads_finite and bool(np.isfinite(float(loss)))
        del model, opt
    out["loss_rel_diff"] = abs(losses["bf16"] - losses["fp32"]) / max(abs(losses["fp32"]), 1e-6)
    out["ok"] = ok and out["loss_rel_diff"] < 0.05
    return out


def run_benchmarks(device: torch.device, budget_s: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks", "--device", str(device), "--only", "segmentation", "mim", "--seg-repeats", "2",
           "--repeats", "3", "--tag", "gpu-check"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=max(budget_s, 30))
        return {"cmd": " ".join(cmd), "rc": r.returncode, "seconds": time.perf_counter() - t0, "tail": r.stdout[-3000:] + r.stderr[-2000:],
                "ok": r.returncode == 0}
    except subprocess.TimeoutExpired:
        return {"cmd": " ".join(cmd), "rc": None, "seconds": time.perf_counter() - t0, "ok": False,
                "error": f"timed out after {budget_s:.0f} s (the per-check results above are still valid)"}


CHECKS: dict[str, Callable[[torch.device, bool], dict[str, Any]]] = {
    "amp": check_amp, "sliding": check_sliding, "oom_fallback": check_oom_fallback, "mim_step": check_mim_step,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="dry run on the CPU at tiny sizes (tests this script)")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for everything (default 450 = 7.5 min)")
    ap.add_argument("--no-benchmarks", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    if args.cpu:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); use --cpu for a dry run", file=sys.stderr)
        return 2
    tiny = args.cpu
    payload: dict[str, Any] = {"schema": "pumit-gpu-check/1", "env": env_info(device), "mode": "cpu-dry-run" if args.cpu else "gpu",
                               "load": {"start": load_snapshot()}, "checks": {}}
    status = 0
    for name, fn in CHECKS.items():
        t0 = time.perf_counter()
        try:
            res = fn(device, tiny)
        except Exception as e:  # noqa: BLE001 - one failing check must not lose the others
            res = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        res["seconds"] = round(time.perf_counter() - t0, 2)
        payload["checks"][name] = res
        status |= 0 if res.get("ok") else 1
        print(f"gpu_check {name}: {'ok' if res.get('ok') else 'FAILED'} ({res['seconds']} s) "
              + json.dumps({k: v for k, v in res.items() if k not in ('traceback', 'notes')}, default=str)[:400], flush=True)
    left = args.budget - (time.perf_counter() - t_start)
    if not args.cpu and not args.no_benchmarks:
        if left > 120:
            res = run_benchmarks(device, left - 20)
            payload["checks"]["benchmarks"] = res
            status |= 0 if res.get("ok") else 1
            print(f"gpu_check benchmarks: {'ok' if res.get('ok') else 'FAILED'} ({res['seconds']:.0f} s)", flush=True)
        else:
            payload["checks"]["benchmarks"] = {"ok": None, "skipped": f"only {left:.0f} s of the budget left"}
    payload["load"]["end"] = load_snapshot()
    payload["seconds"] = round(time.perf_counter() - t_start, 1)
    payload["ok"] = status == 0
    out = args.out or RESULTS_DIR / f"gpu-check-{device_label(device)}-{_dt.date.today().isoformat()}.json"
    write_json(out, payload)
    print(f"wrote {out} ({'all ok' if status == 0 else 'FAILURES'}; {payload['seconds']} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
