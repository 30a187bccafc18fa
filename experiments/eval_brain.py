"""Whole-brain parcellation on the native grid, against DLMUSE (issue 12): what a user of ``pumit segment`` gets.

    python experiments/eval_brain.py --model MODEL_DIR --name ours-pretrained \\
        --out experiments/results/brain-eval-ours-pretrained.json
    python experiments/eval_brain.py --model MODEL_DIR --dynunet runs/brain/dynunet-f100/dynunet-lr0.003-s0 \\
        --name dynunet --out experiments/results/brain-eval-dynunet.json
    python experiments/eval_brain.py --model MODEL_DIR --dynunet runs/brain/unetr-f100/unetr-lr0.01-s0 \\
        --baseline-arm unetr --name unetr --out experiments/results/brain-eval-unetr-f100.json

Every subject of ``--subjects`` (default the validation split ``experiments/data/brain_val.txt``) is read from
``--data`` (``t1/<id>_T1.nii.gz``, ``dlmuse_seg/<id>_T1_DLMUSE.nii.gz``: the original files, 2 mm) and
segmented with :func:`pumit.inference.segment.segment_image` and the default :class:`InferenceSettings` (the
product path: resampling to the model's 3 mm grid, sliding window, logits resampled back before the argmax,
MUSE label values). ``--baseline RUN`` (older name ``--dynunet``) runs a MONAI baseline of ``decoder_compare.py`` (its ``model.safetensors``;
``--baseline-arm``: ``dynunet``, the default, or ``unetr``) through exactly the same path, in place of
``MODEL_DIR``'s network: only the network differs. ``--trivial``
(no model): the trivial baseline, every voxel of DLMUSE's own brain mask called the subject's most frequent ROI
(it is given the brain outline, which no model is).

Dice per MUSE ROI and subject on the native 2 mm grid; a ROI absent from a subject's DLMUSE map is skipped for
that subject (MONAI's ``ignore_empty``). Reported: per subject the mean over its ROIs (all, and the
subcortical ones of ``brain_results.SUBCORTICAL``), then mean ± sd over subjects; per ROI the mean over
subjects; seconds per subject (wall, CPU) with the thread count and load.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "data"))

from brain_results import SUBCORTICAL  # noqa: E402
from collect_results import metrics_rows  # noqa: E402
from pumit.atomic import atomic_write_text  # noqa: E402
from pumit.metrics import dice_scores  # noqa: E402
from make_brain_dataset import read_table  # noqa: E402


def is_subcortical(name: str) -> bool:
    return re.sub(r"_[RL]$", "", name) in SUBCORTICAL


def load_arm(model_dir: str, dynunet: str | None, dynunet_config: str, arm: str = "dynunet") -> Any:
    """The :class:`LoadedModel` of ``model_dir``, with its network swapped for a MONAI baseline run's if given
    (``arm``: ``dynunet`` or ``unetr``, built by ``decoder_compare.build_arm`` from ``dynunet_config``)."""
    import torch

    from pumit.inference.modelinfo import load_model

    model = load_model(model_dir, "segment")
    if not dynunet:
        return model
    import yaml
    from safetensors.torch import load_model as load_weights

    from decoder_compare import build_arm

    cfg = yaml.safe_load(Path(dynunet_config).read_text())
    roi = tuple(int(v) for v in cfg["roi"])
    spacing = tuple(float(v) for v in cfg["target_spacing"])
    if list(roi) != list(model.meta["input"]["roi"]) or list(spacing) != list(model.meta["input"]["spacing"]):
        raise SystemExit(f"the {arm} baseline config's roi/spacing {roi}/{spacing} differ from {model_dir}'s "
                         f"{model.meta['input']['roi']}/{model.meta['input']['spacing']}: not the same protocol")
    labels = {str(i): str(i) for i in range(model.num_classes)}
    wrapper = build_arm(arm, cfg, labels, 1, roi, spacing)  # type: ignore[arg-type]
    load_weights(wrapper, str(Path(dynunet) / "model.safetensors"))  # strict: every key, no unexpected ones
    stride = wrapper.total_stride
    wrapper.required_divisor = lambda sp: (stride, stride, stride)  # type: ignore[attr-defined]
    torch.nn.Module.eval(wrapper)
    return dataclasses.replace(model, module=wrapper, model_id=f"{arm}:{Path(dynunet).name}")


def trained_steps(run: str | None) -> int | None:
    """Optimizer steps of a ``decoder_compare.py`` run folder: the last step its CSV log recorded, + 1 (None when
    the folder has no log). The config's ``max_steps`` is not it: ``--max-steps`` overrides it per run."""
    if not run:
        return None
    steps = [int(row["step"]) for row in metrics_rows(Path(run)) if "step" in row]
    return max(steps) + 1 if steps else None


def training_of(model: Any, dynunet_config: str, run: str | None = None) -> dict[str, Any] | None:
    """Steps, learning rate, seed and initial weights of the evaluated network (None for the trivial arm).
    ``run``: the baseline's run folder, whose log gives its steps (else the config's ``max_steps``)."""
    if model is None:
        return None
    if str(model.model_id).startswith(("dynunet:", "unetr:")):
        import yaml

        cfg = yaml.safe_load(Path(dynunet_config).read_text())
        lr = re.search(r"-lr([0-9.e-]+)-s(\d+)$", model.model_id)
        network = ("MONAI DynUNet, nnU-Net 3d_fullres rules" if model.model_id.startswith("dynunet:")
                   else "MONAI UNETR (patch 16, 12 blocks, the SPAD-ViT's width and heads)")
        return {"network": network, "steps": trained_steps(run) or int(cfg["max_steps"]),
                "lr": float(lr.group(1)) if lr else None, "seed": int(lr.group(2)) if lr else None,
                "base_model": None, "batch_size": int(cfg["batch_size"])}
    t = model.meta.get("training", {})
    c = t.get("config", {})
    return {"network": "SPAD-ViT segmenter", "steps": t.get("steps"), "lr": c.get("lr"), "seed": c.get("seed"),
            "base_model": Path(str(c["base_model"])).as_posix() if c.get("base_model") else None,
            "batch_size": c.get("batch_size")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a packaged brain model folder (or built-in id)")
    ap.add_argument("--trivial", action="store_true", help="the trivial baseline instead of a model")
    ap.add_argument("--baseline", "--dynunet", dest="dynunet", default=None, metavar="RUN",
                    help="a decoder_compare.py baseline run folder (model.safetensors); --dynunet is the older name")
    ap.add_argument("--baseline-arm", default="dynunet", choices=("dynunet", "unetr"),
                    help="the network of the --baseline run (default dynunet)")
    ap.add_argument("--baseline-config", "--dynunet-config", dest="dynunet_config",
                    default=str(HERE / "configs" / "brain_dynunet.yaml"),
                    help="the decoder_compare.py config the baseline was trained with (brain_dynunet.yaml for both arms)")
    ap.add_argument("--name", required=True, help="the arm's name in the results")
    ap.add_argument("--subjects", default=str(HERE / "data" / "brain_val.txt"))
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "ixi_t1_dlmuse"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N subjects (a quick check, not a result)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if not a.trivial and not a.model:
        ap.error("give --model (or --trivial)")
    import SimpleITK as sitk
    import torch

    from pumit.inference.settings import InferenceSettings
    from pumit.inference.segment import segment_image

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = [r for r in read_table() if int(r["class"]) > 0]
    names = {int(r["value"]): r["name"] for r in rows}
    values = sorted(names)
    subjects = [s.strip() for s in Path(a.subjects).read_text().split() if s.strip()]
    subjects = subjects[: a.limit] if a.limit else subjects
    model = None if a.trivial else load_arm(a.model, a.dynunet, a.dynunet_config, a.baseline_arm)
    data = Path(a.data)
    per_subject: list[dict[str, Any]] = []
    for sid in subjects:
        image = sitk.ReadImage(str(data / "t1" / f"{sid}_T1.nii.gz"))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "dlmuse_seg" / f"{sid}_T1_DLMUSE.nii.gz")))
        t0, c0 = time.perf_counter(), time.process_time()
        if model is None:
            fg, counts = np.unique(truth[truth > 0], return_counts=True)
            pred, windows = np.where(truth > 0, fg[np.argmax(counts)], 0), 0
        else:
            res = segment_image(image, model, settings=InferenceSettings())
            pred, windows = sitk.GetArrayFromImage(res.labels), res.windows
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        present = set(np.unique(truth).tolist())  # a ROI absent from DLMUSE's map is skipped for this subject
        d = dice_scores(pred, truth, {v: names[v] for v in values if v in present})
        mean_all = d.pop("mean")
        sub = [v for k, v in d.items() if is_subcortical(k)]
        per_subject.append({"id": sid, "mean_all": mean_all, "mean_subcortical": float(np.mean(sub)),
                            "dice": {k: round(v, 4) for k, v in d.items()}, "wall_s": round(wall, 2),
                            "cpu_s": round(cpu, 2), "windows": windows})
        print(f"{sid}: all {mean_all:.3f} subcortical {np.mean(sub):.3f} ({wall:.1f} s)", flush=True)

    def msd(key: str) -> dict[str, float]:
        xs = [s[key] for s in per_subject]
        return {"mean": round(statistics.fmean(xs), 4), "sd": round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0}

    per_roi = {n: round(statistics.fmean(s["dice"][n] for s in per_subject if n in s["dice"]), 4)
               for n in (names[v] for v in values) if any(n in s["dice"] for s in per_subject)}
    out = {"arm": a.name, "model": a.model, "dynunet": a.dynunet, "training": training_of(model, a.dynunet_config, a.dynunet),
           "subjects": len(per_subject),
           "subject_list": a.subjects, "grid": "native (2 mm, the DLMUSE maps' grid)",
           "all_rois": msd("mean_all"), "subcortical": msd("mean_subcortical"), "per_roi": per_roi,
           "subcortical_names": [n for n in per_roi if is_subcortical(n)],
           "seconds_per_subject": {"wall": msd("wall_s"), "cpu": msd("cpu_s")},
           "threads": torch.get_num_threads(), "loadavg_end": list(os.getloadavg()), "per_subject": per_subject}
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
    print(f"{a.name}: all ROIs {out['all_rois']['mean']:.3f} ± {out['all_rois']['sd']:.3f}, subcortical "
          f"{out['subcortical']['mean']:.3f} ± {out['subcortical']['sd']:.3f} over {len(per_subject)} subjects -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
