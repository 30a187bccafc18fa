"""Tokenizer reconstruction quality per modality (PSNR) with `pumit.inference.reconstruct`, plus montages.

    python experiments/eval_reconstruction.py --tokenizer runs/ref/tokenizer/model --output runs/ref/recon-eval

Images (paths relative to the repository root; `seen` = the image was in the pre-training set):
held-out: MSD Hippocampus validation cases (MRI), AdrenalMNIST3D validation items (binary CT-derived masks,
written to NIfTI at 64 mm / 28 voxels), pydicom CT files not used in pre-training; seen: the tptbox spine CT and
MRI, a chest radiograph, an ultrasound frame and a photo. PSNR uses each input's value range as the peak
(pumit.inference). Writes OUTPUT/recon.json and OUTPUT/montages/<name>.png.
"""
from __future__ import annotations

import argparse
import json
import sysconfig
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pumit.inference import InferenceSettings, reconstruct

SITE = Path(sysconfig.get_paths()["purelib"])
SHARED = Path("../shared/data")
HIPPO_VAL = [l.strip() for l in Path("experiments/data/hippocampus_val.txt").read_text().split() if l.strip()][:4]


def items(tmp: Path) -> list[dict]:
    out = []
    for c in HIPPO_VAL:
        out.append({"name": f"mri_hippocampus_{c[-3:]}", "modality": "MRI (T1, 1 mm)", "mod": "mri", "seen": False,
                    "path": SHARED / "msd_task04_hippocampus/imagesTr" / f"{c}.nii.gz"})
    npz = np.load(SHARED / "adrenalmnist3d/adrenalmnist3d.npz")
    for i in range(3):
        img = sitk.GetImageFromArray(npz["val_images"][i].astype(np.float32))
        img.SetSpacing((64 / 28,) * 3)
        p = tmp / f"adrenal_val_{i}.nii.gz"
        sitk.WriteImage(img, str(p))
        out.append({"name": f"mask_adrenal_val_{i}", "modality": "adrenal mask (2.29 mm)", "seen": False, "path": p})
    for f, n in (("pydicom/data/test_files/J2K_pixelrep_mismatch.dcm", "ct_head_pydicom"),
                 ("data_store/data/explicit_VR-UN.dcm", "ct_pancreas_pydicom")):
        out.append({"name": n, "modality": "CT 2D (0.5 mm)", "seen": False, "path": SITE / f})
    out += [
        {"name": "ct_spine_tptbox", "modality": "CT (1.5 mm)", "mod": "ct", "seen": True, "path": Path("Testing/Data/tptbox/sub-ct_label-22_ct.nii.gz")},
        {"name": "mri_spine_tptbox", "modality": "MRI T2w (1.5 mm)", "mod": "mri", "seen": True, "path": Path("Testing/Data/tptbox/sub-mri_label-6_T2w.nii.gz")},
        {"name": "xray_chest_cr", "modality": "X-ray (CR)", "seen": True, "path": SITE / "data_store/data/RG1_UNCI.dcm",
         "spacing": (1.0, 1.0)},  # PixelSpacing 0 in the header; the data pipeline also used 1 mm
        {"name": "us_philips", "modality": "ultrasound (grey)", "seen": True,
         "path": SITE / "data_store/data/JPGLosslessP14SV1_1s_1f_8b.dcm"},
        {"name": "mri_brain_t1_kmeans", "modality": "MRI T1 (2x2x3 mm)", "mod": "mri", "seen": True,
         "path": Path("/usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz")},
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    out = Path(a.output)
    (out / "montages").mkdir(parents=True, exist_ok=True)
    (out / "tmp").mkdir(exist_ok=True)
    rows = []
    for it in items(out / "tmp"):
        if not Path(it["path"]).exists():
            rows.append({**it, "path": str(it["path"]), "error": "missing"})
            continue
        t0 = time.perf_counter()
        # "mod": the modality for tokenizers with per-modality normalization (DICOM files carry their own tag)
        settings = InferenceSettings(device="cpu", spacing=it.pop("spacing", None), modality=it.pop("mod", None))
        try:
            r = reconstruct(it["path"], out / "tmp" / f"{it['name']}_recon.nii.gz", a.tokenizer,
                            montage=out / "montages" / f"{it['name']}.png", settings=settings)
            rows.append({**it, "path": str(it["path"]), "psnr_db": round(float(r.psnr), 3),
                         "spacing_mm": [round(float(v), 4) for v in r.spacing], "seconds": round(time.perf_counter() - t0, 2)})
        except Exception as e:  # report, do not stop
            rows.append({**it, "path": str(it["path"]), "error": f"{type(e).__name__}: {e}"})
        print(json.dumps(rows[-1]), flush=True)
    (out / "recon.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
