"""Pre-processing: foreground crop, shorter-side shrink with spacing update, normalization, mmap storage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pumit.imageio import to_model_layout
from data_helpers import CT, dicom_file
from PIL import Image

from pumit.data import index_sources, preprocess_manifest, read_processed_manifest, write_manifest
from pumit.intensity import IntensitySpec, IntensityStats, denormalize, normalize


def test_photo_foreground_crop_is_exact(tmp_path: Path, ct_png) -> None:
    png, (top, bottom, left, right) = ct_png
    records, _ = index_sources([png])
    (p,), report = preprocess_manifest(records, tmp_path / "out")
    assert report.n_skipped == 0
    pixels = np.asarray(Image.open(png))
    h, w = pixels.shape
    assert p.source["crop"] == [[0, 1], [top, h - bottom], [left, w - right]]
    assert p.shape == (1, 1, h - top - bottom, w - left - right)
    stored = np.load(p.image, mmap_mode="r")
    expected = pixels[top:h - bottom, left:w - right] / 255.0 * 2 - 1
    np.testing.assert_allclose(stored[0, 0].astype(np.float32), expected, atol=1e-3)
    assert p.intensity["scheme"] == "photo" and p.planar and p.da == 5


def test_percentile_foreground_crop_of_ct(tmp_path: Path) -> None:
    records, _ = index_sources([CT], intensity="percentile")
    (p,), _ = preprocess_manifest(records, tmp_path / "out")
    a = to_model_layout(sitk.ReadImage(str(CT)))[0][0]  # (D, H, W) in the canonical orientation
    threshold = np.percentile(a[a > a.min()], 0.5)
    nz = np.argwhere(a >= threshold)
    expected = [[int(lo), int(hi) + 1] for lo, hi in zip(nz.min(0), nz.max(0))]
    assert p.source["crop"] == expected
    assert p.shape[1:] == tuple(hi - lo for lo, hi in expected)
    # the stored image is the normalized crop; the stats invert it inside the clipping range
    stored = np.load(p.image, mmap_mode="r").astype(np.float32)
    crop = a[tuple(slice(lo, hi) for lo, hi in expected)]
    raw = denormalize(stored[0], IntensityStats(**p.stats))
    inside = np.abs(stored[0]) < 0.99
    np.testing.assert_allclose(raw[inside], crop[inside], atol=abs(p.stats["scale"]) * 2e-3)
    ref, _ = normalize(crop, IntensitySpec(scheme="percentile"))
    np.testing.assert_allclose(stored[0], ref, atol=1e-3)


def test_shrink_shorter_side_and_spacing(tmp_path: Path) -> None:
    records, _ = index_sources([dicom_file("RG1_UNCR.dcm")])
    (r,) = records
    (p,), _ = preprocess_manifest(records, tmp_path / "out", max_side=32)
    crop_h = p.source["crop"][1][1] - p.source["crop"][1][0]
    crop_w = p.source["crop"][2][1] - p.source["crop"][2][0]
    c, d, h, w = p.shape
    assert (c, d) == (1, 1) and min(h, w) == 32
    assert max(h, w) == round(max(crop_h, crop_w) * 32 / min(crop_h, crop_w))
    # in-plane spacing grows by the shrink factor of each axis; the planar thickness is untouched
    assert p.spacing[0] == r.spacing[0]
    assert p.spacing[1] == pytest.approx(r.spacing[1] * crop_h / h)
    assert p.spacing[2] == pytest.approx(r.spacing[2] * crop_w / w)
    # an image already small enough is not resized
    (q,), _ = preprocess_manifest(records, tmp_path / "out2", max_side=4096)
    assert q.shape[2:] == (crop_h, crop_w) and q.spacing == r.spacing


def test_anisotropic_with_label_mmap_and_dtypes(tmp_path: Path, aniso_x) -> None:
    image, label = aniso_x
    hand = tmp_path / "list.jsonl"
    hand.write_text(f'{{"image": "{image}", "label": "{label}"}}\n')
    records, _ = index_sources([hand])
    (p,), _ = preprocess_manifest(records, tmp_path / "out", max_side=24)
    # the 6 mm axis (x) is the depth axis; the two others follow in the canonical orientation (S-I, then A-P)
    assert p.source["perm"] == [2, 1, 0] and p.spacing[0] == pytest.approx(6.0)
    img = np.load(p.image, mmap_mode="r")
    lab = np.load(p.label, mmap_mode="r")
    assert isinstance(img, np.memmap) and isinstance(lab, np.memmap)
    assert img.dtype == np.float16 and lab.dtype == np.uint8  # labels keep their native dtype
    assert img.shape == p.shape and lab.shape == p.shape[1:] and min(p.shape[2:]) == 24
    src_values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label)))).tolist())
    assert set(np.unique(lab).tolist()) <= src_values and len(np.unique(lab)) > 1  # nearest: no new values
    # the processed manifest is relative to its folder: moving the folder keeps it valid
    shutil.move(str(tmp_path / "out"), str(tmp_path / "moved"))
    (m,) = read_processed_manifest(tmp_path / "moved" / "manifest.jsonl")
    assert Path(m.image).is_file() and m.shape == p.shape


def test_msd_with_workers_and_label_values(tmp_path: Path, small_msd: Path) -> None:
    records, _ = index_sources([small_msd])
    processed, report = preprocess_manifest(records, tmp_path / "out", workers=2)
    assert report.done == 4 and len(processed) == 4
    for p in processed:
        assert p.intensity["scheme"] == "zscore" and p.label_values == [0, 1, 2]
        lab = np.load(p.label, mmap_mode="r")
        assert set(np.unique(lab).tolist()) == {0, 1, 2}
        assert np.load(p.image, mmap_mode="r").shape[1:] == lab.shape


def test_processed_manifests_record_the_orientation_and_older_ones_are_refused(tmp_path: Path, small_msd: Path) -> None:
    import json

    from pumit.errors import InputError
    from pumit.imageio import CANONICAL_ORIENTATION
    from pumit.training.datamodules import prepare_data

    records, _ = index_sources([small_msd])
    processed, _ = preprocess_manifest(records, tmp_path / "out")
    assert processed and all(p.source["orientation"] == CANONICAL_ORIENTATION for p in processed)
    manifest = tmp_path / "out" / "manifest.jsonl"
    assert len(prepare_data([str(manifest)], tmp_path / "work", val_fraction=0.25)) == len(processed)
    # the same manifest as an older pumit wrote it (stored voxel order, no orientation): refused, not mixed in
    lines = [json.loads(ln) for ln in manifest.read_text().splitlines() if ln.strip()]
    for d in lines:
        d["source"].pop("orientation")
    manifest.write_text("".join(json.dumps(d) + "\n" for d in lines))
    with pytest.raises(InputError, match="older pumit.*pumit data preprocess"):
        prepare_data([str(manifest)], tmp_path / "work", val_fraction=0.25)


def test_unreadable_file_skipped_with_count(tmp_path: Path) -> None:
    folder = tmp_path / "cts"
    folder.mkdir()
    shutil.copy(CT, folder / "a_ct.nii.gz")
    shutil.copy(CT, folder / "b_ct.nii.gz")
    records, _ = index_sources([folder])
    manifest = write_manifest(tmp_path / "index.jsonl", records)
    data = (folder / "b_ct.nii.gz").read_bytes()
    (folder / "b_ct.nii.gz").write_bytes(data[: len(data) // 3])  # truncated after indexing
    processed, report = preprocess_manifest(manifest, tmp_path / "out")
    assert [Path(p.source["image"]).name for p in processed] == ["a_ct.nii.gz"]
    assert report.n_skipped == 1 and report.skipped[0][0].endswith("b_ct.nii.gz")
    assert "1 unreadable input skipped" in report.summary()
    assert len(read_processed_manifest(tmp_path / "out" / "manifest.jsonl")) == 1
