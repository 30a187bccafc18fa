import math

import pytest
import torch

from pumit.errors import InputError
from pumit.spacing import (
    PLANAR_THICKNESS,
    as_spacing,
    check_volume,
    degree_of_anisotropy,
    down_depth_stride,
    downsampled_spacing,
    pending_halvings,
    required_divisor,
    up_depth_stride,
)


@pytest.mark.parametrize("bad", [(0, 1, 1), (1, -1, 1), (math.nan, 1, 1), (1, math.inf, 1), (1, 1), (1, 1, 1, 1), "abc"])
def test_bad_spacing_is_a_clear_value_error(bad):
    with pytest.raises(ValueError, match="spacing"):
        as_spacing(bad)


def test_degree_of_anisotropy():
    assert pending_halvings((1.0, 1.0, 1.0)) == 0
    assert pending_halvings((0.5, 1.0, 1.0)) == 0  # thinner slices than pixels: isotropic rule
    assert pending_halvings((2.0, 1.0, 1.0)) == 1
    assert pending_halvings((3.0, 1.0, 1.0)) == 1
    assert pending_halvings((5.0, 0.7, 0.8)) == 2  # uses the smaller in-plane spacing
    assert pending_halvings((4.0, 1.0, 1.0)) == 2
    assert degree_of_anisotropy((PLANAR_THICKNESS, 0.2, 0.2)) == 5
    assert degree_of_anisotropy((100.0, 1.0, 1.0)) == 5


def test_depth_strides_follow_the_paper_rule():
    # depth stride = max(S >> DA, 1)
    assert down_depth_stride((1, 1, 1), 16) == 16
    assert down_depth_stride((4, 1, 1), 16) == 4
    assert down_depth_stride((8, 1, 1), 4) == 1
    assert down_depth_stride((PLANAR_THICKNESS, 1, 1), 16) == 1
    # successive halvings give the same total as one big stride
    for s in [(1, 1, 1), (2, 1, 1), (3, 1, 1), (5, 0.7, 0.7), (8, 1, 1), (40, 1, 1)]:
        assert required_divisor(s, 16)[0] == down_depth_stride(s, 16)


def test_up_depth_stride_inverts_down():
    for s0 in [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (3.0, 0.8, 0.8), (6.0, 1.0, 1.0), (PLANAR_THICKNESS, 1.0, 1.0)]:
        levels = [s0]
        for _ in range(4):
            levels.append(downsampled_spacing(levels[-1], 2))
        for fine, coarse in zip(levels[:-1], levels[1:]):
            t_down = round(coarse[0] / fine[0])
            assert up_depth_stride(coarse, 2, s0[0]) == t_down


def test_check_volume_errors_name_shape_and_spacing():
    with pytest.raises(InputError, match=r"rank 4 shape \(1, 8, 8, 8\)"):
        check_volume(torch.zeros(1, 8, 8, 8), (1, 1, 1))
    with pytest.raises(InputError, match="D = 4"):
        check_volume(torch.zeros(1, 1, 4, 8, 8), (PLANAR_THICKNESS, 1, 1))
    with pytest.raises(InputError, match="empty axis"):
        check_volume(torch.zeros(1, 1, 0, 8, 8), (1, 1, 1))
    with pytest.raises(InputError, match="positive"):
        check_volume(torch.zeros(1, 1, 4, 8, 8), (0, 1, 1))
    assert check_volume(torch.zeros(1, 1, 4, 8, 8), torch.tensor([2.0, 1.0, 1.0])) == (2.0, 1.0, 1.0)
