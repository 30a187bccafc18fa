"""Subject lists of the whole-brain parcellation experiments (issue 12), committed as
``experiments/data/brain_{val,train_010,train_025,train_100}.txt``.

    python experiments/data/make_brain_splits.py ../shared/data/ixi_t1_dlmuse

* Subjects: the IDs of ``t1/*_T1.nii.gz`` (148), sorted.
* Validation (``brain_val.txt``, :data:`N_VAL` subjects): every subject of ``ixi_t1_holdout.txt`` (the
  IXI subjects the v0.3 tokenizer never saw, so pre-training has not seen a validation image), then the
  remaining subjects in a seeded random order (``numpy.random.default_rng(0)``) until :data:`N_VAL`.
* Training subsets: the other subjects in a seeded random order (``default_rng(0)``); the first 10 %, 25 %
  and 100 % (rounded, at least one), so the subsets are nested. No validation subject is in any of them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HOLDOUT = HERE / "ixi_t1_holdout.txt"
N_VAL = 30
FRACTIONS = (0.10, 0.25, 1.0)


def read_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a subject list."""
    return [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]


def make_splits(ids: list[str], holdout: list[str], n_val: int = N_VAL) -> dict[str, list[str]]:
    """``{"val": [...], "train_010": [...], "train_025": [...], "train_100": [...]}`` (each sorted)."""
    ids = sorted(ids)
    missing = sorted(set(holdout) - set(ids))
    if missing:
        raise SystemExit(f"held-out subjects not in the data: {missing}")
    rest = [s for s in ids if s not in set(holdout)]
    order = np.random.default_rng(0).permutation(len(rest))
    extra = [rest[i] for i in order[: max(n_val - len(holdout), 0)]]
    val = sorted(set(holdout) | set(extra))
    train = [s for s in ids if s not in set(val)]
    order = np.random.default_rng(0).permutation(len(train))
    out = {"val": val}
    for frac in FRACTIONS:
        n = max(1, int(round(frac * len(train))))
        out[f"train_{int(round(frac * 100)):03d}"] = sorted(train[i] for i in order[:n])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="../shared/data/ixi_t1_dlmuse")
    ap.add_argument("-o", "--out-dir", default=str(HERE))
    a = ap.parse_args(argv)
    ids = [p.name[: -len("_T1.nii.gz")] for p in Path(a.source, "t1").glob("*_T1.nii.gz")]
    holdout = read_list(HOLDOUT) if HOLDOUT.is_file() else []
    for name, subjects in make_splits(ids, holdout).items():
        (Path(a.out_dir) / f"brain_{name}.txt").write_text("".join(s + "\n" for s in subjects))
        print(f"brain_{name}.txt: {len(subjects)} subjects")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
