"""Package a trained whole-brain parcellation run as a model folder (issue 12): the label table's MUSE values,
names, colours and terminology, and the model's intended input, go into ``config.json`` ``meta``.

    python experiments/brain_package.py --model runs/brain/pretrained-f100-lr0.001/model \\
        --out training/pumit/assets/models/pumit-ref-brain-parcellation-v0.1.0

The network's output channel ``k`` is the label table's ``class`` ``k``; ``meta.label_values`` maps it to the
MUSE ROI index, so ``pumit segment`` writes MUSE indices (directly comparable with DLMUSE maps).
``meta.input`` keeps what the trainer recorded (normalization, spacing, roi, orientation) and adds the intended
input (:mod:`pumit.inference.intended`). The folder gets ``MODEL_CARD.md`` (``docs/brain.md``) and
``checksums.json`` (``package_models.write_folder``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "data"))

from make_brain_dataset import read_table  # noqa: E402

#: The smallest extent (mm, model order D/H/W = superior-inferior, anterior-posterior, left-right) the model is
#: meant for: a little under an adult brain's; a smaller image is segmented with a note in the sidecar.
MIN_FIELD_OF_VIEW_MM = (110.0, 150.0, 120.0)
INTENDED_INPUT = {"modality": "MRI", "dimensionality": "3d", "min_field_of_view_mm": list(MIN_FIELD_OF_VIEW_MM),
                  "description": "whole-head T1-weighted MRI (3D volume)"}
LICENSE = "CC-BY-SA-3.0 (IXI images) + UPenn SBIA Contribution and Software License Agreement v1.1 Part B (DLMUSE labels)"


def brain_meta(rows: list[dict] | None = None) -> dict[str, Any]:
    """``meta`` entries of a brain parcellation model from the label table (classes as keys)."""
    rows = rows if rows is not None else read_table()
    meta: dict[str, Any] = {
        "labels": {str(r["class"]): r["name"] for r in rows},
        "label_values": {str(r["class"]): int(r["value"]) for r in rows},
        "colors": {str(r["class"]): [int(r["r"]), int(r["g"]), int(r["b"])] for r in rows if r["class"]},
        "terminology": {str(r["class"]): r["terminology"] for r in rows if r["terminology"]},
        "terminology_modifiers": {str(r["class"]): r["modifier"] for r in rows if r["modifier"]},
        "task": "whole-brain parcellation (MUSE ROIs, DLMUSE-compatible label values) of whole-head T1 MRI",
        "intended_use": "research only; not a medical device, not for diagnosis or treatment decisions",
        "license": LICENSE,
        "label_source": "training/pumit/assets/labels/muse_dlmuse_labels.csv (MUSE dictionary, SNOMED CT codes)",
    }
    return meta


def main(argv: list[str] | None = None) -> int:
    from package_models import write_folder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="exported model folder of a pumit train segment run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--card", default=str(HERE.parent / "docs" / "brain.md"))
    a = ap.parse_args(argv)
    src = Path(a.model)
    cfg = json.loads((src / "config.json").read_text())
    n = int(cfg.get("num_classes") or cfg.get("config", {}).get("num_classes") or 0)
    rows = read_table()
    if n and n != len(rows):
        raise SystemExit(f"{src} has {n} classes, the label table {len(rows)}")
    meta = brain_meta(rows)
    meta["input"] = {**(cfg.get("meta", {}).get("input") or {}), **INTENDED_INPUT}
    # trained on one grid only (3 mm): every input is resampled to exactly it, not to the nearest bound of the
    # trainer's default ±20 % range; the logits come back to the input's grid before the argmax
    meta["input"]["spacing_range_mm"] = [[float(s), float(s)] for s in meta["input"]["spacing"]]
    write_folder(src, Path(a.out), meta, Path(a.card).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
