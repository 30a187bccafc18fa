"""Additive 3D RoPE: relativity, reduction to EVA-02's 2D RoPE at z = 0, distinct rotations."""

import torch

from pumit.models.rope import AdditiveRoPE3D, apply_rope


def rope_2d_reference(x: torch.Tensor, y: int, xpos: int, base: float = 10000.0) -> torch.Tensor:
    """Independent 2D RoPE: rotate pair i of the first half by y·θ_i, of the second half by x·θ_i,
    θ_i = base^(−2i/(d/2)), with explicit 2×2 rotation matrices."""
    d = x.shape[-1]
    n = d // 4
    out = x.clone()
    for half, pos in ((0, y), (1, xpos)):
        for i in range(n):
            theta = pos * base ** (-2 * i / (d / 2))
            c, s = torch.cos(torch.tensor(theta, dtype=torch.float64)), torch.sin(torch.tensor(theta, dtype=torch.float64))
            j = 2 * (half * n + i)
            a, b = x[..., j].double(), x[..., j + 1].double()
            out[..., j] = (c * a - s * b).to(x.dtype)
            out[..., j + 1] = (s * a + c * b).to(x.dtype)
    return out


def rotate(rope: AdditiveRoPE3D, v: torch.Tensor, pos: tuple[int, int, int]) -> torch.Tensor:
    theta = rope.angles(torch.tensor([pos])).repeat_interleave(2, -1)
    return apply_rope(v.double(), theta.cos(), theta.sin())[0]


def test_reduces_to_2d_rope_when_z_is_zero():
    rope = AdditiveRoPE3D(32)
    cos, sin = rope.tables((1, 3, 4), torch.float64, torch.device("cpu"))
    v = torch.randn(12, 32, dtype=torch.float64)
    rotated = apply_rope(v, cos, sin)
    for idx in range(12):
        y, x = divmod(idx, 4)
        torch.testing.assert_close(rotated[idx], rope_2d_reference(v[idx], y, x))


def test_relativity_on_random_vectors():
    rope = AdditiveRoPE3D(64)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        q, k = torch.randn(2, 1, 64, generator=g, dtype=torch.float64)
        m = tuple(torch.randint(-20, 20, (3,), generator=g).tolist())
        n = tuple(torch.randint(-20, 20, (3,), generator=g).tolist())
        shift = tuple(torch.randint(-50, 50, (3,), generator=g).tolist())
        a = rotate(rope, q, m) @ rotate(rope, k, n)
        b = rotate(rope, q, tuple(i + s for i, s in zip(m, shift))) @ rotate(rope, k, tuple(i + s for i, s in zip(n, shift)))
        assert torch.allclose(a, b, atol=1e-9)
    # and it is not trivially constant: the score changes with the relative offset
    q, k = torch.randn(2, 1, 64, dtype=torch.float64)
    assert not torch.allclose(rotate(rope, q, (0, 0, 0)) @ rotate(rope, k, (0, 0, 1)), rotate(rope, q, (0, 0, 0)) @ rotate(rope, k, (1, 0, 0)))


def test_rotation_preserves_norm_and_positions_are_distinct():
    rope = AdditiveRoPE3D(64)
    v = torch.randn(1, 64, dtype=torch.float64)
    seen = []
    for pos in [(z, y, x) for z in range(4) for y in range(4) for x in range(4)]:
        r = rotate(rope, v, pos)
        assert torch.allclose(r.norm(), v.norm())
        seen.append(rope.angles(torch.tensor([pos]))[0])
    angles = torch.stack(seen)
    dists = torch.cdist(angles, angles) + torch.eye(len(seen)) * 1e3
    assert dists.min() > 1e-3  # z shifts are not confused with in-plane shifts
