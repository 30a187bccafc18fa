"""pumit.metrics on real images: a flat image scores Pearson 0 and 0 dB over a flat image, a faithful one high."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from pumit.metrics import METRIC_KEYS, batch_pearson, describe, reconstruction_metrics, rounded, ssim
from pumit.models.losses import TokenizerLoss

CT = Path(__file__).resolve().parents[2] / "pumit" / "assets" / "demo" / "spine_ct.nii.gz"


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(CT))).astype(np.float32)


def test_flat_image_is_no_better_than_flat(ct):
    m = reconstruction_metrics(ct, np.full_like(ct, ct.mean()))
    assert set(m) == set(METRIC_KEYS)
    assert m["pearson"] == 0.0 and m["std_ratio"] == 0.0
    assert m["psnr_db"] == pytest.approx(m["psnr_constant_db"]) and abs(m["psnr_gain_db"]) < 1e-9
    assert m["psnr_db"] > 20  # the trap: a flat image has a "good" PSNR with the range as peak


def test_faithful_and_identical(ct):
    rng = np.random.default_rng(0)
    noisy = ct + rng.normal(0, 20, ct.shape).astype(np.float32)
    m = reconstruction_metrics(ct, noisy)
    assert m["pearson"] > 0.98 and 0.95 < m["std_ratio"] < 1.05 and m["psnr_gain_db"] > 15 and m["ssim"] > 0.8
    same = reconstruction_metrics(ct, ct)
    assert same["pearson"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert math.isinf(same["psnr_db"]) and rounded(same)["psnr_db"] is None
    assert "Pearson 1.000" in describe(same)
    # a blurred copy keeps correlation but loses SSIM and contrast
    blurred = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(ct), 3.0))
    mb = reconstruction_metrics(ct, blurred)
    assert mb["ssim"] < m["ssim"] and mb["std_ratio"] < 0.95
    # 2D slices use 2D SSIM
    assert ssim(ct[:1], ct[:1]) == pytest.approx(1.0, abs=1e-4)


def test_batch_pearson_matches_numpy(ct):
    a = torch.from_numpy(ct[None, None])
    b = a * 0.5 + torch.randn_like(a) * 50
    expected = np.corrcoef(a.numpy().ravel(), b.numpy().ravel())[0, 1]
    assert float(batch_pearson(b, a)) == pytest.approx(expected, abs=1e-4)
    assert float(batch_pearson(torch.zeros_like(a), a)) == 0.0


def test_sharpness_schedule_and_gan_start():
    loss = TokenizerLoss(perceptual="none", sharpness_weight=0.2, sharpness_start=100, sharpness_ramp=50,
                         gan_weight=0.01, gan_start=300, disc_channels=(4, 8))
    assert loss.sharpness_at(0) == 0.0 and loss.sharpness_at(99) == 0.0
    assert loss.sharpness_at(124) == pytest.approx(0.2 * 25 / 50)
    assert loss.sharpness_at(149) == pytest.approx(0.2) and loss.sharpness_at(10_000) == pytest.approx(0.2)
    assert loss.sharpness_at(None) == pytest.approx(0.2)
    assert not loss.discriminator_on(299) and loss.discriminator_on(300)
    assert not TokenizerLoss(perceptual="none", gan_weight=0.0, disc_channels=(4, 8)).discriminator_on(10_000)


def test_dice_scores_on_a_real_label_map_agree_with_monai() -> None:
    """Dice per label of the shipped hippocampus label against a shifted copy equals MONAI's ``compute_dice``;
    identical maps give 1, a label absent from both is NaN and left out of the mean."""
    from monai.metrics import compute_dice
    from pumit.metrics import dice_scores

    label_file = CT.parent / "hippocampus_004_label.nii.gz"
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(label_file))).astype(np.int64)
    assert set(np.unique(ref)) == {0, 1, 2}
    pred = np.roll(ref, 2, axis=1)
    names = {0: "background", 1: "anterior", 2: "posterior", 7: "absent"}
    d = dice_scores(pred, ref, names)
    one_hot = lambda a: torch.from_numpy(np.stack([a == v for v in (0, 1, 2)])[None].astype(np.float32))  # noqa: E731
    monai = compute_dice(one_hot(pred), one_hot(ref), include_background=False)[0]
    assert d["anterior"] == pytest.approx(float(monai[0]), abs=1e-6)
    assert d["posterior"] == pytest.approx(float(monai[1]), abs=1e-6)
    assert 0.0 < d["anterior"] < 1.0 and math.isnan(d["absent"]) and "background" not in d
    assert d["mean"] == pytest.approx((d["anterior"] + d["posterior"]) / 2)
    same = dice_scores(ref, ref, names)
    assert same["anterior"] == same["posterior"] == same["mean"] == 1.0
