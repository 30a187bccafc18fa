"""Results of the whole-brain parcellation runs of ``experiments/run_brain.sh`` (issue 12).

    python experiments/brain_results.py dice RUN_DIR                     # last validation Dice of a run
    python experiments/brain_results.py best OUT ARM FRAC LR...          # the lr with the best Dice
    python experiments/brain_results.py best-dynunet RESULTS.json        # the same for a DynUNet results file
    python experiments/brain_results.py collect OUT RESULTS -o brain_results.json

A SPAD-ViT run (``pumit train segment``) logs ``val/dice`` and ``val/dice/<MUSE name>`` to
``RUN_DIR/logs/csv/version_N/metrics.csv`` (the newest launch is read); the DynUNet runs of
``decoder_compare.py`` store the same metrics in their JSON. Per-structure Dice is MONAI's, per case, absent
structures ignored, averaged over the validation subjects (``SegmentationModule``). ``collect`` adds the mean
over all ROIs and over the subcortical ROIs (:data:`SUBCORTICAL`) to each run.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

#: MUSE names (without _R/_L) of the subcortical grey-matter structures averaged as "subcortical".
SUBCORTICAL = ("ThalamusProper", "Caudate", "Putamen", "Pallidum", "Hippocampus", "Amygdala", "AccumbensArea",
               "VentralDC")


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def run_metrics(run_dir: Path) -> dict[str, Any] | None:
    """``{"dice_mean": float, "dice": {name: float}}`` of the newest launch's last validation, or None."""
    versions = sorted((run_dir / "logs" / "csv").glob("version_*/metrics.csv"),
                      key=lambda p: int(p.parent.name.split("_")[1]))
    if not versions:
        return None
    last: dict[str, float] = {}
    with open(versions[-1], newline="") as f:
        for row in csv.DictReader(f):
            vals = {k: _finite(v) for k, v in row.items() if k and k.startswith("val/dice")}
            if vals.get("val/dice") is not None:
                last = {k: v for k, v in vals.items() if v is not None}
    if not last:
        return None
    return {"dice_mean": last["val/dice"], "dice": {k.split("/", 2)[2]: v for k, v in last.items() if k.count("/") == 2}}


def summarize(dice: dict[str, float]) -> dict[str, float | None]:
    """Mean Dice over all ROIs and over the subcortical ones (:data:`SUBCORTICAL`, both sides)."""
    sub = [v for k, v in dice.items() if re.sub(r"_[RL]$", "", k) in SUBCORTICAL]
    return {"mean_all": sum(dice.values()) / len(dice) if dice else None,
            "mean_subcortical": sum(sub) / len(sub) if sub else None, "n_rois": len(dice), "n_subcortical": len(sub)}


def best_lr(out: Path, arm: str, frac: str, lrs: list[str]) -> str:
    scored = [(m["dice_mean"], lr) for lr in lrs if (m := run_metrics(out / f"{arm}-f{frac}-lr{lr}"))]
    if not scored:
        raise SystemExit(f"no finished {arm} run at {frac} % in {out}")
    return max(scored)[1]


def best_dynunet(path: Path) -> str:
    runs = [r for r in json.loads(path.read_text())["runs"] if r.get("dice_mean") is not None]
    if not runs:
        raise SystemExit(f"no finished run in {path}")
    return f"{max(runs, key=lambda r: r['dice_mean'])['lr']:g}"


def collect(out: Path, results: Path) -> dict[str, Any]:
    runs = []
    for d in sorted(p for p in out.iterdir() if p.is_dir() and re.match(r"(pretrained|scratch)-f\d{3}-lr", p.name)):
        m = run_metrics(d)
        if m:
            arm, frac, lr = re.match(r"(\w+)-f(\d{3})-lr(.+)", d.name).groups()  # type: ignore[union-attr]
            runs.append({"arm": arm, "fraction": frac, "lr": float(lr), **m, **summarize(m["dice"])})
    for p in sorted(results.glob("brain-dynunet-f*.json")):
        frac = p.stem.rsplit("-f", 1)[1]
        for r in json.loads(p.read_text())["runs"]:
            if r.get("dice_mean") is not None:
                runs.append({"arm": "dynunet", "fraction": frac, "lr": r["lr"], "dice_mean": r["dice_mean"],
                             "dice": r["dice"], **summarize(r["dice"])})
    return {"subcortical": list(SUBCORTICAL), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("dice"); p.add_argument("run")
    p = sub.add_parser("best"); p.add_argument("out"); p.add_argument("arm"); p.add_argument("frac"); p.add_argument("lrs", nargs="+")
    p = sub.add_parser("best-dynunet"); p.add_argument("results")
    p = sub.add_parser("collect"); p.add_argument("out"); p.add_argument("results"); p.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "dice":
        m = run_metrics(Path(a.run))
        if m is None:
            raise SystemExit(f"no validation Dice logged in {a.run}")
        print(m["dice_mean"])
    elif a.cmd == "best":
        print(best_lr(Path(a.out), a.arm, a.frac, a.lrs))
    elif a.cmd == "best-dynunet":
        print(best_dynunet(Path(a.results)))
    else:
        res = collect(Path(a.out), Path(a.results))
        Path(a.output).write_text(json.dumps(res, indent=1) + "\n")
        print(f"{len(res['runs'])} runs -> {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
