"""Run the PUMIT benchmark suite on the current device and write the results.

    python -m benchmarks                 # CPU always; CUDA too when present (full sizes there)
    python -m benchmarks --quick         # CPU-friendly sizes (2 cores: ~10-20 min)
    python -m benchmarks --only mim sac  # a subset
    python -m benchmarks --size tiny     # the smoke-test sizes (seconds)

Writes ``benchmarks/results/<device>-<date>.json`` and ``.md`` (``--out`` to change the folder). The JSON
holds the environment, every record (device, torch/MONAI versions, shapes, dtype, repeats, median, IQR,
min/max, peak memory and how it was measured), the ours/baseline comparisons and the targets with their
status ("met", "missed" with by how much and why, or "not measurable here").
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from benchmarks import bench_mim, bench_sac, bench_segmentation, bench_tokenizer
from benchmarks.common import (
    RESULTS_DIR,
    SCHEMA,
    device_label,
    env_info,
    load_snapshot,
    resolve_device,
    write_json,
)
from benchmarks.report import evaluate_targets, markdown

BENCHMARKS = ("sac", "tokenizer", "mim", "segmentation")


def _size_for(device: torch.device, quick: bool, size: str | None) -> str:
    """Model/batch size preset: ``full`` on CUDA, ``cpu`` (reduced) on the CPU, unless given."""
    if size:
        return size
    return "full" if device.type == "cuda" else "cpu"


def run_device(device: torch.device, args: argparse.Namespace, log=print) -> dict[str, Any]:
    size = _size_for(device, args.quick, args.size)
    tiny = size == "tiny"
    repeats = args.repeats or (3 if tiny else (5 if device.type == "cuda" else 3))
    seg_repeats = args.seg_repeats or (1 if tiny else (3 if device.type == "cuda" else 2))
    warmup = 1
    cuda = device.type == "cuda"
    config: dict[str, Any] = {"size": size, "quick": args.quick, "repeats": repeats, "seg_repeats": seg_repeats, "warmup": warmup,
                              "only": list(args.only or BENCHMARKS), "compile": args.compile, "threads": torch.get_num_threads(),
                              "ratio_threads": args.ratio_threads, "overlap": args.overlap, "argv": sys.argv[1:]}
    payload: dict[str, Any] = {"schema": SCHEMA, "env": env_info(device), "config": config, "benchmarks": {}, "errors": [],
                               "load": {"start": load_snapshot()}}
    t_start = time.perf_counter()
    default_threads = torch.get_num_threads()
    for bench in args.only or BENCHMARKS:
        t0 = time.perf_counter()
        threads = args.ratio_threads if (args.ratio_threads and bench != "segmentation" and not cuda) else default_threads
        torch.set_num_threads(threads)
        log(f"[{device}] {bench} ({size}, {threads} thread(s)) ...")
        section: dict[str, Any] = {"threads": threads, "load_start": load_snapshot(), "records": [], "comparisons": [], "notes": []}
        try:
            if bench == "sac":
                recs, cmps, notes = bench_sac.run(device, size=size, repeats=max(repeats, 5) if not tiny else repeats, warmup=warmup, log=log)
            elif bench == "tokenizer":
                dtypes = (torch.float32, torch.bfloat16) if cuda else (torch.float32,)
                formats = ("contiguous",) if tiny else ("contiguous", "channels_last_3d")  # channels-last before/after
                recs, cmps, notes = bench_tokenizer.run(device, size=size, repeats=repeats, warmup=warmup, dtypes=dtypes,
                                                        formats=formats, log=log)
            elif bench == "mim":
                dtypes = (torch.float32, torch.bfloat16) if cuda else (torch.float32,)
                mim_repeats = args.repeats or (3 if tiny else 5)  # steps are cheap at these sizes; more repeats, less noise
                recs, cmps, notes = bench_mim.run(device, size=size, repeats=mim_repeats, warmup=warmup, dtypes=dtypes,
                                                  use_timm=not args.no_timm, compile_model=args.compile, log=log)
            elif bench == "segmentation":
                quick_cpu = not cuda and args.quick
                # the engine's default precision ("auto": bf16 on a GPU and on CPUs with native bf16), and fp32 on CUDA too
                precisions = ("fp32", "auto") if cuda else ("auto",)
                seg_size = "tiny" if tiny else ("cpu" if quick_cpu else "full")
                # 512x512x200 is measured (every window) unless --full-windows K asks for an extrapolation from K windows
                full_windows = args.full_windows
                variants = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))
                if not cuda and bench_segmentation._resolved_precision(device, "auto") != "bf16":
                    # no native bf16 on this CPU: emulated bf16 is many times slower, and no default uses it here
                    variants = variants[:2]
                    log("[cpu] no native bf16 on this CPU: window timings in fp32 only")
                recs, cmps, notes = bench_segmentation.run(
                    device, size=seg_size, repeats=seg_repeats, warmup=warmup, overlap=args.overlap, precisions=precisions,
                    window_variants=variants, bf16_window_models="all",
                    window_repeats=repeats if cuda else (1 if tiny else 2), e2e_warmup=None,
                    full_volume=not args.no_full_volume, full_windows=full_windows, compile_model=args.compile, log=log,
                    steps=tuple(args.seg_steps), formats_from=args.seg_formats_from)
            else:
                raise ValueError(f"unknown benchmark {bench!r}")
            for r in recs:
                r["threads"] = threads
            section.update(records=recs, comparisons=cmps, notes=notes)
        except Exception as e:  # one failing benchmark must not lose the others' results
            section["error"] = {"benchmark": bench, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
            log(f"  ERROR in {bench}: {type(e).__name__}: {e}")
            if args.fail_fast:
                raise
        finally:
            torch.set_num_threads(default_threads)
        section["duration_s"] = round(time.perf_counter() - t0, 1)
        section["load_end"] = load_snapshot()
        section["date"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        payload["benchmarks"][bench] = section
        log(f"  {bench} done in {time.perf_counter() - t0:.0f} s")
    payload["load"]["end"] = load_snapshot()
    payload["durations_s"] = {"total": round(time.perf_counter() - t_start, 1)}
    return payload


def finalize(payload: dict[str, Any]) -> dict[str, Any]:
    """Flatten the per-benchmark sections into ``records``/``comparisons``/``notes``/``errors`` and evaluate the targets."""
    payload = dict(payload)
    payload["benchmarks"] = {b: dict(sec) for b, sec in payload["benchmarks"].items()}  # the caller's sections stay untouched
    payload["records"], payload["comparisons"], payload["notes"], payload["errors"] = [], [], [], []
    for bench, sec in payload["benchmarks"].items():
        payload["records"] += sec.pop("records", [])
        payload["comparisons"] += sec.pop("comparisons", [])
        payload["notes"] += sec.pop("notes", [])
        sec["n_records"] = sum(1 for r in payload["records"] if _GROUP_BENCH.get(r["group"]) == bench)
        if sec.get("error"):
            payload["errors"].append(sec["error"])
        payload.setdefault("durations_s", {})[bench] = sec.get("duration_s")
    payload["durations_s"]["total"] = round(sum(v for k, v in payload["durations_s"].items() if k != "total" and v), 1)
    if payload["env"]["device"] == "cpu" and not payload["config"].get("compile"):
        payload["notes"].append(
            "torch.compile was not run on the CPU: the first compile of a 6-block ViT-S training step took ~230 s on the "
            "2 loaded cores (docs/benchmarks.md); --compile includes it, with a clean fallback to eager")
    payload["targets"] = evaluate_targets(payload)
    return payload


_GROUP_BENCH = {"mim_step": "mim", "tokenizer": "tokenizer", "sac": "sac", "seg_window": "segmentation", "seg_e2e": "segmentation",
                "seg_e2e_full": "segmentation"}


def _bench_of(name: str) -> str | None:
    for prefix, bench in (("mim", "mim"), ("tokenizer", "tokenizer"), ("sac", "sac"), ("seg", "segmentation"),
                          ("torch.compile of", "segmentation")):
        if name.startswith(prefix):
            return bench
    return None


def _sections_from_flat(payload: dict[str, Any]) -> dict[str, Any]:
    """Per-benchmark sections of a results file that only has the flat lists."""
    secs: dict[str, Any] = {}
    threads = payload.get("config", {}).get("threads")
    for r in payload.get("records", []):
        b = _GROUP_BENCH.get(r["group"])
        if b:
            sec = secs.setdefault(b, {"threads": threads, "records": [], "comparisons": [], "notes": [],
                                      "date": payload.get("env", {}).get("date"),
                                      "load_start": payload.get("load", {}).get("start"), "load_end": payload.get("load", {}).get("end"),
                                      "duration_s": (payload.get("durations_s") or {}).get(b)})
            sec["records"].append(r)
    for c in payload.get("comparisons", []):
        b = _bench_of(c["name"])
        if b in secs:
            secs[b]["comparisons"].append(c)
    for n in payload.get("notes", []):
        b = _bench_of(n)
        if b in secs:
            secs[b]["notes"].append(n)
    return secs


def merge(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new``'s benchmarks replace the same benchmarks of ``previous`` (same device); the others are kept."""
    if previous.get("schema") != new["schema"] or previous.get("env", {}).get("device_label") != new["env"]["device_label"]:
        return new
    sections = _sections_from_flat(previous)  # the data lives in the flat lists; the sections hold metadata
    for b, meta in (previous.get("benchmarks") or {}).items():
        if b in sections:
            sections[b].update({k: v for k, v in meta.items() if k not in ("records", "comparisons", "notes", "n_records")})
    sections.update(new["benchmarks"])
    out = dict(new)
    out["benchmarks"] = {b: sections[b] for b in BENCHMARKS if b in sections}
    out["config"] = dict(new["config"], merged_from=previous.get("config"), merged_env=previous.get("env"))
    out["load"] = {"previous": previous.get("load"), "this_run": new.get("load")}
    return out


def result_paths(device: torch.device, out: Path, tag: str | None = None) -> tuple[Path, Path]:
    date = _dt.date.today().isoformat()
    stem = f"{device_label(device)}-{date}" + (f"-{tag}" if tag else "")
    return out / f"{stem}.json", out / f"{stem}.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", action="append", help="cpu, cuda or cuda:N (repeatable); default: cpu, and cuda when present")
    p.add_argument("--quick", action="store_true", help="CPU-friendly sizes: the small segmentation volume, ours' full volume extrapolated")
    p.add_argument("--size", choices=("tiny", "cpu", "full"), help="override the size preset (default: cpu on CPU, full on CUDA)")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    p.add_argument("--repeats", type=int, help="timed repeats per measurement (default: 3 CPU, 5 CUDA)")
    p.add_argument("--seg-repeats", type=int, help="timed repeats of each end-to-end segmentation (default: 2 CPU, 3 CUDA)")
    p.add_argument("--overlap", type=float, default=None, help="sliding-window overlap for every model (default: pumit segment's)")
    p.add_argument("--full-windows", type=int, help="ours on 512x512x200: run only this many windows and extrapolate "
                                                    "(default: every window, measured)")
    p.add_argument("--seg-steps", nargs="+", choices=("window", "e2e", "full"), default=["window", "e2e", "full"],
                   help="segmentation steps to run (default all; with --merge the others stay from the earlier run)")
    p.add_argument("--seg-formats-from", help="without the window step: take each model's faster memory format from this "
                                              "earlier results file")
    p.add_argument("--no-full-volume", action="store_true", help="skip ours on the 512x512x200 volume")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (clean fallback to eager on failure)")
    p.add_argument("--no-timm", action="store_true", help="do not try the timm baselines even if timm imports")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--ratio-threads", type=int, help="CPU threads for the sac/tokenizer/mim benchmarks (their results are ratios; "
                                                     "1 thread is far steadier on a shared machine); segmentation keeps --threads")
    p.add_argument("--merge", action="store_true", help="keep the other benchmarks of an existing results file of the same "
                                                        "device and date (re-run a subset)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder (default benchmarks/results)")
    p.add_argument("--tag", help="suffix of the result file names")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing benchmark")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [resolve_device(d) for d in args.device] if args.device else [torch.device("cpu")] + (
        [torch.device("cuda")] if torch.cuda.is_available() else [])
    status = 0
    for dev in devices:
        payload = run_device(dev, args)
        jpath, mpath = result_paths(dev, args.out, args.tag)
        if args.merge and jpath.is_file():
            payload = merge(json.loads(jpath.read_text()), payload)
        payload = finalize(payload)
        write_json(jpath, payload)
        mpath.write_text(markdown(payload))
        print(f"wrote {jpath} and {mpath}")
        if payload["errors"]:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
