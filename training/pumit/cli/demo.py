"""``pumit demo -o DIR``: the out-of-the-box demo on the models and images shipped with pumit.

Nothing is downloaded. The demo uses the built-in models under ``pumit/assets/models/`` and the real images
under ``pumit/assets/demo/`` (each with its license in ``pumit/assets/demo/LICENSE.md``):

1. segments the hippocampus in a T1 MRI crop of MSD Task04 (a validation case of the reference model) with
   the reference segmentation model, and compares it with the expert label shipped next to it (Dice);
2. parcellates the brain in an IXI whole-head T1 (a validation subject, 2 mm) with the brain parcellation model
   into the MUSE regions and compares it with the DLMUSE map shipped next to it (mean Dice over the ROIs,
   a few named structures; agreement with DLMUSE, an automatic method);
3. reconstructs a spine CT and a spine T2w MRI (tptbox samples, seen in the tokenizer's training) and the
   hippocampus T1 crop and an IXI whole-head T1 (never seen by the tokenizer) through the reference
   tokenizer, with honest metrics (Pearson, SSIM, std ratio, PSNR beside a constant image's;
   :mod:`pumit.metrics`); the modality of each NIfTI is detected from its intensities (:func:`pumit.modality.detect_modality`);
4. writes every output (label map + ``.labels.json``, reconstructions, error maps, per-image montages), a
   ``demo_montage.png`` overview and ``demo_summary.json`` into ``DIR``.

It runs on the CPU in well under a minute.
"""

from __future__ import annotations

from dataclasses import replace

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

#: Shipped reference models used by the demo (name part of ``NAME-vX.Y.Z``).
SEG_MODEL = "pumit-ref-hippocampus-seg"
BRAIN_MODEL = "pumit-ref-brain-parcellation"
TOKENIZER = "pumit-ref-tokenizer"

#: Demo images (file names under ``pumit/assets/demo``).
DEMO_MRI = "hippocampus_004.nii.gz"
DEMO_MRI_LABEL = "hippocampus_004_label.nii.gz"
DEMO_HEAD = "ixi052_t1_2mm.nii.gz"
DEMO_HEAD_LABEL = "ixi052_t1_2mm_dlmuse.nii.gz"
#: structures named in the brain montage and the summary line (MUSE names of the label table)
BRAIN_NAMED = ("Hippocampus_L", "Hippocampus_R", "ThalamusProper_L", "ThalamusProper_R", "LateralVentricle_L",
               "LateralVentricle_R", "Putamen_L", "Putamen_R", "Caudate_L", "Caudate_R", "BrainStem")
#: (title, file, seen in the tokenizer's training): NIfTI names no modality, so it is detected from the
#: intensities (CT from Hounsfield units, else MRI), which selects the tokenizer's per-modality normalization
DEMO_RECON = (("spine CT (tptbox)", "spine_ct.nii.gz", True), ("spine T2w MRI (tptbox)", "spine_t2w_mri.nii.gz", True),
              ("hippocampus T1 MRI (held out)", "hippocampus_004.nii.gz", False),
              ("whole-head T1 MRI, IXI (held out)", "ixi052_t1_2mm.nii.gz", False))

_DESCRIPTION = """Run the out-of-the-box demo with the models and images shipped in the package (no download):
segment the hippocampus in a T1 MRI (MSD Task04 validation case) with the reference segmentation model and
score it against the expert label; parcellate an IXI whole-head T1 into the MUSE regions with the brain model
and compare it with its DLMUSE map; reconstruct a spine CT, a spine MRI, the T1 crop and an unseen IXI
whole-head T1 through the reference tokenizer (Pearson, SSIM, std ratio and PSNR beside a constant image's).
Writes label map, reconstructions, error maps, montages, demo_montage.png and demo_summary.json into DIR."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    p = subparsers.add_parser(
        "demo", help="run the out-of-the-box demo on the shipped models and images", description=_DESCRIPTION,
        epilog="exit codes: 0 success, 1 internal error, 2 bad output folder, 3 shipped model or image missing",
    )
    p.add_argument("-o", "--output", metavar="DIR", default="outputs/demo", help="output folder (created; demo files "
                   "in it are overwritten) [default: outputs/demo]")
    p.add_argument("--device", default="cpu", help="device to run on: cpu, cuda, auto [default: cpu]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary line")
    p.set_defaults(func=run)


def assets_dir() -> Path:
    """The package's ``assets`` folder."""
    return Path(__file__).resolve().parent.parent / "assets"


def demo_dir() -> Path:
    return assets_dir() / "demo"


def find_builtin_model(name: str) -> Path:
    """Folder of the latest built-in version of ``name`` (raises :class:`~pumit.errors.ModelError`)."""
    from pumit.errors import ModelError
    from pumit.store.paths import builtin_model_dirs

    found: list[tuple[tuple[int, ...], Path]] = []
    for root in builtin_model_dirs():
        for d in root.iterdir():
            if d.is_dir() and d.name.startswith(name + "-v") and (d / "model.safetensors").is_file():
                try:
                    version = tuple(int(v) for v in d.name[len(name) + 2:].split("."))
                except ValueError:
                    continue
                found.append((version, d))
    if not found:
        raise ModelError(f"built-in model {name} is missing from {assets_dir() / 'models'} (broken installation: "
                         "reinstall pumit)")
    return max(found)[1]


def _demo_file(name: str) -> Path:
    from pumit.errors import ModelError

    p = demo_dir() / name
    if not p.is_file():
        raise ModelError(f"demo image {p} is missing (broken installation: reinstall pumit)")
    return p


def _window(a: Any) -> tuple[float, float]:
    import numpy as np

    lo, hi = (float(v) for v in np.percentile(a, (0.5, 99.5)))
    return lo, (hi if hi > lo else lo + 1.0)


def _oriented(image: Any) -> Any:
    """``(z, y, x)`` array of ``image`` in LPS: axial slices along 0, coronal along 1 (superior = high z)."""
    import numpy as np
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS")).astype(np.float32)


def _label_rgba(colors: dict[int, tuple[int, int, int]], alpha: float = 0.6) -> Any:
    """An RGBA lookup table ``(max value + 1, 4)``: each label's colour, background transparent."""
    import numpy as np

    lut = np.zeros((max(colors, default=0) + 1, 4), dtype=np.float32)
    for v, rgb in colors.items():
        if v:
            lut[v, :3] = np.asarray(rgb, dtype=np.float32) / 255.0
            lut[v, 3] = alpha
    return lut


def brain_panels(brain: dict[str, Any]) -> list[tuple[str, Any, Any, list[tuple[float, float, str]]]]:
    """Coronal and axial panels ``(title, T1 slice, RGBA overlay or None, [(x, y, name)])`` of the brain step:
    T1 | prediction | DLMUSE, through the centre of the hippocampi; the :data:`BRAIN_NAMED` structures present
    in the prediction's slice are named at their centroid."""
    import numpy as np

    img, pred, ref, lut = brain["image"], brain["pred"], brain["ref"], brain["lut"]
    names = brain["names"]  # value -> name
    hip = [v for v, n in names.items() if n.startswith("Hippocampus")]
    mask = np.isin(ref, hip) if hip and ref is not None else pred > 0
    z, y, _ = (int(round(c)) for c in np.argwhere(mask).mean(0)) if mask.any() else (s // 2 for s in img.shape)
    out = []
    for view, sl in (("coronal", (slice(None), y, slice(None))), ("axial", (z, slice(None), slice(None)))):
        named = []
        for v, n in names.items():
            if n in BRAIN_NAMED:
                pts = np.argwhere(pred[sl] == v)
                if len(pts) > 8:
                    r, c = pts.mean(0)  # (row, column) = imshow (y, x) whatever the origin
                    named.append((float(c), float(r), n.replace("ThalamusProper", "Thalamus").replace("LateralVentricle", "LatVent")))
        over = lambda lab: lut[np.clip(lab[sl], 0, len(lut) - 1).astype(np.int64)]  # noqa: E731
        out.append((f"{view}: T1", img[sl], None, []))
        out.append((f"{view}: prediction (mean Dice {brain['dice_mean']:.3f})", img[sl], over(pred), named))
        out.append((f"{view}: DLMUSE", img[sl], over(ref) if ref is not None else None, []))
    return out


def spread_labels(named: list[tuple[float, float, str]], shape: tuple[int, int], char_w: float,
                  line_h: float) -> list[tuple[float, float, str]]:
    """Label positions ``(x, y, name)`` moved apart so that no two text boxes overlap (box: ``len(name) ×
    char_w`` by ``line_h``, in image pixels, centred on the point), each kept inside the ``(rows, cols)`` image.
    A label that collides moves up or down (alternating, one line at a time) from its structure's centroid,
    nearest free place first; left/right pairs (thalami, hippocampi) otherwise print over each other."""
    rows, cols = shape
    placed: list[tuple[float, float, str]] = []

    def clash(x: float, y: float, n: str) -> bool:
        return any(abs(x - px) * 2 < (len(n) + len(pn)) * char_w and abs(y - py) < line_h for px, py, pn in placed)

    for x, y, n in named:
        half = len(n) * char_w / 2
        x = min(max(x, half), max(cols - half, half))
        for k in range(0, 4 * len(named) + 2):
            step = (k + 1) // 2 * (1 if k % 2 else -1)  # 0, +1, -1, +2, -2 ... lines
            yy = min(max(y + step * line_h, line_h / 2), max(rows - line_h / 2, line_h / 2))
            if not clash(x, yy, n):
                y = yy
                break
        placed.append((x, y, n))
    return placed


def save_brain_montage(path: Path, brain: dict[str, Any]) -> None:
    """``<case>_parcellation.png``: coronal and axial T1 | prediction | DLMUSE, named structures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 7.0), dpi=90)
    FigureCanvasAgg(fig)
    fig.suptitle(f"{brain['model']} on {brain['input']} (held out; agreement with DLMUSE, an automatic method)", fontsize=10)
    _draw_brain(fig, brain, rows=2, first_row=0)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)


def _draw_brain(fig: Any, brain: dict[str, Any], rows: int, first_row: int, views: int = 2) -> None:
    lo, hi = _window(brain["image"])
    for i, (title, im, over, named) in enumerate(brain_panels(brain)[: 3 * views]):
        ax = fig.add_subplot(rows, 3, 3 * first_row + 1 + i)
        origin = "upper" if title.startswith("axial") else "lower"  # LPS rows: axial anterior first, coronal inferior first
        ax.imshow(im, cmap="gray", vmin=lo, vmax=hi, origin=origin)
        if over is not None:
            ax.imshow(over, origin=origin, interpolation="nearest")
        # a 6-pt character with its box padding is about 1/40 of a panel's width, a line about 1/18 (panels ~3 in)
        for x, y, n in spread_labels(named, im.shape[:2], im.shape[1] / 40, im.shape[1] / 18):
            ax.text(x, y, n, color="white", fontsize=6, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.1", fc=(0, 0, 0, 0.5), lw=0))
        ax.set_title(title, fontsize=8)
        ax.axis("off")


def save_overview(path: Path, seg: dict[str, Any], recons: list[dict[str, Any]], brain: dict[str, Any] | None = None) -> None:
    """``demo_montage.png``: row 1 the MRI with the predicted and the expert hippocampus; then one row per
    reconstruction (input | reconstruction | |error|), middle slice along the slice axis."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    rows = 1 + len(recons) + (1 if brain else 0)
    fig = Figure(figsize=(10.5, 3.3 * rows), dpi=90)
    FigureCanvasAgg(fig)
    fig.suptitle("pumit demo: shipped reference models on shipped real images (CPU)", fontsize=12)
    cmap = ListedColormap([(0, 0, 0, 0), (1.0, 0.2, 0.2, 0.55), (0.2, 0.6, 1.0, 0.55)])

    img, pred, ref, sp = seg["image"], seg["pred"], seg["ref"], seg["spacing"]
    # coronal-ish view through the hippocampus: the H-index with most foreground
    h = int(np.argmax((ref > 0).sum(axis=(0, 2)))) if ref is not None and ref.any() else img.shape[1] // 2
    lo, hi = _window(img)
    panels = [("T1 MRI", None), ("prediction", pred), ("expert label", ref)]
    for c, (title, lab) in enumerate(panels):
        ax = fig.add_subplot(rows, 3, 1 + c)
        ax.imshow(img[:, h, :], cmap="gray", vmin=lo, vmax=hi, aspect=sp[0] / sp[2], origin="lower")
        if lab is not None:
            ax.imshow(lab[:, h, :], cmap=cmap, vmin=0, vmax=2, aspect=sp[0] / sp[2], origin="lower",
                      interpolation="nearest")
        if c == 1:
            title += f"  (Dice {seg['dice']['mean']:.3f})"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if brain:
        _draw_brain(fig, brain, rows=rows, first_row=1, views=1)
    for r, rec in enumerate(recons, start=2 if brain else 1):
        a, b = rec["original"], rec["reconstructed"]
        d = a.shape[0] // 2
        lo, hi = _window(a)
        err = np.abs(a - b)
        emax = float(np.percentile(err, 99.5)) or 1.0
        aspect = rec["spacing"][1] / rec["spacing"][2]
        for c, (title, im, kw) in enumerate((
            (f"{rec['title']}", a[d], dict(cmap="gray", vmin=lo, vmax=hi)),
            (f"reconstruction (r {rec['metrics']['pearson']:.3f}, SSIM {rec['metrics']['ssim']:.2f}, "
             f"std {rec['metrics']['std_ratio']:.2f})", b[d], dict(cmap="gray", vmin=lo, vmax=hi)),
            ("|error|", err[d], dict(cmap="magma", vmin=0, vmax=emax)),
        )):
            ax = fig.add_subplot(rows, 3, 3 * r + 1 + c)
            ax.imshow(im, aspect=aspect, **kw)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)


def run_demo(output: str | Path, device: str = "cpu", quiet: bool = False) -> dict[str, Any]:
    """Run the demo into ``output``; returns the summary (also written as ``demo_summary.json``)."""
    import numpy as np
    import SimpleITK as sitk

    from pumit.errors import InputError
    from pumit.inference import InferenceSettings, reconstruct, segment
    from pumit.metrics import describe, dice_scores, rounded

    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    out = Path(output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the output folder {out}: {e}") from e
    seg_model = find_builtin_model(SEG_MODEL)
    brain_model = find_builtin_model(BRAIN_MODEL)
    tok_model = find_builtin_model(TOKENIZER)
    settings = InferenceSettings(device=device)
    summary: dict[str, Any] = {"models": {"segmentation": seg_model.name, "brain_parcellation": brain_model.name,
                                          "tokenizer": tok_model.name}}
    n_steps = 2 + len(DEMO_RECON)

    # 1. segmentation of the shipped MRI
    mri, mri_label = _demo_file(DEMO_MRI), _demo_file(DEMO_MRI_LABEL)
    say(f"[1/{n_steps}] segmenting {mri.name} with {seg_model.name}")
    t0 = time.perf_counter()
    seg_out = out / "hippocampus_004_seg.nii.gz"
    res = segment(mri, seg_out, seg_model, settings=settings)
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(seg_out)))
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(mri_label))).astype(np.int64)
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(mri))).astype(np.float32)
    names = {int(li.value): li.name for li in res.label_info} if res.label_info else {1: "label_1", 2: "label_2"}
    names.setdefault(0, "background")
    dice = dice_scores(pred, ref, names)
    sp_itk = sitk.ReadImage(str(mri)).GetSpacing()  # (x, y, z); arrays are (z, y, x)
    summary["segmentation"] = {"input": mri.name, "output": seg_out.name, "labels": {str(k): v for k, v in names.items()},
                               "dice_vs_expert": dice, "seconds": round(time.perf_counter() - t0, 2)}
    say("      Dice vs expert label: " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()))

    # 2. whole-brain parcellation of the shipped whole-head T1, against its DLMUSE map
    head, head_label = _demo_file(DEMO_HEAD), _demo_file(DEMO_HEAD_LABEL)
    say(f"[2/{n_steps}] parcellating the brain in {head.name} with {brain_model.name}")
    t0 = time.perf_counter()
    brain_out = out / DEMO_HEAD.replace(".nii.gz", "_parcellation.nii.gz")
    bres = segment(head, brain_out, brain_model, settings=settings)
    bnames = {int(li.value): li.name for li in bres.label_info}
    head_img = sitk.ReadImage(str(head))
    bpred = _oriented(sitk.ReadImage(str(brain_out))).astype(np.int64)
    bref = _oriented(sitk.ReadImage(str(head_label))).astype(np.int64)
    present = set(np.unique(bref).tolist())
    bdice = dice_scores(bpred, bref, {v: n for v, n in bnames.items() if v and v in present})
    named = {n: round(bdice[n], 3) for n in BRAIN_NAMED if n in bdice}
    summary["brain_parcellation"] = {
        "input": head.name, "output": brain_out.name, "montage": brain_out.name.replace(".nii.gz", ".png"),
        "reference": f"{head_label.name} (DLMUSE, automatic)", "rois": len(bdice) - 1,
        "mean_dice_vs_dlmuse": round(bdice["mean"], 4), "named_structures_dice": named,
        "seconds": round(time.perf_counter() - t0, 2)}
    brain = {"image": _oriented(head_img), "pred": bpred, "ref": bref, "names": bnames, "dice_mean": bdice["mean"],
             "lut": _label_rgba({int(li.value): li.color for li in bres.label_info}), "model": brain_model.name,
             "input": head.name}
    save_brain_montage(out / summary["brain_parcellation"]["montage"], brain)
    say(f"      mean Dice vs DLMUSE over {len(bdice) - 1} ROIs {bdice['mean']:.3f}; "
        + ", ".join(f"{k} {v:.3f}" for k, v in named.items()))

    # 3-. reconstructions
    recons: list[dict[str, Any]] = []
    summary["reconstruction"] = []
    for i, (title, fname, seen) in enumerate(DEMO_RECON, start=3):
        src = _demo_file(fname)
        stem = fname.replace(".nii.gz", "") + ("_tok" if fname == DEMO_MRI else "")
        say(f"[{i}/{n_steps}] reconstructing {fname} with {tok_model.name}")
        t0 = time.perf_counter()
        rec = reconstruct(src, out / f"{stem}_recon.nii.gz", tok_model, error_map=out / f"{stem}_error.nii.gz",
                          montage=out / f"{stem}_recon.png", settings=replace(settings, modality=None))
        metrics = rounded(rec.metrics)
        summary["reconstruction"].append({"input": fname, "title": title, "output": f"{stem}_recon.nii.gz",
                                          "montage": f"{stem}_recon.png", "seen_in_tokenizer_training": seen,
                                          "metrics": metrics, "psnr_db": metrics["psnr_db"],
                                          "normalization": rec.normalization,
                                          "seconds": round(time.perf_counter() - t0, 2)})
        say(f"      {describe(rec.metrics)}")
        recons.append({"title": title, "original": rec.original, "reconstructed": rec.reconstructed,
                       "spacing": rec.spacing, "metrics": rec.metrics})

    montage = out / "demo_montage.png"
    save_overview(montage, {"image": img, "pred": pred, "ref": ref, "dice": dice,
                            "spacing": (sp_itk[2], sp_itk[1], sp_itk[0])}, recons, brain)
    summary["montage"] = montage.name
    summary["seconds"] = round(time.perf_counter() - t_start, 2)
    tmp = out / "demo_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "demo_summary.json")
    return summary


def run(args: argparse.Namespace) -> int:
    summary = run_demo(args.output, device=args.device, quiet=args.quiet)
    seg = summary["segmentation"]["dice_vs_expert"]["mean"]
    recon = ", ".join(f"{r['title']} Pearson {r['metrics']['pearson']:.3f} (PSNR {r['metrics']['psnr_db']:.1f} dB vs "
                      f"{r['metrics']['psnr_constant_db']:.1f} dB flat)" for r in summary["reconstruction"])
    brain = summary["brain_parcellation"]
    print(f"demo done in {summary['seconds']:.1f} s: hippocampus Dice {seg:.3f}; brain parcellation mean Dice vs DLMUSE "
          f"{brain['mean_dice_vs_dlmuse']:.3f} over {brain['rois']} ROIs; reconstruction {recon}; "
          f"outputs in {Path(args.output)} (overview: {Path(args.output) / summary['montage']})")
    return 0
