"""Accuracy check of ``pumit segment``'s inference defaults (issue 13, item 2): the shipped hippocampus model on the
MSD Task04 validation cases (``experiments/data/hippocampus_val.txt``) under each candidate setting: sliding-window
overlap 0.5 / 0.25 / 0, Gaussian vs constant blending, fp32 vs bf16 autocast (on a CPU with native bf16).

For every setting: the mean Dice per label against the ground truth, the fraction of voxels whose label differs
from the reference setting (fp32, overlap 0.5, Gaussian: the old defaults) and the wall/CPU seconds, with the
settings interleaved case by case (rotation) so that background load hits all alike.

    python -m benchmarks.defaults_check [--cases N] [--out benchmarks/results/defaults-cpu-DATE.json]

Needs ../shared/data/msd_task04_hippocampus; exits with a message when it is absent.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, RESULTS_DIR, env_info, load_snapshot, summarize, write_json

DATA = REPO_ROOT.parent / "shared" / "data" / "msd_task04_hippocampus"
MODEL = REPO_ROOT / "training" / "pumit" / "assets" / "models" / "pumit-ref-hippocampus-seg-v0.1.0"
REFERENCE = "fp32/overlap0.5/gaussian"
SETTINGS: dict[str, dict[str, Any]] = {
    REFERENCE: {"precision": "fp32", "overlap": 0.5, "blend": "gaussian"},
    "fp32/overlap0.25/gaussian": {"precision": "fp32", "overlap": 0.25, "blend": "gaussian"},
    "fp32/overlap0/gaussian": {"precision": "fp32", "overlap": 0.0, "blend": "gaussian"},
    "fp32/overlap0.5/constant": {"precision": "fp32", "overlap": 0.5, "blend": "constant"},
    "bf16/overlap0.5/gaussian": {"precision": "bf16", "overlap": 0.5, "blend": "gaussian"},
    "bf16/overlap0.25/gaussian": {"precision": "bf16", "overlap": 0.25, "blend": "gaussian"},
}


def dice(pred: np.ndarray, truth: np.ndarray, label: int) -> float | None:
    p, t = pred == label, truth == label
    denom = int(p.sum()) + int(t.sum())
    return None if not t.any() else 2.0 * int((p & t).sum()) / denom


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=51, help="validation cases to use (default all 51)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"defaults_check: {DATA} not found; skipped", file=sys.stderr)
        return 0
    import SimpleITK as sitk
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from pumit.inference import InferenceSettings, load_model, segment_image
    from pumit.inference.devices import cpu_has_native_bf16

    cases = [c.strip() for c in (REPO_ROOT / "experiments" / "data" / "hippocampus_val.txt").read_text().splitlines() if c.strip()]
    cases = cases[: args.cases]
    model = load_model(str(MODEL), "segment")
    names = list(SETTINGS)
    per: dict[str, dict[str, list]] = {n: {"dice": [], "changed": [], "wall": [], "cpu": []} for n in names}
    warm = sitk.ReadImage(str(DATA / "imagesTr" / f"{cases[0]}.nii.gz"))
    for name in names:  # warm-up: oneDNN primitives, allocator (not timed)
        s = SETTINGS[name]
        segment_image(warm, model, settings=InferenceSettings(device="cpu", precision=s["precision"], overlap=s["overlap"],
                                                              blend=s["blend"]))
    load0 = load_snapshot()
    for i, case in enumerate(cases):
        image = sitk.ReadImage(str(DATA / "imagesTr" / f"{case}.nii.gz"))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "labelsTr" / f"{case}.nii.gz")))
        labels: dict[str, np.ndarray] = {}
        k = i % len(names)
        for name in names[k:] + names[:k]:  # rotation: each setting runs first on some cases
            s = SETTINGS[name]
            settings = InferenceSettings(device="cpu", precision=s["precision"], overlap=s["overlap"], blend=s["blend"])
            c0, t0 = time.process_time(), time.perf_counter()
            res = segment_image(image, model, settings=settings)
            per[name]["wall"].append(time.perf_counter() - t0)
            per[name]["cpu"].append(time.process_time() - c0)
            labels[name] = sitk.GetArrayFromImage(res.labels)
        for name in names:
            per[name]["dice"].append([dice(labels[name], truth, v) for v in range(1, model.num_classes)])
            per[name]["changed"].append(float((labels[name] != labels[REFERENCE]).mean()))
    load1 = load_snapshot()
    label_names = [li.name for li in model.labels if li.value != 0]
    results = []
    for name in names:
        d = np.array([[np.nan if v is None else v for v in row] for row in per[name]["dice"]], dtype=float)
        results.append({
            "setting": name, **SETTINGS[name],
            "dice": {ln: float(np.nanmean(d[:, j])) for j, ln in enumerate(label_names)},
            "dice_mean": float(np.nanmean(np.nanmean(d, axis=0))),
            "voxels_changed_vs_reference": {"mean": float(np.mean(per[name]["changed"])), "max": float(np.max(per[name]["changed"]))},
            "cases_with_any_change": int(sum(c > 0 for c in per[name]["changed"])),
            "wall_s": summarize(per[name]["wall"]), "cpu_s": summarize(per[name]["cpu"]),
        })
    payload = {"schema": "pumit-defaults-check/1", "env": env_info(torch.device("cpu")), "model": MODEL.name,
               "cases": len(cases), "reference": REFERENCE, "cpu_native_bf16": cpu_has_native_bf16(),
               "load": {"start": load0, "end": load1}, "results": results,
               "note": "hippocampus crops need 1-4 windows of the model's ROI (32, 48, 32): overlap changes few windows here; "
                       "the CT speed of each setting is in the cpu-DATE.json segmentation benchmark"}
    out = args.out or RESULTS_DIR / f"defaults-cpu-{_dt.date.today().isoformat()}.json"
    write_json(out, payload)
    for r in results:
        print(f"{r['setting']:28s} dice {r['dice_mean']:.4f} {r['dice']} changed {r['voxels_changed_vs_reference']['mean']:.2e} "
              f"({r['cases_with_any_change']} cases) wall {r['wall_s']['median']:.3f} s")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
