"""Label maps that do not fit their image must stop everything before training, naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pumit.data import LabelError, index_sources, preprocess_manifest, validate
from pumit.errors import InputError


def _bad_label(label: Path, out: Path, what: str) -> Path:
    image = sitk.ReadImage(str(label))
    if what == "origin":
        image.SetOrigin(tuple(o + 3.0 for o in image.GetOrigin()))
    elif what == "spacing":
        image.SetSpacing(tuple(s * 1.5 for s in image.GetSpacing()))
    elif what == "direction":
        image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    elif what == "size":
        image = image[:, :, :-1]
    sitk.WriteImage(image, str(out))
    return out


@pytest.mark.parametrize("what", ["origin", "spacing", "direction", "size"])
def test_label_geometry_mismatch_raises_with_path(tmp_path: Path, aniso_x, what: str) -> None:
    image, label = aniso_x
    bad = _bad_label(label, tmp_path / f"bad_{what}_msk.nii.gz", what)
    hand = tmp_path / "list.jsonl"
    hand.write_text(json.dumps({"image": str(image), "label": str(bad)}) + "\n")
    records, _ = index_sources([hand])
    with pytest.raises(InputError, match=what) as info:
        validate(records)
    assert isinstance(info.value, LabelError)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(LabelError, match=str(bad)):
        preprocess_manifest(records, tmp_path / "out")  # checked before any work
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_matching_label_passes(tmp_path: Path, aniso_x) -> None:
    image, label = aniso_x
    hand = tmp_path / "list.jsonl"
    hand.write_text(json.dumps({"image": str(image), "label": str(label)}) + "\n")
    records, _ = index_sources([hand])
    validate(records)  # no error


def test_undeclared_label_value_raises(tmp_path: Path, small_msd: Path) -> None:
    meta = json.loads((small_msd / "dataset.json").read_text())
    meta["labels"] = {"0": "background", "1": "anterior"}  # the maps also hold 2 (posterior)
    (small_msd / "dataset.json").write_text(json.dumps(meta))
    records, _ = index_sources([small_msd])
    assert records[0].label_values == [0, 1]
    with pytest.raises(LabelError, match=r"values \[2\] not declared") as info:
        validate(records)
    assert records[0].label in str(info.value)
    validate(records, check_values=False)  # geometry alone is fine
    with pytest.raises(LabelError, match="not declared"):
        preprocess_manifest(records, tmp_path / "out")


def test_non_integer_label_raises(tmp_path: Path, aniso_x) -> None:
    image, label = aniso_x
    lab = sitk.ReadImage(str(label))
    frac = sitk.Cast(lab, sitk.sitkFloat32) * 0.5
    sitk.WriteImage(frac, str(tmp_path / "half_msk.nii.gz"))
    hand = tmp_path / "list.jsonl"
    hand.write_text(json.dumps({"image": str(image), "label": str(tmp_path / "half_msk.nii.gz")}) + "\n")
    records, _ = index_sources([hand])
    assert np.unique(sitk.GetArrayFromImage(frac)).size > 1
    with pytest.raises(LabelError, match="non-integer"):
        validate(records)


def test_processed_manifest_validation(tmp_path: Path, small_msd: Path) -> None:
    records, _ = index_sources([small_msd])
    processed, _ = preprocess_manifest(records, tmp_path / "out")
    validate(tmp_path / "out" / "manifest.jsonl")  # the trainer's check: passes
    lab = np.load(processed[0].label)
    lab[0, 0, 0] = 7
    np.save(processed[0].label, lab)
    with pytest.raises(LabelError, match=r"values \[7\] not declared"):
        validate(tmp_path / "out" / "manifest.jsonl")
