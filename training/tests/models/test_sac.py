"""Spatially adaptive convolutions: sum-pooled weights, spacing propagation, 2D equivalence."""

import pytest
import torch
import torch.nn.functional as F

from pumit.errors import InputError
from pumit.models.convert import inflate_patch_embed
from pumit.models.sac import SACConv, SACDownsample, SACMaxPool, SACUpsample
from pumit.spacing import PLANAR_THICKNESS

SPACINGS = {
    "2d": ((1, 1, 32, 32), (PLANAR_THICKNESS, 0.5, 0.5)),
    "iso": ((1, 1, 16, 32, 32), (1.0, 1.0, 1.0)),
    "aniso": ((1, 1, 8, 32, 32), (4.0, 1.0, 1.0)),
}


@pytest.mark.parametrize("spacing,expected_t", [((1, 1, 1), 4), ((2, 1, 1), 2), ((4, 1, 1), 1), ((PLANAR_THICKNESS, 1, 1), 1)])
def test_downsampling_sum_pooling_preserves_constant_response(spacing, expected_t):
    conv = SACDownsample(2, 3, stride=4)
    x = torch.full((1, 2, 8, 16, 16), 0.7) if spacing[0] < 1e4 else torch.full((1, 2, 1, 16, 16), 0.7)
    y, out_spacing = conv(x, spacing)
    full = 0.7 * conv.weight.sum(dim=(1, 2, 3, 4)) + conv.bias  # response of the unreduced kernel to a constant
    torch.testing.assert_close(y, full.view(1, 3, 1, 1, 1).expand_as(y), rtol=1e-5, atol=1e-5)
    assert y.shape[2] == x.shape[2] // expected_t
    assert out_spacing == (spacing[0] * expected_t, spacing[1] * 4, spacing[2] * 4)


def test_conv3_reduced_to_in_plane_keeps_constant_response_and_spacing():
    conv = SACConv(2, 3)
    x = torch.full((1, 2, 4, 12, 12), -1.3)
    y_iso, s_iso = conv(x, (1, 1, 1))
    y_aniso, s_aniso = conv(x, (3, 1, 1))
    assert s_iso == (1, 1, 1) and s_aniso == (3, 1, 1)
    # interior voxels (away from zero padding): same response with the reduced kernel
    torch.testing.assert_close(y_aniso[..., 1:-1, 1:-1, 1:-1], y_iso[..., 1:-1, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)
    # while anisotropic the depth kernel is 1: no mixing of slices
    x2 = torch.randn(1, 2, 4, 12, 12)
    x2b = x2.clone()
    x2b[:, :, 0] = 0
    y1, _ = conv(x2, (3, 1, 1))
    y2, _ = conv(x2b, (3, 1, 1))
    torch.testing.assert_close(y1[:, :, 1:], y2[:, :, 1:])


@pytest.mark.parametrize("name", list(SPACINGS))
def test_spacing_propagates_through_down_conv_pool_up(name):
    shape, spacing = SPACINGS[name]
    x = torch.randn(*shape) if len(shape) == 5 else torch.randn(1, *shape)
    down, conv, pool, up = SACDownsample(1, 4, 2), SACConv(4, 4), SACMaxPool(2), SACUpsample(4, 1, 2)
    h1, s1 = down(x, spacing)
    h2, s2 = conv(h1, s1)
    h3, s3 = pool(h2, s2)
    assert s2 == s1
    assert s1[1:] == (spacing[1] * 2, spacing[2] * 2) and s3[1:] == (spacing[1] * 4, spacing[2] * 4)
    for h, s in ((h1, s1), (h3, s3)):  # physical extent along depth is preserved
        assert h.shape[2] * s[0] == pytest.approx(x.shape[2] * spacing[0])
    u2, su2 = up(h2, s2, target_thickness=spacing[0])
    assert u2.shape == x.shape and su2 == pytest.approx(spacing)
    if name == "aniso":  # DA 2: the first two halvings keep depth
        assert h3.shape[2] == x.shape[2]
    if name == "iso":
        assert h3.shape[2] == x.shape[2] // 4


def test_inflated_2d_kernel_equals_2d_conv_on_a_single_slice():
    w2d = torch.randn(5, 1, 16, 16)
    conv = SACDownsample(1, 5, 16)
    with torch.no_grad():
        conv.weight.copy_(inflate_patch_embed(w2d, 16))
        conv.bias.zero_()
    img = torch.randn(1, 1, 32, 48)
    y3, s = conv(img[:, :, None], (PLANAR_THICKNESS, 0.3, 0.3))
    y2 = F.conv2d(img, w2d, stride=16)
    torch.testing.assert_close(y3[:, :, 0], y2, rtol=1e-4, atol=1e-4)
    assert s == (PLANAR_THICKNESS, 0.3 * 16, 0.3 * 16)


def test_upsampling_on_single_slice_equals_2d_transposed_conv():
    up = SACUpsample(3, 2, 4)
    w2d = torch.randn(3, 2, 4, 4)
    with torch.no_grad():
        up.weight.copy_(w2d.unsqueeze(2).repeat(1, 1, 4, 1, 1) / 4)
    x = torch.randn(1, 3, 1, 5, 6)
    y, s = up(x, (PLANAR_THICKNESS, 8, 8), target_thickness=PLANAR_THICKNESS)
    torch.testing.assert_close(y[:, :, 0], F.conv_transpose2d(x[:, :, 0], w2d, up.bias, stride=4), rtol=1e-5, atol=1e-5)
    assert y.shape[2] == 1 and s == (PLANAR_THICKNESS, 2, 2)


def test_indivisible_size_is_a_clear_error():
    with pytest.raises(InputError, match=r"\(6, 32, 30\).*divisible by 4"):
        SACDownsample(1, 2, 4)(torch.zeros(1, 1, 6, 32, 30), (1, 1, 1))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (4.0, 1.0, 1.0), (PLANAR_THICKNESS, 1.0, 1.0)])
def test_patch_embedding_fast_path_equals_conv3d(spacing):
    """Large non-overlapping downsamplings run as patchify + matmul: same values and gradients as conv3d."""
    conv = SACDownsample(2, 6, 16)
    depth = 1 if spacing[0] > 1e4 else 32
    x = torch.randn(2, 2, depth, 32, 48, requires_grad=True)
    y, _ = conv(x, spacing)
    t = 16 if spacing[0] == 1.0 else (4 if spacing[0] == 4.0 else 1)
    w = conv.weight.unflatten(2, (t, 16 // t)).sum(3)
    ref = F.conv3d(x, w, conv.bias, stride=(t, 16, 16))
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(ref)
    gx, gw = torch.autograd.grad(y, (x, conv.weight), g)
    rx, rw = torch.autograd.grad(ref, (x, conv.weight), g)
    torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-3)
