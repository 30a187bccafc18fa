"""Data of the whole-brain parcellation experiments (issue 12): the committed subject lists are reproducible and
keep the tokenizer's held-out IXI subjects out of training; the IXI + DLMUSE maps go through
``experiments/data/make_brain_dataset.py`` → ``pumit data index --check`` → ``pumit data preprocess`` with every
MUSE voxel kept (renumbered to the label table's classes) and the MUSE names carried; the per-fraction
manifests take their splits from the lists."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pumit.cli.main as cli_main
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "experiments" / "data"
sys.path.insert(0, str(DATA))

import make_brain_dataset  # noqa: E402
import make_brain_fractions  # noqa: E402
import make_brain_splits  # noqa: E402


def lst(name: str) -> list[str]:
    return make_brain_splits.read_list(DATA / name)


@pytest.fixture
def ixi(shared_data: Path) -> Path:
    d = shared_data / "ixi_t1_dlmuse"
    if not (d / "t1").is_dir() or not (d / "dlmuse_seg").is_dir():
        pytest.skip(f"{d} (IXI T1 + DLMUSE) is absent")
    return d


def test_committed_lists_are_reproducible_and_disjoint() -> None:
    val, t10, t25, t100 = lst("brain_val.txt"), lst("brain_train_010.txt"), lst("brain_train_025.txt"), lst("brain_train_100.txt")
    holdout = lst("ixi_t1_holdout.txt")
    ids = val + t100
    assert len(ids) == len(set(ids)) == 148
    again = make_brain_splits.make_splits(ids, holdout)
    assert again == {"val": val, "train_010": t10, "train_025": t25, "train_100": t100}
    assert set(holdout) <= set(val), "the tokenizer's held-out subjects are validation subjects"
    assert not set(val) & set(t100)
    assert set(t10) <= set(t25) <= set(t100), "nested label fractions"
    assert (len(val), len(t10), len(t25), len(t100)) == (30, 12, 30, 118)


def test_lists_cover_the_data(ixi: Path) -> None:
    ids = {p.name[: -len("_T1.nii.gz")] for p in (ixi / "t1").glob("*_T1.nii.gz")}
    assert ids == set(lst("brain_val.txt")) | set(lst("brain_train_100.txt"))


def test_pumit_data_index_and_preprocess_keep_every_muse_voxel(ixi: Path, tmp_path: Path, monkeypatch) -> None:
    subjects = lst("brain_val.txt")[:2] + lst("brain_train_010.txt")[:1]
    src = tmp_path / "src"
    for sub in ("t1", "dlmuse_seg"):
        (src / sub).mkdir(parents=True)
    (src / "meta").symlink_to(ixi / "meta")
    for s in subjects:
        (src / "t1" / f"{s}_T1.nii.gz").symlink_to(ixi / "t1" / f"{s}_T1.nii.gz")
        (src / "dlmuse_seg" / f"{s}_T1_DLMUSE.nii.gz").symlink_to(ixi / "dlmuse_seg" / f"{s}_T1_DLMUSE.nii.gz")
    msd = tmp_path / "msd"
    assert make_brain_dataset.main([str(src), str(msd)]) == 0
    table = make_brain_dataset.read_table()
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("data",))
    index, processed = tmp_path / "index.jsonl", tmp_path / "processed"
    assert cli_main.main(["data", "index", str(msd), "--modality", "mri", "-o", str(index), "--check", "-q"]) == 0
    assert cli_main.main(["data", "preprocess", str(index), "-o", str(processed), "--no-crop", "-q"]) == 0
    out = [json.loads(l) for l in (processed / "manifest.jsonl").read_text().splitlines() if l.strip()]
    assert len(out) == 3
    names = {str(r["class"]): r["name"] for r in table}
    to_muse = np.array([r["value"] for r in table])
    for row in out:
        assert row["label_names"] == names and row["modality"] == "mri" and row["spacing"] == [2.0, 2.0, 2.0]
        sid = make_brain_fractions.subject(row)
        lab = np.load(processed / row["label"])
        muse = sitk.GetArrayFromImage(sitk.ReadImage(str(ixi / "dlmuse_seg" / f"{sid}_T1_DLMUSE.nii.gz")))
        assert lab.size == muse.size and lab.max() < len(table)
        v1, c1 = np.unique(to_muse[lab], return_counts=True)
        v0, c0 = np.unique(muse, return_counts=True)
        assert np.array_equal(v1, v0) and np.array_equal(c1, c0), f"{sid}: every voxel keeps its MUSE index"


def test_fraction_manifests_take_their_split_from_the_lists(tmp_path: Path) -> None:
    """Rows of a processed manifest (only ``source.image`` and ``split`` matter here) for all 148 subjects."""
    ids = lst("brain_val.txt") + lst("brain_train_100.txt")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"id": s, "split": "train", "source": {"image": f"/d/imagesTr/{s}.nii.gz"}}) + "\n"
                                for s in sorted(ids)))
    assert make_brain_fractions.main(str(manifest)) == 0
    for tag in ("010", "025", "100"):
        rows = [json.loads(l) for l in (tmp_path / f"manifest_frac{tag}.jsonl").read_text().splitlines()]
        split = {r["id"]: r["split"] for r in rows}
        assert sorted(s for s, v in split.items() if v == "train") == lst(f"brain_train_{tag}.txt")
        assert sorted(s for s, v in split.items() if v == "val") == lst("brain_val.txt")
    mim = [json.loads(l) for l in (tmp_path / "manifest_mim.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in mim) == lst("brain_train_100.txt") and {r["split"] for r in mim} == {"train"}
    manifest.write_text("".join(l + "\n" for l in manifest.read_text().splitlines()[:-1]))  # one subject missing
    with pytest.raises(SystemExit, match="not in"):
        make_brain_fractions.main(str(manifest))

