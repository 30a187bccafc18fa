"""Per-arm processed manifests of the whole-brain parcellation experiments (issue 12).

    python experiments/data/make_brain_fractions.py runs/data/brain/processed/manifest.jsonl

Reads the processed manifest of ``pumit data preprocess`` (all 148 subjects) and writes next to it
``manifest_frac{010,025,100}.jsonl``: the subjects of ``experiments/data/brain_train_XXX.txt`` with split
``train`` and those of ``experiments/data/brain_val.txt`` with split ``val`` (the pipeline's own hash split
is replaced by the committed lists; every arm validates on the same subjects), and ``manifest_mim.jsonl``
(the ``brain_train_100.txt`` subjects only, split ``train``: MIM pre-training never sees a validation
subject). A listed subject missing from the manifest is an error.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAGS = ("010", "025", "100")


def subject(row: dict) -> str:
    """Subject ID of a processed row (its source image ``.../<ID>.nii.gz``)."""
    return Path(row["source"]["image"]).name.replace(".nii.gz", "")


def read_list(path: Path) -> list[str]:
    return [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]


def main(manifest: str) -> int:
    src = Path(manifest)
    rows = {subject(r): r for r in (json.loads(l) for l in src.read_text().splitlines() if l.strip())}
    val = read_list(HERE / "brain_val.txt")
    for tag in TAGS:
        train = read_list(HERE / f"brain_train_{tag}.txt")
        missing = [s for s in train + val if s not in rows]
        if missing:
            raise SystemExit(f"{len(missing)} listed subjects are not in {src} (e.g. {missing[0]})")
        if set(train) & set(val):
            raise SystemExit(f"brain_train_{tag}.txt and brain_val.txt overlap")
        out = src.parent / f"manifest_frac{tag}.jsonl"
        with open(out, "w", encoding="utf-8") as f:
            for s, split in [(s, "train") for s in train] + [(s, "val") for s in val]:
                f.write(json.dumps({**rows[s], "split": split}) + "\n")
        print(f"{tag}%: {len(train)} train + {len(val)} val -> {out}")
    mim = src.parent / "manifest_mim.jsonl"
    with open(mim, "w", encoding="utf-8") as f:
        for s in read_list(HERE / "brain_train_100.txt"):
            f.write(json.dumps({**rows[s], "split": "train"}) + "\n")
    print(f"MIM: {len(read_list(HERE / 'brain_train_100.txt'))} train subjects -> {mim}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
