"""Indexing real collections: MSD, MedMNIST npz, DICOM (2D, multi-frame, series), PNG, anisotropic NIfTI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pumit.imageio import to_model_layout
from data_helpers import CT, CT_VERT, dicom_file, subsample

from pumit.data import (ImageRecord, hash_split, index_sources, parse_npz_ref, read_manifest, write_manifest)
from pumit.data.load import load_record
from pumit.errors import InputError
from pumit.spacing import PLANAR_THICKNESS, degree_of_anisotropy


def test_msd_hippocampus(hippocampus: Path) -> None:
    records, report = index_sources([hippocampus])
    assert report.n_skipped == 0 and report.done == len(records) == 208
    r = records[0]
    assert r.dataset == "Hippocampus" and r.modality == "mri" and not r.planar
    assert r.label is not None and Path(r.label).is_file() and "labelsTr" in r.label
    assert r.label_values == [0, 1, 2]
    assert r.label_names == {"0": "background", "1": "anterior", "2": "posterior"}  # carried for the trainers
    assert r.spacing == (1.0, 1.0, 1.0) and r.shape[0] == 1 and len(r.shape) == 4
    splits = [x.split for x in records]
    assert set(splits) == {"train", "val"}  # MSD has no val split: seeded hash split
    frac = splits.count("val") / len(splits)
    assert 0.12 < frac < 0.30  # default fraction 0.2
    # deterministic, and the split of an item depends only on (seed, dataset/relative path)
    again, _ = index_sources([hippocampus / "dataset.json"])
    assert [x.split for x in again] == splits
    other_seed, _ = index_sources([hippocampus], seed=1)
    assert [x.split for x in other_seed] != splits
    assert r.split == hash_split("Hippocampus/imagesTr/hippocampus_001.nii.gz")


def test_medmnist_npz_official_splits(adrenal_npz: Path) -> None:
    records, report = index_sources([adrenal_npz])
    assert report.n_skipped == 0
    counts = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    assert counts == {"train": 1188, "val": 98, "test": 298}
    r = records[1188 + 5]  # val item 5
    path, split, index = parse_npz_ref(r.image)
    assert (Path(path).resolve(), split, index) == (adrenal_npz.resolve(), "val", 5)
    with np.load(adrenal_npz) as z:
        assert r.target == [int(z["val_labels"][5, 0])]
        item = load_record(r)
        np.testing.assert_array_equal(item.image[0], z["val_images"][5])
    assert r.shape == (1, 28, 28, 28) and not r.planar
    assert r.spacing == pytest.approx((64 / 28,) * 3)  # AdrenalMNIST3D: a 64 mm cube at 28^3
    assert r.intensity == "photo" and r.modality == "ct"
    one_mm, _ = index_sources([adrenal_npz], medmnist_spacing=1.0)
    assert one_mm[0].spacing == (1.0, 1.0, 1.0)


def test_dicom_2d_cr_and_multiframe_us(tmp_path: Path) -> None:
    folder = tmp_path / "dicom2d"
    folder.mkdir()
    shutil.copy(dicom_file("RG1_UNCR.dcm"), folder / "cr.dcm")
    shutil.copy(dicom_file("OBXXXX1A_2frame.dcm"), folder / "us_cine.dcm")
    records, report = index_sources([folder])
    assert report.n_skipped == 0
    cr = [r for r in records if r.image.endswith("cr.dcm")]
    us = [r for r in records if r.image.endswith("us_cine.dcm")]
    assert len(cr) == 1 and len(us) == 2  # a 2D cine: one planar record per frame
    c = cr[0]
    assert c.modality == "xray" and c.planar and c.shape == (1, 1, 1955, 1841)
    assert c.spacing[0] == PLANAR_THICKNESS and degree_of_anisotropy(c.spacing) == 5
    assert [u.frame for u in us] == [0, 1] and all(u.planar and u.modality == "us" for u in us)
    assert us[0].shape == (3, 1, 600, 800)
    frame = load_record(us[1])
    assert frame.image.shape == (3, 1, 600, 800)


def test_dicom_series_folders(tmp_path: Path) -> None:
    src = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "98892003"
    shutil.copytree(src, tmp_path / "patient")
    records, report = index_sources([tmp_path / "patient"], modality=None)
    assert report.n_skipped == 0
    mr700 = [r for r in records if r.image.endswith("MR700")]
    assert len(mr700) == 1 and mr700[0].series is None  # one series in that folder
    r = mr700[0]
    assert r.modality == "mri" and r.shape == (1, 7, 16, 16) and r.depth_axis == 0
    assert r.depth_axis_source == "metadata" and r.spacing[0] == pytest.approx(25.19, abs=0.01)
    multi = [r for r in records if r.image.endswith("MR2") and r.series]
    assert len(multi) == 2  # MR2 holds 3 series: two 3-slice series and one single file
    assert load_record(multi[0]).image.shape == (1, 3, 16, 16)


@pytest.mark.parametrize("axis", ["x", "z"])
def test_anisotropic_depth_axis_moved_first(tmp_path: Path, axis: str) -> None:
    f = subsample(CT, tmp_path / f"ct_every4_{axis}.nii.gz", axis)
    (r,), _ = index_sources([f])
    assert r.spacing == pytest.approx((6.0, 1.5, 1.5))
    assert r.depth_axis == {"x": 2, "z": 0}[axis] and r.depth_axis_source == "spacing"
    assert r.shape[1] == 19 and degree_of_anisotropy(r.spacing) == 2
    assert r.modality == "ct"  # guessed from the "ct" part of the file name
    item = load_record(r)
    assert item.image.shape == r.shape
    # official depth axis wins over the spacing
    (o,), _ = index_sources([f], depth_axis=1)
    assert o.depth_axis == 1 and o.depth_axis_source == "official" and o.shape[1] == 47


def test_png_is_planar_photo(ct_png) -> None:
    png, _ = ct_png
    (r,), _ = index_sources([png.parent])
    assert r.modality == "photo" and r.planar and r.shape[:2] == (1, 1)
    assert r.image == str(png)


def test_unreadable_files_skipped_and_counted(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(CT, folder / "good_ct.nii.gz")
    (folder / "empty.nrrd").write_bytes(b"")
    (folder / "garbage.mha").write_text("this is not an image\n")
    (folder / "broken.dcm").write_bytes(b"\0" * 300)
    (folder / "README.txt").write_text("ignored: not an image suffix")
    shutil.copy(CT.parent / "sub-ct_seg-vert_label-22_msk.nii.gz", folder)  # a label map: not an image
    records, report = index_sources([folder])
    assert [Path(r.image).name for r in records] == ["good_ct.nii.gz"]
    assert report.n_skipped == 3
    assert {Path(p).name for p, _ in report.skipped} == {"empty.nrrd", "garbage.mha", "broken.dcm"}
    assert "3 unreadable inputs skipped" in report.summary()


def test_missing_source_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="source not found"):
        index_sources([tmp_path / "nope"])


def test_manifest_roundtrip_and_handwritten_jsonl(tmp_path: Path, aniso_x) -> None:
    image, label = aniso_x
    hand = tmp_path / "list.jsonl"
    hand.write_text(f'{{"image": "{image.name}", "label": "{label.name}", "split": "test", "label_values": [0, 22]}}\n')
    records, _ = index_sources([hand])
    (r,) = records
    assert r.label == str(label) and r.split == "test" and r.dataset == "list" and r.label_values == [0, 22]
    out = write_manifest(tmp_path / "sub" / "index.jsonl", records)
    back = read_manifest(out)
    assert back == records and isinstance(back[0], ImageRecord)


def test_msd_multimodal_4d_gives_one_record_per_channel(tmp_path: Path) -> None:
    ct = sitk.ReadImage(str(CT))
    root = tmp_path / "Task99"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    sitk.WriteImage(sitk.JoinSeries([ct, ct + 1000]), str(root / "imagesTr" / "case_001.nii.gz"))  # 4D: 2 channels
    shutil.copy(CT_VERT, root / "labelsTr" / "case_001.nii.gz")
    meta = {"name": "Task99", "modality": {"0": "CT", "1": "FLAIR"}, "labels": {"0": "bg", "21": "L2", "22": "L3", "23": "L4"},
            "training": [{"image": "./imagesTr/case_001.nii.gz", "label": "./labelsTr/case_001.nii.gz"}], "test": []}
    (root / "dataset.json").write_text(json.dumps(meta))
    records, report = index_sources([root])
    assert report.n_skipped == 0 and [r.frame for r in records] == [0, 1]
    assert [r.modality for r in records] == ["ct", "mri"] and records[0].split == records[1].split
    assert records[1].shape == (1, 47, 73, 73)  # canonical orientation: D = the S-I axis (stored as y)
    second = load_record(records[1])
    assert second.image.shape == records[1].shape  # the index predicts the layout load_record gives
    np.testing.assert_array_equal(second.image[0], to_model_layout(ct)[0][0] + 1000)
    assert second.label is not None and second.label.shape == (47, 73, 73)


def test_dicom_with_negative_slice_spacing_is_skipped_and_reported() -> None:
    """pydicom-data's enhanced CT reads with a slice spacing of -10 mm: never index a wrong geometry."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("eCT_Supplemental.dcm", download=False)
    if path is None:
        pytest.skip("pydicom-data's eCT_Supplemental.dcm is not installed")
    records, report = index_sources([path])
    assert records == [] and report.n_skipped == 1
    assert "positive" in str(report.skipped[0]) and "eCT_Supplemental.dcm" in str(report.skipped[0])
