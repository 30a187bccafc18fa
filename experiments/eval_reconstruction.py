"""Tokenizer reconstruction quality on images it never saw, with honest metrics (``pumit.metrics``), plus montages.

    python experiments/eval_reconstruction.py --tokenizer runs/ref/tok3/model --output runs/ref/recon-eval-tok3

Every image goes through ``pumit.inference.reconstruct_image`` exactly as ``pumit reconstruct`` runs it (NIfTI
inputs get their modality detected, DICOM its tag), and is scored on the whole native input in its units
(CT in HU): Pearson, SSIM, std ratio, PSNR and the PSNR of a constant image at the input's mean.

Held out (never in the v0.3 tokenizer's training set, see experiments/data/make_tokenizer_v3_index.py):
``ixi``: IXI T1 whole-head 2 mm subjects of experiments/data/ixi_t1_holdout.txt; ``hippocampus``: MSD Hippocampus
1 mm T1 crops of experiments/data/hippocampus_val.txt; ``ct``: pydicom CT slices not in pretrain_sources.jsonl
(head, pancreas, neck); ``adrenal``: AdrenalMNIST3D validation masks. Seen (training images, for reference):
the tptbox spine CT and MRI (= the demo images), a chest radiograph.
Writes OUTPUT/recon.json (one row per image) and OUTPUT/summary.json (mean / min per group), montages in
OUTPUT/montages/.
"""
from __future__ import annotations

import argparse
import json
import sysconfig
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pumit.inference import InferenceSettings
from pumit.inference.modelinfo import load_model
from pumit.inference.montage import save_montage
from pumit.inference.preprocess import read_input
from pumit.inference.reconstruct import reconstruct_image
from pumit.metrics import describe, rounded

SITE = Path(sysconfig.get_paths()["purelib"])
SHARED = Path("../shared/data")
DATA = Path("experiments/data")


def items(tmp: Path, n_ixi: int, n_hippo: int) -> list[dict]:
    out: list[dict] = []
    for s in (DATA / "ixi_t1_holdout.txt").read_text().split()[:n_ixi]:
        out.append({"name": f"ixi_{s}", "group": "ixi", "modality": "MRI T1 whole head (2 mm)", "seen": False,
                    "path": SHARED / "ixi_t1_dlmuse/t1" / f"{s}_T1.nii.gz"})
    for c in (DATA / "hippocampus_val.txt").read_text().split()[:n_hippo]:
        out.append({"name": f"hippocampus_{c[-3:]}", "group": "hippocampus", "modality": "MRI T1 crop (1 mm)",
                    "seen": False, "path": SHARED / "msd_task04_hippocampus/imagesTr" / f"{c}.nii.gz"})
    for f, n in (("pydicom/data/test_files/J2K_pixelrep_mismatch.dcm", "ct_head"),
                 ("data_store/data/explicit_VR-UN.dcm", "ct_pancreas"),
                 ("data_store/data/bad_sequence.dcm", "ct_neck")):
        out.append({"name": n, "group": "ct", "modality": "CT 2D slice", "seen": False, "path": SITE / f})
    npz_path = SHARED / "adrenalmnist3d/adrenalmnist3d.npz"
    if npz_path.is_file():
        npz = np.load(npz_path)
        for i in range(3):
            img = sitk.GetImageFromArray(npz["val_images"][i].astype(np.float32))
            img.SetSpacing((64 / 28,) * 3)
            p = tmp / f"adrenal_val_{i}.nii.gz"
            sitk.WriteImage(img, str(p))
            out.append({"name": f"adrenal_val_{i}", "group": "adrenal", "modality": "adrenal mask (2.29 mm)",
                        "seen": False, "path": p, "mod": "other"})
    out += [
        {"name": "ct_spine_tptbox", "group": "seen", "modality": "CT (1.5 mm)", "seen": True,
         "path": Path("Testing/Data/tptbox/sub-ct_label-22_ct.nii.gz")},
        {"name": "mri_spine_tptbox", "group": "seen", "modality": "MRI T2w (1.5 mm)", "seen": True,
         "path": Path("Testing/Data/tptbox/sub-mri_label-6_T2w.nii.gz")},
        {"name": "xray_chest_cr", "group": "seen", "modality": "X-ray (CR)", "seen": True,
         "path": SITE / "data_store/data/RG1_UNCI.dcm", "spacing": (1.0, 1.0)},  # PixelSpacing 0 in the header
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--ixi", type=int, default=18, help="held-out IXI subjects to use (of 18)")
    ap.add_argument("--hippocampus", type=int, default=10, help="held-out hippocampus cases to use (of 51)")
    ap.add_argument("--montages", type=int, default=2, help="montages per group")
    a = ap.parse_args()
    out = Path(a.output)
    (out / "montages").mkdir(parents=True, exist_ok=True)
    (out / "tmp").mkdir(exist_ok=True)
    model = load_model(a.tokenizer, "reconstruct")
    rows: list[dict] = []
    per_group: dict[str, int] = {}
    for it in items(out / "tmp", a.ixi, a.hippocampus):
        row = {k: (str(v) if isinstance(v, Path) else v) for k, v in it.items() if k not in ("mod", "spacing")}
        if not Path(it["path"]).exists():
            rows.append({**row, "error": "missing"})
            continue
        t0 = time.perf_counter()
        settings = InferenceSettings(device="cpu", spacing=it.get("spacing"), modality=it.get("mod"))
        try:
            image = read_input(it["path"], spacing_override=settings.spacing is not None)
            r = reconstruct_image(image, model, settings=settings)
        except Exception as e:  # report, do not stop
            rows.append({**row, "error": f"{type(e).__name__}: {e}"})
            print(json.dumps(rows[-1]), flush=True)
            continue
        per_group[it["group"]] = per_group.get(it["group"], 0) + 1
        if per_group[it["group"]] <= a.montages:
            save_montage(out / "montages" / f"{it['name']}.png", r.original, r.reconstructed, r.native_spacing,
                         title=f"{it['name']} ({it['modality']}, {'seen' if it['seen'] else 'held out'}) · {r.model_id}",
                         metrics=r.metrics)
        rows.append({**row, "metrics": rounded(r.metrics), "normalization": r.normalization["scheme"],
                     "modality_used": r.normalization["modality"], "spacing_mm": [round(float(v), 4) for v in r.native_spacing],
                     "seconds": round(time.perf_counter() - t0, 2)})
        print(f"{it['name']:28s} {describe(r.metrics)}", flush=True)
    summary: dict[str, dict] = {}
    for g in dict.fromkeys(r["group"] for r in rows):
        ms = [r["metrics"] for r in rows if r["group"] == g and "metrics" in r]
        if not ms:
            continue
        summary[g] = {"n": len(ms), **{f"{k}_mean": round(float(np.mean([m[k] for m in ms if m[k] is not None])), 4)
                                      for k in ("pearson", "ssim", "std_ratio", "psnr_db", "psnr_constant_db", "psnr_gain_db")},
                      "pearson_min": round(float(min(m["pearson"] for m in ms)), 4),
                      "std_ratio_min": round(float(min(m["std_ratio"] for m in ms)), 4),
                      "std_ratio_max": round(float(max(m["std_ratio"] for m in ms)), 4)}
    (out / "recon.json").write_text(json.dumps(rows, indent=2))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for g, s in summary.items():
        print(f"{g:12s} n={s['n']:2d} pearson {s['pearson_mean']:.3f} (min {s['pearson_min']:.3f}) ssim {s['ssim_mean']:.3f} "
              f"std ratio {s['std_ratio_mean']:.2f} [{s['std_ratio_min']:.2f}, {s['std_ratio_max']:.2f}] "
              f"PSNR {s['psnr_db_mean']:.1f} vs flat {s['psnr_constant_db_mean']:.1f} dB")


if __name__ == "__main__":
    main()
