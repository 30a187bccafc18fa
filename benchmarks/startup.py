"""Start-up and end-to-end time of ``pumit segment``: wall seconds from launching the process to the model being
loaded, to the first window, and to the end (and the child's CPU seconds), plus ``python -X importtime`` of the
segment command's imports (cumulative ms of the heaviest top-level packages). Presets:

* ``hippocampus`` (issue 13, item 4): the shipped hippocampus model on one MSD case; target: launch to model
  load < 1.5 s.
* ``brain`` (issue 12, item 4): the shipped whole-brain parcellation model on the shipped whole-head IXI T1
  (120 × 120 × 90 voxels of 2 mm, a validation subject); target: launch to labels written < 20 s on 2 CPU cores.

The command runs with ``--progress jsonl``: each JSON line is time-stamped on arrival. "model loaded" is the
arrival of the ``read`` stage (the engine reports it right after :func:`pumit.inference.load_model`),
"first window" the first ``inference`` update with a window count.

    python -m benchmarks.startup [--preset hippocampus|brain] [--repeats 5] [--out benchmarks/results/FILE.json]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, RESULTS_DIR, load_snapshot, write_json

MODELS = REPO_ROOT / "training" / "pumit" / "assets" / "models"
MODEL = MODELS / "pumit-ref-hippocampus-seg-v0.1.0"
CASE = REPO_ROOT.parent / "shared" / "data" / "msd_task04_hippocampus" / "imagesTr" / "hippocampus_004.nii.gz"
TARGET_S = 1.5
#: preset: (model folder glob under MODELS, image, which median is held to the target, target seconds)
PRESETS: dict[str, tuple[str, Path, str, float]] = {
    "hippocampus": ("pumit-ref-hippocampus-seg-v*", CASE, "model_loaded_s", TARGET_S),
    "brain": ("pumit-ref-brain-parcellation-v*", REPO_ROOT / "training" / "pumit" / "assets" / "demo" / "ixi052_t1_2mm.nii.gz",
              "total_s", 20.0),
}
PACKAGES = ("torch", "monai", "SimpleITK", "numpy", "lightning", "matplotlib", "yaml", "pumit.store", "pumit.models",
            "pumit.inference.segment", "pumit.training.options")


def pumit_command() -> list[str]:
    exe = Path(sys.executable).with_name("pumit")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "pumit.cli.main"]


def newest(pattern: str) -> Path | None:
    """The newest model folder matching ``pattern`` in the shipped models (None when there is none)."""
    found = sorted(MODELS.glob(pattern), key=lambda p: [int(v) if v.isdigit() else v for v in re.split(r"[.v-]", p.name)])
    return found[-1] if found else None


def one_run(image: Path, out_dir: Path, model: Path = MODEL) -> dict[str, float | None]:
    cmd = pumit_command() + ["segment", str(image), "-o", str(out_dir / "seg.nii.gz"), "-m", str(model), "--device", "cpu",
                             "--progress", "jsonl"]
    cpu0 = os.times()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    marks: dict[str, float | None] = {"first_output_s": None, "model_loaded_s": None, "first_window_s": None}
    assert proc.stdout is not None
    for line in proc.stdout:
        t = time.perf_counter() - t0
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        marks["first_output_s"] = marks["first_output_s"] or t
        if ev.get("stage") == "read" and marks["model_loaded_s"] is None:
            marks["model_loaded_s"] = t
        if ev.get("stage") == "inference" and "window" in str(ev.get("message", "")) and marks["first_window_s"] is None:
            marks["first_window_s"] = t
    rc = proc.wait()
    marks["total_s"] = time.perf_counter() - t0
    cpu1 = os.times()
    marks["cpu_s"] = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    marks["rc"] = rc
    return marks


def importtime() -> dict[str, float]:
    """Cumulative import ms of :data:`PACKAGES` when the segment command's modules are imported (one process)."""
    code = ("import pumit.cli.main as m; m.build_parser(['segment'], lazy=True); "
            "from pumit.inference.segment import segment; from pumit.inference.modelinfo import load_model")
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=False)
    out: dict[str, float] = {}
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and m.group(3) in PACKAGES:
            out[m.group(3)] = max(out.get(m.group(3), 0.0), int(m.group(1)) / 1000)
    return out


def child_ready_s(code: str) -> float:
    """Wall seconds from launching ``python -c code`` to its first line on stdout, printed right after ``code``.

    Timed to an event like the segment run's marks, not to process exit (torch's interpreter teardown alone costs
    a few tenths of a second that "model loaded" does not include).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", f"{code}\nprint('ready', flush=True)"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    proc.stdout.readline()
    t = time.perf_counter() - t0
    proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"startup: python -c {code!r} failed")
    return t


#: what no change in pumit can remove, timed in fresh processes interleaved with the segment runs: a bare interpreter
#: and ``import torch``. "model loaded" minus ``import_torch_s`` is what pumit's own imports, argument parsing and
#: model load cost on top.
FLOOR = {"python_s": "pass", "import_torch_s": "import torch"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="hippocampus")
    ap.add_argument("--image", type=Path, default=None, help="default: the preset's image")
    args = ap.parse_args(argv)
    pattern, default_image, target_key, target_s = PRESETS[args.preset]
    image = args.image or default_image
    model = newest(pattern)
    if model is None or not image.is_file():
        print(f"startup: {image if model else pattern} not found; skipped", file=sys.stderr)
        return 0
    load0 = load_snapshot()
    with tempfile.TemporaryDirectory() as tmp:
        one_run(image, Path(tmp), model)  # warm-up: the OS file cache (torch's shared libraries)
        runs, floors = [], []
        for _ in range(args.repeats):
            runs.append(one_run(image, Path(tmp), model))
            floors.append({k: child_ready_s(code) for k, code in FLOOR.items()})
    base = {k: statistics.median(f[k] for f in floors) for k in FLOOR}
    failed = [r for r in runs if r["rc"] != 0]
    if failed:
        print(f"startup: pumit segment failed (exit {failed[0]['rc']}) on {image}", file=sys.stderr)
        return 1
    imports = importtime()
    load1 = load_snapshot()

    def med(key: str) -> float | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    payload: dict[str, Any] = {
        "schema": "pumit-startup/1" if args.preset == "hippocampus" else "pumit-segment-e2e/1", "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "preset": args.preset,
        "command": " ".join(pumit_command() + ["segment", image.name, "-m", model.name, "--device", "cpu"]),
        "runs": runs, "median": {k: med(k) for k in ("first_output_s", "model_loaded_s", "first_window_s", "total_s", "cpu_s")},
        "spread": {k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in ("model_loaded_s", "total_s", "cpu_s")
                   if all(r.get(k) is not None for r in runs)},
        "target": {"median": target_key, "seconds": target_s,
                   "met": med(target_key) is not None and med(target_key) < target_s},
        "floor": base,
        "model_loaded_over_import_torch_s": (None if med("model_loaded_s") is None
                                             else med("model_loaded_s") - base["import_torch_s"]),  # type: ignore[operator]
        "importtime_cumulative_ms": imports, "load": {"start": load0, "end": load1}, "cpu_count": os.cpu_count(),
    }
    prefix = "startup" if args.preset == "hippocampus" else f"segment-{args.preset}"
    out = args.out or RESULTS_DIR / f"{prefix}-cpu-{_dt.date.today().isoformat()}.json"
    write_json(out, payload)
    print(json.dumps({k: payload[k] for k in ("median", "spread", "target", "floor",
                                                         "model_loaded_over_import_torch_s", "importtime_cumulative_ms")}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
