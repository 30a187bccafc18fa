"""Make the pictures of docs/slicer.md and the Extensions Index from real outputs of the real pumit CLI.

    OMP_NUM_THREADS=1 .venv/bin/python docs/images/make_images.py

1. ``pumit segment`` with the shipped ``pumit-ref-hippocampus-seg`` model on the shipped MSD case
   ``hippocampus_004`` (T1 MRI; in the model's validation split, never trained on) -> overlay on three
   orthogonal slices, Dice against the expert label in the title.
2. ``pumit reconstruct`` with the shipped ``pumit-ref-tokenizer`` on the shipped tptbox spine CT ->
   input | reconstruction | error map, with Pearson, std ratio and the PSNR gain over a constant image.
3. SampleData thumbnails (``PUMITSlicer/Resources/Icons/SampleData/``) of every demo image.

Slices are shown in radiological convention (patient's left on the right of the image), after reorienting
to LPS with SimpleITK; the pixel aspect follows the spacing. Writes PNGs only; CPU, about a minute.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "training" / "pumit" / "assets" / "demo"
OUT = REPO / "docs" / "images"
THUMBS = REPO / "PUMITSlicer" / "Resources" / "Icons" / "SampleData"
sys.path.insert(0, str(REPO / "PUMITSlicer"))
sys.path.insert(0, str(REPO / "training"))


def pumit(*args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "training"))
    subprocess.run([sys.executable, "-m", "pumit.cli.main", *args, "--device", "cpu", "--progress", "none"],
                   check=True, env=env)


def lps(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Voxels ``(z, y, x)`` of an image reoriented to LPS, and the spacing ``(x, y, z)`` mm."""
    image = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    return sitk.GetArrayFromImage(image), image.GetSpacing()


def views(array: np.ndarray, spacing, index=None):
    """Axial, coronal and sagittal slices through ``index`` (z, y, x; default the centre) with their
    ``imshow`` aspect; superior is up in coronal/sagittal, anterior up in axial."""
    z, y, x = index if index is not None else [s // 2 for s in array.shape]
    sx, sy, sz = spacing
    return [("axial", array[z], sy / sx), ("coronal", array[:, y, :][::-1], sz / sx),
            ("sagittal", array[:, :, x][::-1], sz / sy)]


def window(array: np.ndarray, low_pct=1.0, high_pct=99.5):
    return float(np.percentile(array, low_pct)), float(np.percentile(array, high_pct))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 2.0 * float(np.logical_and(a, b).sum()) / total if total else 1.0


def segmentation_figure(work: Path) -> str:
    out = work / "hippocampus_seg.nii.gz"
    pumit("segment", str(DEMO / "hippocampus_004.nii.gz"), "-o", str(out), "--model", "pumit-ref-hippocampus-seg")
    image, spacing = lps(DEMO / "hippocampus_004.nii.gz")
    labels, _ = lps(out)
    reference, _ = lps(DEMO / "hippocampus_004_label.nii.gz")
    sidecar = json.loads((work / "hippocampus_seg.labels.json").read_text())
    names = {e["value"]: e["name"] for e in sidecar["labels"]}
    colors = {e["value"]: np.array(e["color"]) / 255.0 for e in sidecar["labels"]}
    scores = {names[v]: dice(labels == v, reference == v) for v in names}
    centre = [int(round(c)) for c in np.argwhere(labels > 0).mean(axis=0)]
    low, high = window(image)
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 4.2), facecolor="black")
    for ax, (title, slice_, aspect), (_, label_slice, _) in zip(axes, views(image, spacing, centre),
                                                                 views(labels, spacing, centre)):
        ax.imshow(slice_, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
        overlay = np.zeros(label_slice.shape + (4,))
        for value, color in colors.items():
            overlay[label_slice == value] = (*color, 0.55)
        ax.imshow(overlay, aspect=aspect, interpolation="nearest")
        ax.set_title(title, color="white", fontsize=10)
        ax.axis("off")
    text = ", ".join(f"{n} Dice {d:.2f}" for n, d in scores.items())
    fig.suptitle(f"Segment: pumit-ref-hippocampus-seg on MSD hippocampus_004 (T1 MRI, validation case)\n{text} "
                 f"against the expert label", color="white", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "PUMITSlicer-segmentation.png", dpi=110, facecolor="black")
    plt.close(fig)
    return text


def reconstruction_figure(work: Path) -> str:
    from PUMITSlicerLib.results import formatReconstructionMetrics

    out, err = work / "spine_recon.nii.gz", work / "spine_error.nii.gz"
    pumit("reconstruct", str(DEMO / "spine_ct.nii.gz"), "-o", str(out), "--error-map", str(err),
          "--tokenizer", "pumit-ref-tokenizer", "--modality", "ct")
    image, spacing = lps(DEMO / "spine_ct.nii.gz")
    recon, _ = lps(out)
    error, _ = lps(err)
    try:
        from pumit.metrics import reconstruction_metrics

        metrics = reconstruction_metrics(image, recon)
    except ImportError:  # an older pumit: the same definitions, without SSIM
        ref, rec = image.astype(np.float64), recon.astype(np.float64)
        mse, var = float(np.mean((ref - rec) ** 2)), float(ref.var())
        metrics = {"pearson": float(np.corrcoef(ref.ravel(), rec.ravel())[0, 1]), "std_ratio": float(rec.std() / ref.std()),
                   "psnr_gain_db": 10 * math.log10(var / mse)}
    text = formatReconstructionMetrics(metrics)
    low, high = -300.0, 1200.0  # HU: soft tissue to bone
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.6), facecolor="black")
    for row, (name, index) in enumerate((("sagittal", 2), ("axial", 0))):
        for col, (title, array, cmap, vmin, vmax) in enumerate((
                ("input CT (HU)", image, "gray", low, high), ("reconstruction", recon, "gray", low, high),
                ("|error| (HU)", error, "inferno", 0.0, float(np.percentile(error, 99.5))))):
            _, slice_, aspect = views(array, spacing)[index]
            ax = axes[row, col]
            shown = ax.imshow(slice_, cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
            ax.set_title(f"{title}, {name}", color="white", fontsize=10)
            ax.axis("off")
            if col == 2:
                bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
                bar.ax.yaxis.set_tick_params(color="white", labelcolor="white")
    fig.suptitle(f"Reconstruct: pumit-ref-tokenizer on the tptbox spine CT\n{text}", color="white", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "PUMITSlicer-reconstruction.png", dpi=110, facecolor="black")
    plt.close(fig)
    return text


def thumbnails() -> None:
    from PUMITSlicerLib.sampledata import SAMPLES

    THUMBS.mkdir(parents=True, exist_ok=True)
    for sample in SAMPLES:
        image, spacing = lps(DEMO / sample.fileName)
        _, slice_, aspect = views(image, spacing)[2 if "spine" in sample.fileName else 0]
        low, high = (-300.0, 1200.0) if sample.modality == "CT" else window(image)
        fig = plt.figure(figsize=(1.28, 1.28), dpi=100, facecolor="black")
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(slice_, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="bilinear")
        ax.set_xlim(-0.5, slice_.shape[1] - 0.5)
        ax.axis("off")
        fig.savefig(THUMBS / f"{sample.nodeName}.png", facecolor="black")
        plt.close(fig)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        print("segmentation:", segmentation_figure(Path(folder)))
        print("reconstruction:", reconstruction_figure(Path(folder)))
    thumbnails()


if __name__ == "__main__":
    main()
