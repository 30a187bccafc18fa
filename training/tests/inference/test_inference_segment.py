"""`pumit segment` on real images: exact output geometry, orientation/anisotropy invariance, DICOM in,
sidecar, probabilities, resampling outside the model's range, 2D images, store ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from inference_helpers import (
    CT,
    DIRECTIONS,
    HIPPOCAMPUS,
    SEG_META,
    assert_same_grid,
    ct_crop,
    files_in,
    geometry,
    make_segmenter,
    mri_crop,
    with_geometry,
    write_dicom_series,
)
from pumit.imageio import read_image
from pumit.inference import InferenceSettings, load_model, segment, segment_image, sidecar_path
from pumit.inference.preprocess import labels_to_native, nearest_indices, resample_array, upsampled_argmax
from pumit.store import ModelStore

FAST = InferenceSettings(device="cpu", overlap=0.25)


@pytest.fixture(scope="module")
def seg_model(models):
    return load_model(models["seg"], "segment")


@pytest.fixture(scope="module")
def ct_array() -> np.ndarray:
    return sitk.GetArrayFromImage(ct_crop())  # (z, y, x) = (32, 32, 40), int16 HU


@pytest.fixture(scope="module")
def reference_labels(seg_model, ct_array) -> np.ndarray:
    """Labels of the CT crop with an identity (LPS) direction: what every re-oriented copy must give."""
    img = with_geometry(ct_array, (1.5, 1.5, 1.5), np.eye(3), (0, 0, 0))
    return sitk.GetArrayFromImage(segment_image(img, seg_model, settings=FAST).labels)


def test_sidecar_path_replaces_full_suffix():
    assert sidecar_path("a/seg.nii.gz") == Path("a/seg.labels.json")
    assert sidecar_path("seg.nrrd") == Path("seg.labels.json")
    assert sidecar_path("seg.seg.nrrd") == Path("seg.labels.json")
    assert sidecar_path("x.y.mha") == Path("x.y.labels.json")
    assert sidecar_path("noext") == Path("noext.labels.json")


@pytest.mark.parametrize("orientation", list(DIRECTIONS))
def test_output_grid_and_labels_independent_of_direction(tmp_path, models, seg_model, ct_array, orientation):
    """Direction/origin (RAS, LPS, oblique): the input's exact grid on output, and the labels of the in-memory
    run. (Same voxels with another direction are another anatomy: the model sees the canonical orientation,
    see test_robustness_orientation.py for the same anatomy stored in 48 ways.)"""
    img = with_geometry(ct_array, (1.5, 1.5, 1.5), DIRECTIONS[orientation], (-12.5, 40.25, 101.0))
    src = tmp_path / f"ct_{orientation}.nii.gz"
    sitk.WriteImage(img, str(src))
    out = tmp_path / "out" / "seg.nii.gz"
    result = segment(src, out, models["seg"], settings=FAST)
    written, as_read = sitk.ReadImage(str(out)), sitk.ReadImage(str(src))
    assert geometry(result.labels) == geometry(as_read)  # in memory: copied exactly
    assert_same_grid(written, as_read)
    assert written.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written),
                                  sitk.GetArrayFromImage(segment_image(as_read, seg_model, settings=FAST).labels))
    assert files_in(tmp_path / "out") == ["seg.labels.json", "seg.nii.gz"]


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_other_formats_keep_exact_geometry(tmp_path, models, seg_model, ct_array, suffix):
    img = with_geometry(ct_array, (0.7, 0.9, 1.25), DIRECTIONS["oblique"], (3.125, -7.5, 11.0))
    src = tmp_path / f"in{suffix}"
    sitk.WriteImage(img, str(src))
    out = tmp_path / f"seg{suffix}"
    result = segment(src, out, models["seg"], settings=FAST)
    written, as_read = sitk.ReadImage(str(out)), sitk.ReadImage(str(src))
    assert geometry(result.labels) == geometry(as_read)  # in memory: exact copy of the input's grid
    # on disk: NRRD stores direction × spacing, so reading back may differ in the last bit only
    assert_same_grid(written, as_read, atol=1e-12)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written),
                                  sitk.GetArrayFromImage(segment_image(img, seg_model, settings=FAST).labels))


def test_anisotropic_depth_axis_detected_and_equivalent(models, seg_model):
    """(0.8, 0.8, 4) mm: the 4 mm axis is the slice axis wherever it is stored, and the model sees the
    same (D, H, W) array for the same anatomy, so labels agree voxel-wise after transposing back."""
    arr = sitk.GetArrayFromImage(mri_crop())[:8]  # (z, y, x) = (8, 32, 32)
    a = with_geometry(arr, (0.8, 0.8, 4.0), np.eye(3), (0, 0, 0))
    b = sitk.PermuteAxes(a, [0, 2, 1])  # numpy (y, z, x): the same anatomy, the 4 mm axis stored as y
    ra = segment_image(a, seg_model, settings=FAST)
    rb = segment_image(b, seg_model, settings=FAST)
    assert ra.depth_axis == 0 and rb.depth_axis == 1
    assert ra.spacing == pytest.approx((4.0, 0.8, 0.8)) and rb.spacing == pytest.approx((4.0, 0.8, 0.8))
    assert ra.roi[0] == 8  # window depth shrunk to the 8 slices (a multiple of the depth divisor 4)
    assert geometry(rb.labels) == geometry(b) and geometry(ra.labels) == geometry(a)
    la, lb = sitk.GetArrayFromImage(ra.labels), sitk.GetArrayFromImage(rb.labels)
    np.testing.assert_array_equal(lb.transpose(1, 0, 2), la)


def test_dicom_series_folder_in_nifti_out(tmp_path, models, seg_model):
    crop = ct_crop()
    crop.SetDirection(tuple(DIRECTIONS["oblique"].ravel()))
    crop.SetSpacing((0.75, 0.75, 2.5))
    crop.SetOrigin((-20.0, 13.5, 7.25))
    folder = write_dicom_series(crop, tmp_path / "dicom")
    out = tmp_path / "seg.nii.gz"
    result = segment(folder, out, models["seg"], settings=FAST)
    series = read_image(folder)
    assert series.GetSize() == crop.GetSize()
    assert_same_grid(series, crop, atol=1e-4)  # the series really has the oblique geometry we wrote
    assert_same_grid(sitk.ReadImage(str(out)), series)
    assert result.native_spacing == pytest.approx((2.5, 0.75, 0.75))
    # same voxels as a NIfTI with the same geometry → same labels
    nifti = with_geometry(sitk.GetArrayFromImage(series), series.GetSpacing(), np.reshape(series.GetDirection(), (3, 3)),
                          series.GetOrigin())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))),
                                  sitk.GetArrayFromImage(segment_image(nifti, seg_model, settings=FAST).labels))


def test_sidecar_and_probabilities(tmp_path, models):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    out, probs = tmp_path / "seg.nii.gz", tmp_path / "probs.nii.gz"
    segment(src, out, models["seg"], probabilities=probs, settings=FAST)
    side = json.loads(sidecar_path(out).read_text())
    assert side["model"] == "tiny-seg-v1.0.0"
    assert side["labels"] == [
        {"value": 1, "name": "vertebra", "color": [230, 80, 40], "terminology": "SCT^123037004^Body structure"},
        {"value": 2, "name": "disc", "color": side["labels"][1]["color"]},
    ]
    assert all(isinstance(c, int) and 0 <= c <= 255 for c in side["labels"][1]["color"])
    p = sitk.ReadImage(str(probs))
    assert p.GetNumberOfComponentsPerPixel() == 3 and p.GetPixelID() == sitk.sitkVectorFloat32
    assert_same_grid(p, sitk.ReadImage(str(src)))
    pa = sitk.GetArrayFromImage(p)  # (z, y, x, K)
    np.testing.assert_allclose(pa.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(pa.argmax(-1), sitk.GetArrayFromImage(sitk.ReadImage(str(out))))


def test_default_labels_and_colors(tmp_path, ct_array):
    folder = make_segmenter(tmp_path / "bare", meta={})  # no metadata at all
    model = load_model(folder, "segment")
    assert [li.name for li in model.labels] == ["background", "label_1", "label_2"]
    assert len({li.color for li in model.labels}) == 3
    assert model.inputs.normalization.scheme == "percentile"
    img = with_geometry(ct_array[:16, :16, :16], (1, 1, 1), np.eye(3), (0, 0, 0))
    res = segment_image(img, model, settings=InferenceSettings(device="cpu", roi=(16, 16, 16)))
    assert res.labels.GetSize() == (16, 16, 16)


def test_volume_smaller_than_window_is_padded(tmp_path, models, ct_array):
    small = with_geometry(ct_array[:5, :12, :20], (1.5, 1.5, 1.5), DIRECTIONS["RAS"], (1, 2, 3))
    src, out = tmp_path / "small.nii.gz", tmp_path / "seg.nii.gz"
    sitk.WriteImage(small, str(src))
    result = segment(src, out, models["seg"], settings=FAST)
    assert result.roi == (16, 16, 32)  # shrunk to the volume, rounded up to the divisor (16, 16, 16)
    assert any("smaller than the window" in n for n in result.notes)
    assert_same_grid(sitk.ReadImage(str(out)), small)


def test_resampled_only_outside_spacing_range(tmp_path, ct_array):
    meta = dict(SEG_META, input={**SEG_META["input"], "spacing_range_mm": [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]})
    model = load_model(make_segmenter(tmp_path / "ranged", meta=meta), "segment")
    inside = with_geometry(ct_array, (1.5, 1.5, 1.5), np.eye(3), (0, 0, 0))
    assert not segment_image(inside, model, settings=FAST).resampled
    outside = with_geometry(ct_array[:16], (0.5, 1.5, 3.0), DIRECTIONS["oblique"], (4, 5, 6))  # x too fine, z too thick
    messages: list[tuple[str, float, str]] = []
    res = segment_image(outside, model, settings=FAST, progress=lambda s, f, m: messages.append((s, f, m)))
    assert res.resampled
    assert res.native_spacing == pytest.approx((3.0, 1.5, 0.5))
    assert res.spacing[0] == pytest.approx(2.0, rel=0.05) and res.spacing[2] == pytest.approx(1.0, rel=0.05)
    assert any("outside the model's supported range" in m for _, _, m in messages)
    assert geometry(res.labels) == geometry(outside)
    assert set(np.unique(sitk.GetArrayFromImage(res.labels))) <= {0, 1, 2}


def test_upsampled_argmax_equals_argmax_of_resampled_logits():
    # the chunked running maximum is the argmax of the whole resampled tensor, whatever the chunk size
    logits = torch.randn(7, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    full = torch.from_numpy(resample_array(logits.numpy(), (6, 9, 10))).argmax(0)
    for cap in (1, 6 * 9 * 10 * 2, 1 << 26):  # 1 class, 2 classes, all classes per chunk
        np.testing.assert_array_equal(upsampled_argmax(logits, (6, 9, 10), max_elements=cap).numpy(), full.numpy())
    np.testing.assert_array_equal(upsampled_argmax(logits, (3, 4, 5)).numpy(), logits.argmax(0).numpy())
    # ties go to the lower class index, as argmax
    assert int(upsampled_argmax(torch.zeros(3, 2, 2, 2), (4, 4, 4), max_elements=1).max()) == 0


def test_upsampled_argmax_keeps_boundaries_that_nearest_would_block():
    # a 1-voxel-thick oblique plane on a 2x coarser grid: nearest copies 2-voxel blocks, trilinear
    # resampling of the scores puts the boundary back between them
    d = np.arange(16)[:, None, None] + np.arange(16)[None, :, None] + 0 * np.arange(4)[None, None, :]
    truth = (d >= 15).astype(np.int64)
    coarse = torch.from_numpy(resample_array(np.stack([truth == 0, truth == 1]).astype(np.float32), (8, 8, 2)))
    soft = upsampled_argmax(coarse, (16, 16, 4)).numpy()
    blocky = labels_to_native(coarse.argmax(0).numpy(), (16, 16, 4))
    assert (soft == truth).mean() > (blocky == truth).mean()


def test_nearest_label_mapping_back_is_exact():
    # native 6 voxels, model grid 3 voxels covering the same extent: each model voxel covers 2 native ones
    np.testing.assert_array_equal(nearest_indices(6, 3), [0, 0, 1, 1, 2, 2])
    # native centres fall on model-voxel borders here (a tie): the upper voxel is taken, consistently
    np.testing.assert_array_equal(nearest_indices(3, 6), [1, 3, 5])
    np.testing.assert_array_equal(nearest_indices(5, 2), [0, 0, 1, 1, 1])
    lab = np.arange(3 * 2 * 4, dtype=np.uint8).reshape(3, 2, 4)
    back = labels_to_native(lab, (6, 2, 8))
    assert back.shape == (6, 2, 8)
    np.testing.assert_array_equal(back[::2, :, ::2], lab)
    np.testing.assert_array_equal(back[1::2, :, 1::2], lab)


def test_single_dicom_2d_image(tmp_path, models):
    """A single-slice CT (pydicom test file) is a 2D image: D = 1 with planar thickness."""
    from pydicom.data import get_testdata_file

    src = Path(get_testdata_file("CT_small.dcm"))
    out = tmp_path / "seg.nrrd"
    result = segment(src, out, models["seg"], settings=InferenceSettings(device="cpu", roi=(1, 64, 128), overlap=0.0))
    assert result.roi == (1, 64, 128) and result.windows == 2
    assert result.spacing[0] >= 1e4  # planar
    written, image = sitk.ReadImage(str(out)), read_image(src)
    assert written.GetSize() == image.GetSize() == (128, 128, 1)
    assert_same_grid(written, image)


def test_model_id_from_store(tmp_path, models):
    store = ModelStore(tmp_path / "store", builtin_dirs=[])
    entry = store.install(models["seg"])
    src, out = tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    segment(src, out, "tiny-seg", settings=FAST, store=store)
    assert json.loads(sidecar_path(out).read_text())["model"] == entry.id == "tiny-seg-v1.0.0"


def test_cli_segment_by_store_id(tmp_path, models, run_cli, _isolated_store):
    ModelStore().install(models["seg"])  # $PUMIT_HOME/models, isolated per test
    src, out = tmp_path / "ct.nii.gz", tmp_path / "o" / "seg.mha"
    sitk.WriteImage(ct_crop(), str(src))
    code, stdout, stderr = run_cli("segment", src, "-o", out, "--model", "tiny-seg-v1.0.0", "--device", "cpu",
                                   "--overlap", "0.25", "--progress", "none")
    assert code == 0, stderr
    assert stdout == ""
    assert "wrote" in stderr
    assert_same_grid(sitk.ReadImage(str(out)), sitk.ReadImage(str(src)))
    assert files_in(out.parent) == ["seg.labels.json", "seg.mha"]


def test_full_real_ct_file(tmp_path, models):
    """The whole tptbox CT (73×47×73, non-identity direction) with a window larger than one axis (47)."""
    out = tmp_path / "seg.nii.gz"
    result = segment(CT, out, models["seg"], settings=InferenceSettings(device="cpu", roi=(48, 48, 48), overlap=0.0))
    assert result.windows == 4
    assert_same_grid(sitk.ReadImage(str(out)), sitk.ReadImage(str(CT)))


def test_real_hippocampus_mri(tmp_path, models):
    images = sorted((HIPPOCAMPUS / "imagesTr").glob("*.nii.gz")) if HIPPOCAMPUS.is_dir() else []
    if not images:
        pytest.skip(f"MSD hippocampus data not found under {HIPPOCAMPUS}")
    src = images[0]
    out = tmp_path / "hippo_seg.nii.gz"
    result = segment(src, out, models["seg"], settings=InferenceSettings(device="cpu", roi=(48, 64, 48), overlap=0.0))
    assert result.windows == 1
    assert_same_grid(sitk.ReadImage(str(out)), sitk.ReadImage(str(src)))
