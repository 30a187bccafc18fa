"""Tables of the whole-brain parcellation results (issue 12) from ``experiments/results/brain-eval-*.json``
(:mod:`eval_brain`) and ``brain_grid_ceiling.json`` (:mod:`brain_grid_ceiling`), written between
``<!-- brain:begin -->`` and ``<!-- brain:end -->`` in ``docs/brain.md`` and ``docs/results.md``.

    python experiments/collect_brain_results.py
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOCS = (ROOT / "docs" / "brain.md", ROOT / "docs" / "results.md")
#: rows in this order (file stem after ``brain-eval-``), with a description
ARMS = (
    ("trivial", "trivial: DLMUSE's own brain mask, every voxel the most frequent ROI"),
    ("dynunet-f100", "MONAI DynUNet, nnU-Net 3d_fullres rules, from scratch"),
    ("dynunet-f100-1500", "MONAI DynUNet, nnU-Net 3d_fullres rules, from scratch, v0.1.0's budget"),
    ("dynunet-f100-4500", "MONAI DynUNet, the 1500-step run trained 3000 more steps at lr 0.001, 4500 in all "
                          "(v0.2.0's budget)"),
    ("dynunet-f100-7500", "MONAI DynUNet, the 4500-step run trained 3000 more steps at lr 0.0003, 7500 in all"),
    ("unetr-f100", "MONAI UNETR (12 blocks, patch 16, the SPAD-ViT's width and heads), from scratch"),
    ("scratch-f100", "ours (SPAD-ViT, light decoder, 1 block per level), from scratch"),
    ("scratch-rb2-f100", "ours, light decoder with 2 blocks per level (the new default), from scratch"),
    ("pretrained-f100", "ours, from the MIM backbone"),
    ("shipped", "ours, from the MIM backbone, longer (`pumit-ref-brain-parcellation-v0.1.0`, superseded)"),
    ("shipped-v0.2.0", "v0.1.0 trained 3000 more steps at lr 0.003, 4500 in all "
                       "(`pumit-ref-brain-parcellation-v0.2.0`, superseded)"),
    ("shipped-v0.3.0", "v0.2.0 trained 4000 more steps at lr 0.003, 8500 in all "
                       "(`pumit-ref-brain-parcellation-v0.3.0`, superseded)"),
    ("shipped-v0.4.0", "v0.3.0 trained 3000 more steps at lr 0.003, 11500 in all "
                       "(`pumit-ref-brain-parcellation-v0.4.0`, superseded)"),
    ("shipped-v0.5.0", "v0.4.0 trained 3000 more steps at lr 0.003, 14500 in all (**shipped** "
                       "`pumit-ref-brain-parcellation-v0.5.0`)"),
)
#: per-structure rows: the subcortical structures, both sides, then a few large ones
STRUCTURES = ("ThalamusProper", "Caudate", "Putamen", "Pallidum", "Hippocampus", "Amygdala", "AccumbensArea",
              "VentralDC", "LateralVentricle", "BrainStem", "CerebellumExterior")
#: label-efficiency rows (file stem ``brain-eval-<arm>-f<frac>``) and columns (percent of the 118 subjects)
FRACTION_ARMS = (("pretrained", "ours, from the MIM backbone"), ("scratch", "ours, from scratch (1 block per level)"),
                 ("dynunet", "MONAI DynUNet, nnU-Net 3d_fullres rules"))
FRACTIONS = (("010", "10 % (12 subjects)"), ("025", "25 % (30)"), ("100", "100 % (118)"))
#: the longer like-for-like (run_brain.sh step 13): 1500 steps; ours at 100 % is v0.1.0 (``shipped``)
LONG_STEPS = 1500
LONG_ARMS = (("pretrained", "ours, from the MIM backbone (100 %: v0.1.0)"), ("dynunet", "MONAI DynUNet, nnU-Net 3d_fullres rules"))
GOAL = "issue 12 goal: ≥ 0.80 over all ROIs and ≥ 0.85 subcortical on unseen subjects, ahead of the DynUNet"


def _ms(d: dict[str, float] | None, digits: int = 3) -> str:
    return "–" if not d else f"{d['mean']:.{digits}f} ± {d['sd']:.{digits}f}"


def load() -> dict[str, dict[str, Any]]:
    return {p.stem[len("brain-eval-"):]: json.loads(p.read_text()) for p in sorted(RESULTS.glob("brain-eval-*.json"))}


def block(runs: dict[str, dict[str, Any]]) -> str:
    rows = [(k, desc, runs[k]) for k, desc in ARMS if k in runs]
    if not rows:
        return "*No brain parcellation results yet.*"
    n = rows[0][2]["subjects"]
    out = [f"Mean Dice against DLMUSE on the **{n} validation subjects** (`experiments/data/brain_val.txt`, never "
           "trained on; 18 of them also unseen by the tokenizer), computed on the **native 2 mm grid** of the DLMUSE "
           "maps from what `pumit segment` writes (`experiments/eval_brain.py`: the product path, resampling to the "
           "model's 3 mm grid and back included). Per subject the mean over its ROIs (148 MUSE ROIs; subcortical: "
           "thalamus, caudate, putamen, pallidum, hippocampus, amygdala, accumbens, ventral DC, both sides), then "
           "mean ± sd over subjects. Training: the 118 training subjects (100 %), batch 2 of 32 × 48 × 48 crops at "
           "3 mm, DiceCE, AdamW + warm-up + cosine, seed 0, one run per arm. " + GOAL + ".", "",
           "| arm | steps | lr | all ROIs | subcortical | s per head (wall, 1 thread) |", "|---|---|---|---|---|---|"]
    for k, desc, r in rows:
        t = r.get("training") or {}
        sec = r.get("seconds_per_subject", {}).get("wall")
        out.append(f"| {desc} | {t.get('steps', '–')} | {t.get('lr', '–') if t else '–'} | {_ms(r['all_rois'])} | "
                   f"{_ms(r['subcortical'])} | {'–' if k == 'trivial' or not sec else format(sec['mean'], '.1f')} |")
    ceil = RESULTS / "brain_grid_ceiling.json"
    if ceil.is_file():
        c = json.loads(ceil.read_text())
        cm = c["ceiling_mean_dice"]
        out += ["", f"Ceiling of the model grid (`experiments/brain_grid_ceiling.py`, {c['subjects']} validation subjects): "
                "DLMUSE's own one-hot map resampled to the grid and back scores "
                + "; ".join(f"{s} mm: {_ms(v['trilinear_scores'])} with the scores resampled before the argmax (what "
                            f"`pumit segment` does), {_ms(v['nearest_labels'])} with a nearest-neighbour label copy"
                            for s, v in cm.items()) + "."]
    out += fractions_table(runs)
    out += ["", "Per structure (mean Dice over the validation subjects, left / right):", "",
            "| structure | " + " | ".join(k for k, _, _ in rows if k != "trivial") + " |",
            "|---|" + "---|" * sum(1 for k, _, _ in rows if k != "trivial")]
    for s in STRUCTURES:
        cells = []
        for k, _, r in rows:
            if k == "trivial":
                continue
            pr = r["per_roi"]
            if s in pr:
                cells.append(f"{pr[s]:.2f}")
            else:
                cells.append(f"{pr.get(s + '_L', float('nan')):.2f} / {pr.get(s + '_R', float('nan')):.2f}")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _arm_fraction_rows(arms: tuple[tuple[str, str], ...], fracs: list[tuple[str, str]],
                       run_of: Callable[[str, str], dict[str, Any] | None]) -> list[str]:
    """Header and one row per arm: ``all-ROI mean ± sd / subcortical mean`` at each fraction (``–`` where
    ``run_of(arm, fraction)`` has no run)."""
    out = ["| arm | " + " | ".join(d for _, d in fracs) + " |", "|---|" + "---|" * len(fracs)]
    for a, desc in arms:
        cells = []
        for f, _ in fracs:
            r = run_of(a, f)
            cells.append("–" if r is None else
                         f"{r['all_rois']['mean']:.3f} ± {r['all_rois']['sd']:.3f} / {r['subcortical']['mean']:.3f}")
        out.append(f"| {desc} | " + " | ".join(cells) + " |")
    return out


def fractions_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Label efficiency: all-ROI / subcortical mean Dice of each arm at each fraction of the training subjects
    (same 800 steps, lr, seed and evaluation; ``–`` where a run is missing), then :func:`long_fractions_table`."""
    if not any(f"{a}-f{f}" in runs for a, _ in FRACTION_ARMS for f, _ in FRACTIONS if f != "100"):
        return []
    out = ["", "Label efficiency (the same 800 steps, learning rate, seed 0 and evaluation at every fraction; "
           "subjects: `experiments/data/brain_train_{010,025,100}.txt`, nested; all ROIs / subcortical):", ""]
    out += _arm_fraction_rows(FRACTION_ARMS, list(FRACTIONS), lambda a, f: runs.get(f"{a}-f{f}"))
    return out + long_fractions_table(runs)


def _long_run(runs: dict[str, dict[str, Any]], arm: str, frac: str) -> dict[str, Any] | None:
    if arm == "pretrained" and frac == "100":
        return runs.get("shipped")  # v0.1.0: the MIM pre-trained arm at 100 % and 1500 steps
    return runs.get(f"{arm}-f{frac}-{LONG_STEPS}")


def long_fractions_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The same as :func:`fractions_table` at :data:`LONG_STEPS` (run_brain.sh step 13), at the fractions where a
    run of that budget exists."""
    fracs = [(f, d) for f, d in FRACTIONS if any(f"{a}-f{f}-{LONG_STEPS}" in runs for a, _ in LONG_ARMS)]
    if not fracs:
        return []
    out = ["", f"The same at {LONG_STEPS} steps (v0.1.0's budget; `experiments/run_brain.sh` step 13: each arm at its "
           "800-step learning rate, ours 0.01 and the DynUNet 0.003, seed 0; all ROIs / subcortical):", ""]
    return out + _arm_fraction_rows(LONG_ARMS, fracs, lambda a, f: _long_run(runs, a, f))


def write(path: Path, text: str) -> None:
    doc = path.read_text()
    pattern = re.compile(r"<!-- brain:begin -->.*?<!-- brain:end -->", re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{path} has no <!-- brain:begin --> / <!-- brain:end --> markers")
    path.write_text(pattern.sub(lambda _: f"<!-- brain:begin -->\n{text}\n<!-- brain:end -->", doc))


def main() -> int:
    text = block(load())
    for p in DOCS:
        write(p, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
