"""`pumit reconstruct`: input geometry and intensity units, token grid geometry, error map, montage."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from inference_helpers import DIRECTIONS, MRI, assert_same_grid, ct_crop, geometry, mri_crop, with_geometry
from PIL import Image
from pumit.imageio import to_model_layout
from pumit.inference import InferenceSettings, load_model, reconstruct, reconstruct_image
from pumit.inference.preprocess import denormalize_channels, pad_to_multiple, prepare_input
from pumit.intensity import IntensitySpec, denormalize, normalize

CPU = InferenceSettings(device="cpu")


@pytest.fixture(scope="module")
def tok(models):
    return load_model(models["tok"], "reconstruct")


@pytest.mark.parametrize("spec", [
    IntensitySpec("ct", window=(-1024.0, 3071.0)),
    IntensitySpec("percentile", percentiles=(0.0, 100.0)),
    IntensitySpec("zscore", clip=50.0),
])
def test_normalize_denormalize_round_trip(spec):
    """Inside the clipping range, denormalize(normalize(x)) == x (up to float32 rounding)."""
    raw = sitk.GetArrayFromImage(ct_crop()).astype(np.float32)
    norm, stats = normalize(raw, spec)
    assert norm.min() >= -1 and norm.max() <= 1
    np.testing.assert_allclose(denormalize(norm, stats), raw, rtol=1e-5, atol=1e-3 * float(np.abs(raw).max()) / 1000)


def test_prepared_input_round_trip_per_channel(tok):
    """The engine's own per-channel statistics map the model range back to the input's units."""
    img = mri_crop()
    prep = prepare_input(img, tok.inputs.__class__(normalization=IntensitySpec("percentile", percentiles=(0.0, 100.0))),
                         keep_raw=True)
    back = denormalize_channels(prep.array, prep.stats)
    np.testing.assert_allclose(back, prep.raw, rtol=1e-5, atol=1e-3)
    assert float(prep.array.min()) == -1.0 and float(prep.array.max()) == 1.0


def test_pad_then_crop_is_identity():
    a = np.random.default_rng(0).random((1, 5, 18, 33)).astype(np.float32)
    p = pad_to_multiple(a, (4, 16, 16))
    assert p.shape == (1, 8, 32, 48)
    np.testing.assert_array_equal(p[:, :5, :18, :33], a)


@pytest.mark.parametrize("orientation", ["RAS", "oblique"])
def test_reconstruction_outputs(tmp_path, models, orientation):
    arr = sitk.GetArrayFromImage(mri_crop())[:, :, :30]  # (z, y, x) = (32, 32, 30): W not a multiple of 16
    img = with_geometry(arr, (0.9, 0.9, 1.8), DIRECTIONS[orientation], (12.0, -3.5, 40.0), pixel=np.uint16)
    src = tmp_path / "t2.nii.gz"
    sitk.WriteImage(img, str(src))
    out, tokens, err, png = tmp_path / "rec.nii.gz", tmp_path / "tok.nrrd", tmp_path / "err.nii.gz", tmp_path / "m.png"
    res = reconstruct(src, out, models["tok"], tokens=tokens, error_map=err, montage=png, settings=CPU)
    as_read = sitk.ReadImage(str(src))
    rec = sitk.ReadImage(str(out))
    assert geometry(res.reconstruction) == geometry(as_read)
    assert_same_grid(rec, as_read)
    assert rec.GetPixelID() == sitk.sitkFloat32
    # error map = |input - reconstruction| in input units
    e = sitk.GetArrayFromImage(sitk.ReadImage(str(err)))
    np.testing.assert_allclose(e, np.abs(arr.astype(np.float32) - sitk.GetArrayFromImage(rec)), rtol=1e-5, atol=1e-3)
    # intensity units: the reconstruction lives in the input's range (zscore clip 5σ), not in [-1, 1]
    r = sitk.GetArrayFromImage(rec)
    assert r.max() > 5 and np.abs(r).max() < 10 * float(arr.max()) + 1
    # token grid: 16× in-plane, depth per DA; spacing = token spacing; corner aligned with the input's
    t = sitk.ReadImage(str(tokens))
    assert t.GetPixelID() == sitk.sitkUInt16
    # 1.8 mm is the (clearly thickest) slice axis: model order (1.8, 0.9, 0.9) → depth stride 8 (DA 1)
    assert res.token_spacing == pytest.approx((14.4, 14.4, 14.4))
    assert t.GetSize() == (2, 2, 4)  # (ceil(30/16), 32/16, 32/8) in image axis order (x, y, z)
    np.testing.assert_allclose(t.GetSpacing(), (14.4, 14.4, 14.4))
    np.testing.assert_allclose(t.GetDirection(), as_read.GetDirection())
    # the token grid starts where the model array starts: the first voxel's corner, or on an axis reversed to
    # the canonical orientation, the last voxel's far corner minus the token grid's extent
    layout = to_model_layout(as_read)[1]
    start = [-0.5, -0.5, -0.5]  # image axes (x, y, z)
    for k, a in enumerate(layout.perm):
        if layout.flip[k]:
            i = 2 - a
            g = t.GetSpacing()[i] / as_read.GetSpacing()[i]
            start[i] = as_read.GetSize()[i] - t.GetSize()[i] * g - 0.5
    corner_in = np.asarray(as_read.TransformContinuousIndexToPhysicalPoint(start))
    corner_tok = np.asarray(t.TransformContinuousIndexToPhysicalPoint((-0.5, -0.5, -0.5)))
    np.testing.assert_allclose(corner_tok, corner_in, atol=1e-4)
    assert int(sitk.GetArrayFromImage(t).max()) < 64
    # montage: a real PNG with 3 rows of panels
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
    assert np.isfinite(res.psnr)


def test_windowed_reconstruction_matches_grid(tmp_path, tok):
    img = sitk.ReadImage(str(MRI))  # (68, 52, 67), direction not identity
    res = reconstruct_image(img, tok, settings=InferenceSettings(device="cpu", roi=(48, 64, 48), overlap=0.25), tokens=True)
    assert geometry(res.reconstruction) == geometry(img)
    assert res.tokens is not None and res.tokens.GetSize() == (5, 4, 5)


def test_reconstruct_2d_dicom(tmp_path, models):
    from pydicom.data import get_testdata_file

    src = get_testdata_file("MR_small.dcm")  # 64 × 64, one slice: a 2D image
    out, tokens = tmp_path / "rec.mha", tmp_path / "tok.mha"
    res = reconstruct(src, out, models["tok"], tokens=tokens, settings=CPU)
    ref = sitk.ReadImage(src)
    assert_same_grid(sitk.ReadImage(str(out)), ref)
    t = sitk.ReadImage(str(tokens))
    assert t.GetSize()[:2] == (4, 4)
    assert res.resampled is False


def test_normalization_from_metadata_is_used(tmp_path):
    from inference_helpers import make_tokenizer

    folder = make_tokenizer(tmp_path / "ct-tok", meta={"input": {"normalization": {"scheme": "ct", "window": [-1000, 1000]}}})
    model = load_model(folder, "reconstruct")
    assert model.inputs.normalization == IntensitySpec("ct", window=(-1000.0, 1000.0))
    res = reconstruct_image(ct_crop(), model, settings=CPU)
    r = sitk.GetArrayFromImage(res.reconstruction)
    assert -1000.0 - 1e-3 <= r.min() and r.max() <= 1000.0 + 1e-3  # decoded within the CT window, in HU
