"""Regenerate the benchmark tables of README.md and docs/benchmarks.md from results files (never by hand).

    python -m benchmarks.tables benchmarks/results/cpu-2026-12-02.json [more results files ...] [--check]

Each file contributes what it holds (segmentation, MIM, ...; a later file wins for the same benchmark), plus
``defaults-cpu-*.json`` (accuracy of the inference defaults) and ``startup-cpu-*.json`` (start-up time) when
given. The tables replace the text between ``<!-- bench:NAME:begin -->`` and ``<!-- bench:NAME:end -->``
markers (``NAME`` = ``readme`` in README.md, ``docs`` in docs/benchmarks.md). ``--check`` exits 1 when a
file is out of date instead of writing it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT

OURS = "SPAD-ViT-Seg"


def _load(paths: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": [], "defaults": None, "startup": None, "segment_e2e": None}
    for p in paths:
        d = json.loads(p.read_text())
        schema = d.get("schema", "")
        if schema.startswith("pumit-defaults-check"):
            out["defaults"] = (p, d)
        elif schema.startswith("pumit-startup"):
            out["startup"] = (p, d)
        elif schema.startswith("pumit-segment-e2e"):
            out["segment_e2e"] = (p, d)
        else:
            out["bench"].append((p, d))
    return out


def _x(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}×"


def _s(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.1f} s" if v >= 10 else f"{v:.2f} s"


def _load_txt(rec_or_sec: dict[str, Any]) -> str:
    a = (rec_or_sec.get("load_before") or rec_or_sec.get("load_start") or {}).get("loadavg_1_5_15")
    b = (rec_or_sec.get("load_after") or rec_or_sec.get("load_end") or {}).get("loadavg_1_5_15")
    return f"{a[0]:.1f} → {b[0]:.1f}" if a and b else "–"


def _spread(r: dict[str, Any]) -> str:
    return f"IQR {_s(r.get('iqr_s'))}, [{_s(r.get('min_s'))}, {_s(r.get('max_s'))}], n={r.get('repeats')}"


def _latest(files: list[tuple[Path, dict[str, Any]]], pred) -> tuple[Path | None, list[dict[str, Any]], list[dict[str, Any]], dict]:
    """Records/comparisons of the last file with a record matching ``pred``."""
    for p, d in reversed(files):
        recs = [r for r in d.get("records", []) if pred(r)]
        if recs:
            return p, recs, d.get("comparisons", []), d
    return None, [], [], {}


def _seg_group(files, group: str, prefix: str) -> tuple[Path | None, list[dict[str, Any]], list[dict[str, Any]], dict]:
    """The records of ``group`` and the comparisons named ``prefix...`` from the last file holding that group."""
    p, recs, cmps, d = _latest(files, lambda r: r["group"] == group)
    return p, recs, [c for c in cmps if c["name"].startswith(prefix)], d


def segmentation_rows(files) -> tuple[list[str], dict[str, Any]]:
    """Each segmentation step from the last results file that ran it (a later ``--seg-steps e2e`` run replaces
    only the end-to-end rows)."""
    pw, rw, cw, d = _seg_group(files, "seg_window", "seg_window/")
    pe, re_, ce, _ = _seg_group(files, "seg_e2e", "seg_e2e/")
    pf, rf, _, _ = _seg_group(files, "seg_e2e_full", "")
    p = pw or pe or pf
    recs, cmps = rw + re_ + rf, cw + ce
    info: dict[str, Any] = {"path": p, "paths": sorted({str(_rel(x)) for x in (pw, pe, pf) if x}), "env": d.get("env", {})}
    rows: list[str] = []
    if p is None:
        return rows, info
    win = {c["name"]: c for c in cmps if c["name"].startswith("seg_window/") and " vs " in c["name"] and ":" in c["name"]}
    rec_by_name = {r["name"]: r for r in recs}
    for prec in ("bf16", "fp32"):
        for c in [c for n, c in win.items() if n.startswith(f"seg_window/{prec}: {OURS}")]:
            base = c["baseline"].split("/")[0]
            ours_r, base_r = rec_by_name.get(c["ours"], {}), rec_by_name.get(c["baseline"], {})
            tgt = c.get("target")
            status = "" if tgt is None else (f"≥ {tgt:g}× — {'met' if c.get('met') else 'missed'}")
            iso = " at 1 mm" if "isotropic" in c["name"] else ""
            rows.append(f"| one 64×128×128 window{iso}, {prec} | {base} | {_s(c['ours_value'])} ({ours_r.get('gflops_per_window') or 0:.0f} GFLOP) | "
                        f"{_s(c['baseline_value'])} ({base_r.get('gflops_per_window') or 0:.0f} GFLOP) | **{_x(c['ratio'])}** | "
                        f"{_x(c.get('ratio_by_cpu_time'))} | {_load_txt(ours_r)} | {status} |")
    day = Path(pe).name[:14] if pe else ""  # the end-to-end runs of the latest day only (older ones are superseded)
    e2e_files = [(fp, fd) for fp, fd in files if Path(fp).name.startswith(day)
                 and any(r["group"] == "seg_e2e" for r in fd.get("records", []))]
    e2e_cmps = []
    for fp, fd in e2e_files:  # every end-to-end run, the latest last (each labelled with its file)
        for c in fd.get("comparisons", []):
            if c["name"].startswith("seg_e2e/") and " vs " in c["name"] and "direct" not in c["name"]:
                e2e_cmps.append((fp, fd, c))
    for fp, fd, c in e2e_cmps:
        base = c["baseline"].split("/")[0]
        ours_r = next((r for r in fd["records"] if r["name"] == c["ours"]), {})
        tgt = c.get("target")
        status = "" if tgt is None else f"≥ {tgt:g}× — {'met' if c.get('met') else 'missed'}"
        vol = "×".join(str(v) for v in ours_r.get("shapes", {}).get("volume", []))
        tag = Path(fp).stem.split("-", 4)[-1] if Path(fp).stem.count("-") >= 4 else "default oneDNN kernel cache"
        rows.append(f"| end to end {vol} ({ours_r.get('windows')} windows), {ours_r.get('precision_resolved', c['name'].split(':')[0][8:])} "
                    f"[{tag}] | "
                    f"{base} | {_s(c['ours_value'])} | {_s(c['baseline_value'])} | **{_x(c['ratio'])}** | "
                    f"{_x(c.get('ratio_by_cpu_time'))} | {_load_txt(ours_r)} | {status} |")
    full = [r for r in recs if r["group"] == "seg_e2e_full" and sorted(r.get("shapes", {}).get("volume", [])) == [200, 512, 512]]
    if full:
        r = full[-1]
        how = "extrapolated" if r.get("extrapolated") else "measured, every window"
        met = r["median_s"] < 180.0
        info["full"] = r
        rows.append(f"| 512×512×200 CT, {r.get('windows_total')} windows, {r.get('precision_resolved', r.get('precision'))} ({how}) | – | "
                    f"{_s(r['median_s'])} (CPU {_s(r.get('cpu_median_s'))}) | – | – | – | {_load_txt(r)} | "
                    f"< 180 s — {'met' if met and not r.get('extrapolated') else ('missed' if not met else 'not measured (extrapolated)')} |")
    return rows, info


def mim_rows(files) -> tuple[list[str], Path | None]:
    p, _, cmps, _ = _latest(files, lambda r: r["group"] == "mim_step")
    rows = []
    for c in cmps:
        if c["name"].startswith("mim_step/") and c.get("ratio") is not None:
            rows.append(f"| {c['name'].split(': ')[0]} | {c['baseline'].split('/')[0]} | {c['ours_value']:,.0f} tok/s | "
                        f"{c['baseline_value']:,.0f} tok/s | **{_x(c['ratio'], 3)}** | {_x(c.get('ratio_by_cpu_time'), 3)} | – | "
                        f"≥ 0.95× — {'met' if c.get('met') else 'missed'} |")
    return rows, p


HEADER = ["| measurement | baseline | ours | baseline | ratio (> 1: ours better) | ratio by CPU time | load (1 min) | target |",
          "|---|---|---|---|---|---|---|---|"]


def readme_block(data: dict[str, Any]) -> str:
    seg, info = segmentation_rows(data["bench"])
    mim, mim_path = mim_rows(data["bench"])
    env = info.get("env") or {}
    lines = [f"CPU results on the 2-core development machine ({env.get('cpu_model', '?')}, torch {env.get('torch', '?')}), "
             f"generated by `python -m benchmarks.tables` from " + ", ".join(f"`{x}`" for x in info.get("paths", []))
             + (f" and `{_rel(mim_path)}` (MIM)" if mim_path and mim_path != info.get("path") else "")
             + ". Every ratio of the run is listed, good or bad; models were interleaved with rotation after warm-up, "
               "load and spread are in the results files.", ""]
    lines += HEADER + seg + mim
    st = data.get("startup")
    if st:
        sp, sd = st
        m = sd["median"]
        fl = sd.get("floor") or {}
        floor_txt = f"; a bare `import torch`: {_s(fl['import_torch_s'])}" if fl.get("import_torch_s") else ""
        lines.append(f"| `pumit segment` launch → model loaded (hippocampus model) | – | {_s(m.get('model_loaded_s'))} "
                     f"(total {_s(m.get('total_s'))}{floor_txt}) | – | – | – | {_load_txt({'load_before': sd.get('load', {}).get('start'), 'load_after': sd.get('load', {}).get('end')})} | "
                     f"< 1.5 s — {'met' if sd['target']['met'] else 'missed'} |")
    e2e = data.get("segment_e2e")
    if e2e:
        ed = e2e[1]
        m = ed["median"]
        lines.append(f"| `pumit segment` whole head 120×120×90 (brain model), launch → labels written | – | {_s(m.get('total_s'))} "
                     f"(CPU {_s(m.get('cpu_s'))}) | – | – | – | {_load_txt({'load_before': ed.get('load', {}).get('start'), 'load_after': ed.get('load', {}).get('end')})} | "
                     f"< {ed['target']['seconds']:g} s — {'met' if ed['target']['met'] else 'missed'} |")
    lines.append("| GPU: 512×512×200 CT < 10 s, ≤ 4 GB | – | not measured | – | – | – | – | no GPU lent; `bash benchmarks/gpu_check.sh` is ready |")
    return "\n".join(lines)


def docs_block(data: dict[str, Any]) -> str:
    lines = [readme_block(data), ""]
    p, recs, wc, d = _seg_group(data["bench"], "seg_window", "seg_window/")
    opt = [c for c in wc if ": " not in c["name"].split("/", 1)[1][:8] and ("vs contiguous" in c["name"] or "vs fp32" in c["name"]
                                                                           or "sw_batch" in c["name"])]
    if opt:
        lines += ["Optimizations before/after, per window (`seg_window`, > 1: the optimization is faster):", "",
                  "| comparison | with | without | ratio | by CPU time |", "|---|---|---|---|---|"]
        for c in opt:
            lines.append(f"| {c['name'][11:]} | {_s(c['ours_value'])} | {_s(c['baseline_value'])} | {_x(c['ratio'])} | "
                         f"{_x(c.get('ratio_by_cpu_time'))} |")
        lines.append("")
    if recs:
        lines += ["Per-window records (`seg_window`, one 64×128×128 window; every (model, format, precision) interleaved with "
                  "rotation, median of the repeats):", "",
                  "| model | memory format | precision | spacing (mm) | median | spread | CPU time | GFLOP | GFLOP/s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in recs:
            gf = r.get("gflops_per_window")
            lines.append(f"| {r['model']} | {r.get('memory_format')} | {r.get('precision')} | "
                         f"{'×'.join(f'{v:g}' for v in r['shapes'].get('spacing', []))} | {_s(r['median_s'])} | {_spread(r)} | "
                         f"{_s(r.get('cpu_median_s'))} | {gf or 0:.0f} | {(gf or 0) / r['median_s']:.0f} |")
        lines.append("")
    e2e = [r for g in ("seg_e2e", "seg_e2e_full") for r in _seg_group(data["bench"], g, "")[1]]
    if e2e:
        lines += ["End-to-end records (`seg_e2e`, `seg_e2e_full`; stages in seconds):", "",
                  "| model | volume | precision | format | median | spread | CPU time | stages |", "|---|---|---|---|---|---|---|---|"]
        for r in e2e:
            st = ", ".join(f"{k} {v:.1f}" for k, v in (r.get("stages_s") or {}).items())
            lines.append(f"| {r['model']} | {'×'.join(str(v) for v in r['shapes'].get('volume', []))} | "
                         f"{r.get('precision_resolved', r.get('precision'))} | {r['shapes'].get('memory_format', r.get('memory_format', ''))} | "
                         f"{_s(r['median_s'])} | {_spread(r)} | {_s(r.get('cpu_median_s'))} | {st} |")
        lines.append("")
    df = data.get("defaults")
    if df:
        dp, dd = df
        lines += [f"Accuracy of the inference settings (`{_rel(dp)}`: the shipped hippocampus model on the {dd['cases']} MSD "
                  f"validation cases, CPU native bf16: {dd.get('cpu_native_bf16')}; reference {dd['reference']}):", "",
                  "| setting | mean Dice | Dice per label | voxels changed vs reference (mean / max per case) | cases changed | median s per case |",
                  "|---|---|---|---|---|---|"]
        for r in dd["results"]:
            ch = r["voxels_changed_vs_reference"]
            lines.append(f"| {r['setting']} | {r['dice_mean']:.4f} | "
                         + ", ".join(f"{k} {v:.4f}" for k, v in r["dice"].items())
                         + f" | {ch['mean']:.2e} / {ch['max']:.2e} | {r['cases_with_any_change']} | {r['wall_s']['median']:.3f} |")
        lines.append("")
    st = data.get("startup")
    if st:
        sp, sd = st
        imp = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(sd.get("importtime_cumulative_ms", {}).items(), key=lambda kv: -kv[1]))
        lines += [f"Start-up (`{_rel(sp)}`, {len(sd['runs'])} runs after one warm-up): launch → model loaded "
                  f"{_s(sd['median'].get('model_loaded_s'))} (range {sd['spread'].get('model_loaded_s')}), → first window "
                  f"{_s(sd['median'].get('first_window_s'))}, total {_s(sd['median'].get('total_s'))}; "
                  f"`python -X importtime` (cumulative): {imp}."
                  + (f" In fresh processes interleaved with these runs, a bare interpreter took {_s(sd['floor']['python_s'])} and "
                     f"`import torch` alone {_s(sd['floor']['import_torch_s'])}: what pumit adds on top, up to the model "
                     f"being loaded, is {_s(sd['model_loaded_over_import_torch_s'])}." if sd.get("floor") else ""), ""]
    return "\n".join(lines).rstrip()


def _rel(p: Path | None) -> str:
    if p is None:
        return "?"
    try:
        return str(Path(p).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def replace_block(text: str, name: str, body: str) -> str:
    pat = re.compile(rf"(<!-- bench:{name}:begin -->\n).*?(\n<!-- bench:{name}:end -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"markers <!-- bench:{name}:begin/end --> not found")
    return pat.sub(lambda m: m.group(1) + body + m.group(2), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    data = _load(args.results)
    stale = 0
    for path, name, body in ((REPO_ROOT / "README.md", "readme", readme_block(data)),
                             (REPO_ROOT / "docs" / "benchmarks.md", "docs", docs_block(data))):
        old = path.read_text()
        new = replace_block(old, name, body)
        if args.check:
            stale |= int(new != old)
            print(f"{path.name}: {'out of date' if new != old else 'up to date'}")
        elif new != old:
            path.write_text(new)
            print(f"updated {path}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
