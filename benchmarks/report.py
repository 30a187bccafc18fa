"""Targets and the markdown rendering of a results payload (see :mod:`benchmarks.run`)."""

from __future__ import annotations

from typing import Any

CPU_FULL_VOLUME_S = 180.0  # 512 x 512 x 200 on 2 CPU cores
GPU_FULL_VOLUME_S = 10.0
GPU_FULL_VOLUME_GB = 4.0
MIM_RATIO = 0.95
SEG_VS_SWIN = 2.0


def _status(met: bool | None) -> str:
    return {True: "met", False: "missed", None: "not measured"}[met]


def evaluate_targets(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with ``status`` (met / missed / not measured / not measurable here),
    the measured value and, when missed, by how much."""
    env = payload["env"]
    device = env["device"]
    cmps = payload.get("comparisons", [])
    recs = payload.get("records", [])
    out: list[dict[str, Any]] = []

    mim = [c for c in cmps if c["name"].startswith("mim_step/") and c.get("ratio") is not None]
    if mim:
        worst = min(mim, key=lambda c: c["ratio"])
        met = all(c["ratio"] >= MIM_RATIO for c in mim)
        t = {"target": f"MIM step tokens/s >= {MIM_RATIO}x the ViT baseline (every case, dtype and baseline)",
             "status": _status(met), "measured": {c["name"]: round(c["ratio"], 3) for c in mim},
             "worst": f"{worst['name']}: {worst['ratio']:.3f}x"}
        if not met:
            t["shortfall"] = "; ".join(f"{c['name']}: {c['ratio']:.3f}x ({(1 - c['ratio'] / MIM_RATIO) * 100:.1f}% short)"
                                       for c in mim if c["ratio"] < MIM_RATIO)
            t["why"] = ("SPAD-ViT's EVA-02 block does more non-GEMM work than a plain ViT of the same width and parameter count: "
                        "the 3D RoPE on q and k and the SwiGLU sub-LayerNorm over the 8/3·C hidden (RoPE ~5-9%, sub-LN ~1-7% of a 1-thread CPU step "
                        "in ablations, see docs/benchmarks.md), plus three separate q/k/v projections (fusing them did not pay on "
                        "the CPU). They are part of the published architecture (checkpoint-compatible) and stay; torch.compile "
                        "(--compile, on CUDA) fuses these elementwise ops.")
            cpu_ratios = {c["name"]: round(c["ratio_by_cpu_time"], 3) for c in mim if c.get("ratio_by_cpu_time")}
            if cpu_ratios:
                t["by_cpu_time"] = cpu_ratios
        out.append(t)
    else:
        out.append({"target": f"MIM step tokens/s >= {MIM_RATIO}x the ViT baseline", "status": "not measured"})

    seg = [c for c in cmps if c["name"].startswith("seg_e2e/") and "SwinUNETR" in c["baseline"] and c.get("ratio") is not None]
    if seg:
        met = all(c["ratio"] >= SEG_VS_SWIN for c in seg)
        t = {"target": f"segmentation end to end >= {SEG_VS_SWIN}x faster than SwinUNETR at equal settings", "status": _status(met),
             "measured": {c["name"]: round(c["ratio"], 3) for c in seg}}
        if not met:
            t["shortfall"] = "; ".join(f"{c['name']}: {c['ratio']:.2f}x ({(1 - c['ratio'] / SEG_VS_SWIN) * 100:.0f}% short)"
                                       for c in seg if c["ratio"] < SEG_VS_SWIN)
        out.append(t)
    else:
        out.append({"target": f"segmentation >= {SEG_VS_SWIN}x faster than SwinUNETR", "status": "not measured"})

    # issue 13: per window >= 1.5x faster than the nnU-Net-like DynUNet and not slower than UNETR (each precision)
    win = [c for c in cmps if c["name"].startswith("seg_window/") and c.get("target") is not None and c.get("ratio") is not None]
    for base, goal in (("DynUNet", 1.5), ("UNETR", 1.0)):
        sel = [c for c in win if c["baseline"].startswith(base)]
        if sel:
            met = all(c["ratio"] >= goal for c in sel)
            t = {"target": f"one segmentation window >= {goal:g}x faster than {base} at the same ROI", "status": _status(met),
                 "measured": {c["name"]: round(c["ratio"], 3) for c in sel}}
            if not met:
                t["shortfall"] = "; ".join(f"{c['name']}: {c['ratio']:.2f}x" for c in sel if c["ratio"] < goal)
                if base == "UNETR":
                    t["why"] = ("at 2.5 mm slices the spacing-aware ViT uses a depth patch of 8 (512 tokens per window), UNETR a fixed "
                                "16^3 patch (256 tokens): ours runs twice the tokens by design; at 1 mm both have 256 (see the iso record)")
            out.append(t)

    # only a real 512 x 512 x 200 volume counts (the tiny smoke-test "full" volume does not)
    full = [r for r in recs if r["group"] == "seg_e2e_full" and sorted(r.get("shapes", {}).get("volume", [])) == [200, 512, 512]]
    if device == "cpu":
        if full:
            r = full[-1]
            met = r["median_s"] < CPU_FULL_VOLUME_S and not r.get("extrapolated", False)  # measured, not extrapolated
            t = {"target": f"512x512x200 CT segmented in < {CPU_FULL_VOLUME_S:.0f} s on 2 CPU cores (measured, defaults)",
                 "status": _status(met) if not (r.get("extrapolated") and r["median_s"] < CPU_FULL_VOLUME_S) else "not measured",
                 "measured_s": round(r["median_s"], 1), "extrapolated": r.get("extrapolated", False),
                 "how": r.get("extrapolation", "full run"), "cpu_count": env.get("cpu_count"), "torch_threads": env.get("torch_threads")}
            if not met:
                per = r.get("per_window_median_s")
                t["shortfall"] = (f"{r['median_s']:.0f} s is {r['median_s'] / CPU_FULL_VOLUME_S:.1f}x the target "
                                  f"({r['median_s'] - CPU_FULL_VOLUME_S:.0f} s over)")
                if per:
                    t["why"] = (f"{r.get('windows_total')} windows x {per:.2f} s per window: the model time per window, not the "
                                "pipeline, dominates (see the seg_window records and docs/benchmarks.md for the profile)")
                gf, nw = r.get("gflops_per_window"), r.get("windows_total")
                if gf and nw:
                    total_tf = gf * nw / 1e3
                    t["compute"] = {"gflops_per_window": round(gf, 1), "total_tflop": round(total_tf, 1),
                                    "achieved_gflops_per_s": round(gf * nw / r["median_s"], 1),
                                    "needed_gflops_per_s_for_target": round(gf * nw / CPU_FULL_VOLUME_S, 1)}
                    t["why"] = t.get("why", "") + (f"; {total_tf:.1f} TFLOP in total ({gf:.0f} GFLOP per window) would need "
                                                   f"{gf * nw / CPU_FULL_VOLUME_S:.0f} GFLOP/s sustained for {CPU_FULL_VOLUME_S:.0f} s, "
                                                   f"measured {gf * nw / r['median_s']:.0f} GFLOP/s")
            out.append(t)
        else:
            out.append({"target": f"512x512x200 in < {CPU_FULL_VOLUME_S:.0f} s on 2 CPU cores", "status": "not measured"})
        for what in (f"512x512x200 CT segmented in < {GPU_FULL_VOLUME_S:.0f} s on a GPU",
                     f"peak GPU memory <= {GPU_FULL_VOLUME_GB:.0f} GB for 512x512x200"):
            out.append({"target": what, "status": "not measurable here", "why": "no CUDA device in this run; run python -m benchmarks on a GPU"})
    else:
        out.append({"target": f"512x512x200 in < {CPU_FULL_VOLUME_S:.0f} s on 2 CPU cores", "status": "not measurable here",
                    "why": "this run is on a GPU; the CPU results file holds it"})
        gpu = [r for r in full if not r.get("extrapolated")]
        if gpu:
            best = min(gpu, key=lambda r: r["median_s"])
            met_t = best["median_s"] < GPU_FULL_VOLUME_S
            t = {"target": f"512x512x200 CT segmented in < {GPU_FULL_VOLUME_S:.0f} s on a GPU", "status": _status(met_t),
                 "measured_s": round(best["median_s"], 2), "record": best["name"], "device_name": env.get("device_name")}
            if not met_t:
                t["shortfall"] = f"{best['median_s']:.1f} s, {best['median_s'] / GPU_FULL_VOLUME_S:.1f}x the target"
            out.append(t)
            mem = best.get("peak_mem_mb")
            met_m = None if mem is None else mem / 1024 <= GPU_FULL_VOLUME_GB
            t = {"target": f"peak GPU memory <= {GPU_FULL_VOLUME_GB:.0f} GB for 512x512x200", "status": _status(met_m),
                 "measured_gb": None if mem is None else round(mem / 1024, 2), "method": best.get("mem_method")}
            if met_m is False:
                t["shortfall"] = f"{mem / 1024:.2f} GB, {mem / 1024 - GPU_FULL_VOLUME_GB:.2f} GB over"
            out.append(t)
        else:
            out.append({"target": f"512x512x200 in < {GPU_FULL_VOLUME_S:.0f} s on a GPU", "status": "not measured"})
    return out


# --------------------------------------------------------------------------------------------- markdown


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "–"
    if v >= 10:
        return f"{v:.1f} s"
    if v >= 1:
        return f"{v:.2f} s"
    return f"{v * 1e3:.1f} ms"


def _fmt_tp(r: dict[str, Any]) -> str:
    tp = r.get("throughput")
    if tp is None:
        return "–"
    unit = r.get("throughput_unit", "")
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if tp >= scale:
            return f"{tp / scale:.2f} {prefix}{unit}"
    return f"{tp:.1f} {unit}"


def _fmt_mem(r: dict[str, Any]) -> str:
    m = r.get("peak_mem_mb")
    if m is None:
        return "n/a"
    return f"{m / 1024:.2f} GB" if m >= 1024 else f"{m:.0f} MB"


def _shape(r: dict[str, Any]) -> str:
    s = r.get("shapes", {})
    for key in ("input", "volume", "window"):
        if key in s:
            txt = "×".join(str(v) for v in s[key])
            if "token_grid" in s:
                txt += f" → {'×'.join(str(v) for v in s['token_grid'])} tok"
            if "spacing" in s and key != "window":
                sp = s["spacing"]
                txt += " @ " + ("2D" if sp[0] >= 1e4 else "×".join(f"{v:g}" for v in sp) + " mm")
            return txt
    return ""


GROUP_TITLES = {
    "mim_step": "MIM pre-training step (forward + backward + AdamW)",
    "tokenizer": "Tokenizer encode / decode (inference)",
    "sac": "SAC layers vs plain convolutions",
    "seg_window": "Segmentation: one sliding window (memory format / precision)",
    "seg_e2e": "Segmentation end to end (read → sliding window → write)",
    "seg_e2e_full": "Segmentation end to end, 512×512×200 CT-sized volume (ours)",
}


def markdown(payload: dict[str, Any]) -> str:
    env = payload["env"]
    cfg = payload["config"]
    lines = [f"# PUMIT benchmarks — {env['device_label']} — {env['date'][:10]}", ""]
    lines += [
        f"- device: **{env['device']}** ({env['device_name']}), {env['cpu_count']} CPU cores, torch threads {env['torch_threads']}",
        f"- torch {env['torch']}, MONAI {env['monai']}, numpy {env['numpy']}, SimpleITK {env['SimpleITK']}, python {env['python']}",
        f"- timm: {env['timm']}",
        (f"- git {env.get('git_commit')}; size preset `{cfg['size']}`, quick={cfg['quick']}, repeats {cfg['repeats']} "
         f"(segmentation end to end: {cfg['seg_repeats']}), warm-up {cfg['warmup']}"),
        f"- durations (s): {payload.get('durations_s')}",
    ]
    for bench, sec in (payload.get("benchmarks") or {}).items():
        ls, le = sec.get("load_start") or {}, sec.get("load_end") or {}
        lines.append(f"- `{bench}`: {sec.get('threads')} torch thread(s), {sec.get('duration_s')} s, run {sec.get('date', '?')}; "
                     f"load avg {ls.get('loadavg_1_5_15')} → {le.get('loadavg_1_5_15')}, CPU pressure (some, avg60) "
                     f"{(ls.get('cpu_pressure_some') or {}).get('avg60')} → {(le.get('cpu_pressure_some') or {}).get('avg60')}")
    lines += [
        "",
        ("Times: median over the repeats, spread as IQR and [min, max]. Ratios: > 1 means ours is better. "
         "CPU memory: transient peak RSS above what was resident (weights excluded); CUDA: `max_memory_allocated`."),
        "",
        "## Targets",
        "",
        "| target | status | measured | shortfall / why |",
        "|---|---|---|---|",
    ]
    for t in payload.get("targets", []):
        measured = t.get("measured_s", t.get("measured_gb", t.get("worst", "")))
        if isinstance(t.get("measured"), dict) and "worst" not in t:
            measured = ", ".join(f"{v}x" for v in t["measured"].values())
        if t.get("extrapolated"):
            measured = f"{measured} s (extrapolated)"
        why = " ".join(str(t[k]) for k in ("shortfall", "why") if t.get(k))
        lines.append(f"| {t['target']} | **{t['status']}** | {measured} | {why} |")
    lines += ["", "## Comparisons (same process, same run)", "", "| comparison | ours | baseline | ratio | by CPU time | mem ours/base | target |",
              "|---|---|---|---|---|---|---|"]
    for c in payload.get("comparisons", []):
        if c["name"].startswith("sac/") and "plain-full" in c["name"]:
            continue  # in the SAC table below
        fmt = (lambda v: _fmt_s(v)) if c["metric"] == "median_s" else (lambda v: f"{v:,.0f}/s" if v else "–")
        r = c.get("ratio")
        lines.append(f"| {c['name']} | {fmt(c['ours_value'])} | {fmt(c['baseline_value'])} | {'–' if r is None else f'{r:.3f}x'} | "
                     f"{'–' if not c.get('ratio_by_cpu_time') else format(c['ratio_by_cpu_time'], '.3f') + 'x'} | "
                     f"{'–' if c.get('peak_mem_ratio') is None else format(c['peak_mem_ratio'], '.2f')} | "
                     f"{'' if c.get('target') is None else ('≥ ' + format(c['target'], 'g') + 'x ' + ('✔' if c.get('met') else '✘'))} |")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in payload.get("records", []):
        groups.setdefault(r["group"], []).append(r)
    for g, recs in groups.items():
        lines += ["", f"## {GROUP_TITLES.get(g, g)}", "", "| name | shape | dtype | n | median | IQR | [min, max] | throughput | peak mem |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in recs:
            name = r["name"] + (" *(extrapolated)*" if r.get("extrapolated") else "")
            lines.append(f"| {name} | {_shape(r)} | {r['dtype']} | {r['repeats']} | {_fmt_s(r['median_s'])} | {_fmt_s(r['iqr_s'])} | "
                         f"[{_fmt_s(r['min_s'])}, {_fmt_s(r['max_s'])}] | {_fmt_tp(r)} | {_fmt_mem(r)} |")
            if r.get("stages_s"):
                lines.append(f"| ↳ stages | {', '.join(f'{k} {v:.2f}s' for k, v in r['stages_s'].items())} | | | | | | | |")
            if r.get("extrapolation"):
                lines.append(f"| ↳ how | {r['extrapolation']} | | | | | | | |")
    if payload.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in payload["notes"]]
    if payload.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {e['benchmark']}: {e['error']}" for e in payload["errors"]]
    return "\n".join(lines) + "\n"


def rerender(json_path: str) -> None:
    """Re-evaluate the targets and rewrite the markdown next to a results JSON (after report changes)."""
    import json
    from pathlib import Path

    from benchmarks.common import write_json

    p = Path(json_path)
    payload = json.loads(p.read_text())
    payload["targets"] = evaluate_targets(payload)
    write_json(p, payload)
    p.with_suffix(".md").write_text(markdown(payload))
    print(f"rewrote {p} and {p.with_suffix('.md')}")


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        rerender(arg)
