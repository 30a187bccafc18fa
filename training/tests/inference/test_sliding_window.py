"""pumit's own sliding-window inference (:func:`pumit.inference.sliding.run_sliding_window`) against MONAI's
``sliding_window_inference`` (the reference it replaces on the start-up path): the same window grid, padding,
crop and blending, for single and multi-resolution outputs, any batch size."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from pumit.inference.sliding import aligned_overlap, count_windows, importance_map, run_sliding_window

CPU = torch.device("cpu")


def _monai(x, predictor, roi, overlap, mode, sw_batch=1, cval=0.0):
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(x, roi, sw_batch, predictor, overlap=overlap, mode=mode, sigma_scale=0.125,
                                    padding_mode="constant", cval=cval)


def _ours(x, predictor, roi, overlap, mode, sw_batch=1, cval=0.0, seen=None):
    return run_sliding_window(x, predictor, roi=roi, overlap=overlap, sw_batch=sw_batch, blend=mode, sw_device=CPU, device=CPU,
                              cval=cval, on_windows=None if seen is None else (lambda d, t: seen.append((d, t))))


def window_dependent(w: torch.Tensor) -> torch.Tensor:
    """Two channels that differ from window to window (each window's mean, and the voxels + that mean)."""
    m = w.mean(dim=(2, 3, 4), keepdim=True)
    return torch.cat([m.expand_as(w), w + m], dim=1)


@pytest.mark.parametrize("shape,roi,overlap", [((20, 37, 50), (8, 16, 16), 0.4), ((9, 40, 33), (16, 16, 16), 0.25),
                                               ((32, 48, 32), (32, 48, 32), 0.5), ((17, 23, 64), (8, 32, 32), 0.0)])
def test_constant_blending_matches_monai_exactly(shape, roi, overlap):
    torch.manual_seed(0)
    x = torch.randn(2, 1, *shape)
    ref = _monai(x, window_dependent, roi, overlap, "constant")
    seen: list = []
    ours = _ours(x, window_dependent, roi, overlap, "constant", sw_batch=3, cval=0.0, seen=seen)
    assert ours.shape == ref.shape == (2, 2, *shape)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert seen[-1] == (2 * count_windows(shape, roi, overlap),) * 2  # progress reaches done == total


def test_gaussian_blending_is_close_to_monai_and_exact_for_pointwise_models():
    torch.manual_seed(1)
    x = torch.randn(1, 1, 20, 40, 36)
    roi = (8, 16, 16)
    pointwise = lambda w: torch.cat([2 * w + 1, -w], dim=1)  # noqa: E731 - any weights give back the pointwise map
    ours = _ours(x, pointwise, roi, 0.5, "gaussian", sw_batch=4)
    torch.testing.assert_close(ours, torch.cat([2 * x + 1, -x], dim=1), rtol=1e-5, atol=1e-5)
    # window-dependent outputs: MONAI's map uses an erf-approximated kernel, ours the sampled Gaussian
    ref = _monai(x, window_dependent, roi, 0.5, "gaussian")
    ours = _ours(x, window_dependent, roi, 0.5, "gaussian", sw_batch=2)
    assert (ours - ref).abs().max() < 0.02 * ref.abs().max()


def test_padding_with_cval_and_crop_back():
    x = torch.rand(1, 1, 5, 12, 40)
    roi = (8, 16, 16)
    seen_means = []

    def predictor(w):
        seen_means.append(float(w[:, :, :1].mean()))  # the first slice of a padded window is the pad value
        return window_dependent(w)

    ref = _monai(x, window_dependent, roi, 0.25, "gaussian", cval=-3.0)
    ours = _ours(x, predictor, roi, 0.25, "gaussian", cval=-3.0)
    assert ours.shape == (1, 2, 5, 12, 40)
    assert all(abs(m + 3.0) < 1e-6 for m in seen_means)
    assert (ours - ref).abs().max() < 0.02 * ref.abs().max()


def test_multi_resolution_outputs_match_monai():
    """A second output on a 4x coarser grid (like the tokenizer's token probabilities) is blended at its own size."""
    torch.manual_seed(2)
    x = torch.randn(1, 1, 24, 48, 40)
    roi = (8, 16, 16)
    ov = aligned_overlap(roi, (4, 4, 4), 0.5)

    def predictor(w):
        return window_dependent(w), F.avg_pool3d(w, 4) + w.mean(dim=(2, 3, 4), keepdim=True)

    ref = _monai(x, predictor, roi, ov, "constant")
    ours = _ours(x, predictor, roi, ov, "constant", sw_batch=3)
    assert isinstance(ours, tuple) and len(ours) == 2
    assert ours[1].shape == ref[1].shape == (1, 1, 6, 12, 10)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_batch_size_does_not_change_the_result():
    torch.manual_seed(3)
    x = torch.randn(1, 1, 16, 40, 40)
    outs = [_ours(x, window_dependent, (8, 16, 16), 0.5, "gaussian", sw_batch=n) for n in (1, 2, 5)]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-6, atol=1e-6)


def test_importance_map_shape_peak_and_floor():
    w = importance_map((8, 16, 16), "gaussian", 0.125, CPU)
    assert w.shape == (8, 16, 16) and float(w.max()) == pytest.approx(1.0) and float(w.min()) >= 1e-3
    assert float(w[4, 8, 8]) == pytest.approx(1.0)
    assert torch.equal(importance_map((2, 3, 4), "constant", 0.125, CPU), torch.ones(2, 3, 4))


def test_segment_command_path_does_not_import_monai():
    code = ("import sys, pumit.cli.main as m; m.build_parser(['segment'], lazy=True); import pumit.inference.segment; "
            "import pumit.inference.modelinfo; bad = [k for k in ('monai', 'lightning', 'matplotlib', 'pumit.store.store', "
            "'pumit.training.options') if k in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
