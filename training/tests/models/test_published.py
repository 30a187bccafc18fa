"""Published PUMIT layouts: strict load of the published key lists, the published pos-embed rule, LayerNorm
eps, input conventions and grey folds, checked against hand computations and plain-torch references."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pumit.errors import InputError
from pumit.models.checkpoint import load_state_strict
from pumit.models.published import (
    BT601_WEIGHTS,
    fold_grey_output,
    published_tokenizer_config,
    published_vit_config,
    tokenizer_state_from_published,
    vit_state_from_published,
    vit_state_to_published,
)
from pumit.models.rope import AdditiveRoPE3D
from pumit.models.tokenizer import UniversalTokenizer
from pumit.models.vit import IMAGENET_MEAN, IMAGENET_STD, SpadViT, SpadViTMIM, ViTConfig, resample_pos_embed
from pumit.spacing import PLANAR_THICKNESS

KEYS_FILE = Path(__file__).resolve().parents[4] / "shared" / "pumit_checkpoint_keys.json"  # <repo>/../shared


def published_keys() -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(ViT keys, tokenizer keys) of the published checkpoints, from the shared key list."""
    if not KEYS_FILE.is_file():
        pytest.skip(f"published key list not found at {KEYS_FILE} (../shared is absent)")
    d = json.loads(KEYS_FILE.read_text())
    vit = next(v for k, v in d.items() if k.startswith("pumit_vit_b"))
    tok = next(v for k, v in d.items() if k.startswith("pumit_tokenizer"))
    return vit, tok


def random_state(keys: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the listed shapes (norm weights around 1 so LayerNorm/GroupNorm stay sensible)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in keys.items():
        t = torch.randn(*shape, generator=g) * 0.02
        if k.endswith("weight") and len(shape) == 1:
            t += 1
        out[k] = t
    return out


def shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state.items()}


# --------------------------------------------------------------------------------------- strict key lists


def test_published_tokenizer_layout_loads_the_published_key_list_strictly():
    _, keys = published_keys()
    model = UniversalTokenizer(published_tokenizer_config(in_channels=3))
    assert shapes(model.state_dict()) == keys  # 45 keys, same names, same shapes
    state = random_state(keys)
    load_state_strict(model, state, "published tokenizer")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    # grey conversion: strict too, only the documented two tensors (and the output bias) change
    grey = UniversalTokenizer(published_tokenizer_config(in_channels=1))
    folded = tokenizer_state_from_published(state, grey.config)
    load_state_strict(grey, folded, "grey tokenizer")
    changed = {k for k in state if not torch.equal(state[k], folded[k]) or state[k].shape != folded[k].shape}
    assert changed == {"encoder.0.weight", "decoder.8.weight", "decoder.8.bias"}


def test_published_vit_layout_loads_the_published_key_list_strictly():
    keys, _ = published_keys()
    cfg = published_vit_config()  # full ViT-B: 12 blocks, 768 wide, RGB patch filters kept
    model = SpadViTMIM(cfg)
    assert shapes(vit_state_to_published(model.state_dict())) == keys  # 239 keys
    state = random_state(keys)
    converted = vit_state_from_published(state, cfg)
    load_state_strict(model, converted, "published ViT")
    ours = vit_state_to_published(model.state_dict())
    assert all(torch.equal(ours[k], v) for k, v in state.items())  # bit-exact, nothing folded or dropped
    assert cfg.norm_eps == 1e-5 and all(m.eps == 1e-5 for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    assert all(m.eps == 1e-6 for m in SpadViT(ViTConfig(embed_dim=32, depth=1, num_heads=2)).modules()
               if isinstance(m, torch.nn.LayerNorm))  # our own default is unchanged


def test_a_wrong_key_or_shape_is_refused():
    keys, _ = published_keys()
    cfg = published_vit_config(depth=1, embed_dim=768)
    small = {k: v for k, v in keys.items() if not k.startswith("blocks.") or k.startswith("blocks.0.")}
    state = random_state(small)
    model = SpadViTMIM(cfg)
    bad = dict(state)
    bad["blocks.0.mlp.ffn_ln.weight"] = torch.ones(1024)
    with pytest.raises(Exception, match="ffn_ln"):
        load_state_strict(model, vit_state_from_published(bad, cfg), "ctx")
    missing = {k: v for k, v in state.items() if k != "blocks.0.attn.q_bias"}
    with pytest.raises(Exception, match="q_bias"):
        load_state_strict(model, vit_state_from_published(missing, cfg), "ctx")


# --------------------------------------------------------------------------------------- pos-embed rule


def test_pos_embed_rule_against_a_hand_computed_case():
    # stored grid (4, 2, 2) of one channel: value = 10 z + 2 y + x (+100 on one voxel to break linearity)
    z, y, x = torch.meshgrid(torch.arange(4.0), torch.arange(2.0), torch.arange(2.0), indexing="ij")
    pos = (10 * z + 2 * y + x)
    pos[3, 1, 1] += 100
    pos = pos[None, None]
    out = resample_pos_embed(pos, (1, 4, 2), "area_trilinear")
    # depth 4 → 1: area mean over z; rows 2 → 4 (align_corners=False): src = 0.5 i − 0.25, clamped to [0, 1]
    mean_z = pos[0, 0].mean(0)  # (2, 2)
    a, b = mean_z[0], mean_z[1]
    expected = torch.stack([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b])[None, None, None]
    torch.testing.assert_close(out, expected)
    assert mean_z[1, 1].item() == pytest.approx(43.0)  # (3 + 13 + 23 + 33 + 100) / 4
    # the plain trilinear rule samples between slices 1 and 2 instead: a different value (the bug)
    plain = resample_pos_embed(pos, (1, 4, 2), "trilinear")
    assert not torch.allclose(plain, out)
    # 5 → 2 is an area (adaptive average) reduction over bins [0, 3) and [2, 5)
    p5 = torch.arange(5.0).view(1, 1, 5, 1, 1)
    torch.testing.assert_close(resample_pos_embed(p5, (2, 1, 1), "area_trilinear").flatten(), torch.tensor([1.0, 3.0]))
    # a grid equal to the stored one is the identity; growing axes only are trilinear
    torch.testing.assert_close(resample_pos_embed(pos, (4, 2, 2), "area_trilinear"), pos)
    torch.testing.assert_close(resample_pos_embed(pos, (8, 4, 4), "area_trilinear"),
                               F.interpolate(pos, size=(8, 4, 4), mode="trilinear", align_corners=False))


def test_unknown_config_values_are_input_errors():
    with pytest.raises(InputError, match="pos_embed_rule"):
        ViTConfig(pos_embed_rule="bicubic")
    with pytest.raises(InputError, match="input_convention"):
        ViTConfig(input_convention="rgb")
    with pytest.raises(InputError, match="layout"):
        published_tokenizer_config(layout="nope")


# --------------------------------------------------------------------------------------- reference forward


def _ln(x: torch.Tensor, s: dict[str, torch.Tensor], name: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], s[name + ".weight"], s[name + ".bias"], eps)


def reference_vit_tokens(s: dict[str, torch.Tensor], x_rgb: torch.Tensor, heads: int, patch_depth: int) -> torch.Tensor:
    """Plain-torch forward of a published ViT state dict on ImageNet-normalised RGB ``x_rgb (B, 3, D, H, W)``
    written from the published description (PUMIT_REFERENCE.md), independent of pumit's modules."""
    w = s["patch_embed.proj.weight"]
    p = w.shape[-1]
    if patch_depth != p:  # SAC: sum-pool the depth taps
        w = w.unflatten(2, (patch_depth, p // patch_depth)).sum(3)
    f = F.conv3d(x_rgb, w, s["patch_embed.proj.bias"], stride=(patch_depth, p, p))
    grid = f.shape[2:]
    pos = s["pos_embed"]
    small = tuple(min(a, b) for a, b in zip(pos.shape[2:], grid))
    pos = F.adaptive_avg_pool3d(pos, small)
    pos = F.interpolate(pos, size=tuple(grid), mode="trilinear", align_corners=False)
    t = (f + pos).flatten(2).transpose(1, 2)
    b, n, c = t.shape
    h = torch.cat([s["cls_token"].expand(b, -1, -1), t], 1)
    hd = c // heads
    k_ = torch.arange(hd // 4, dtype=torch.float64)
    om = 10000.0 ** (-2 * k_ / (hd // 2))
    omz = 2333.0 ** (-(2 * k_ + 1) / (hd // 2))
    zz, yy, xx = (v.reshape(-1, 1).double() for v in torch.meshgrid(*(torch.arange(g) for g in grid), indexing="ij"))
    theta = torch.cat([zz * omz + yy * om, zz * omz + xx * om], 1).repeat_interleave(2, 1).float()  # (N, hd)

    def rope(q: torch.Tensor) -> torch.Tensor:  # q (B, heads, 1 + N, hd), [CLS] untouched
        qp = q[:, :, 1:]
        rot = torch.stack([-qp[..., 1::2], qp[..., 0::2]], -1).flatten(-2)
        return torch.cat([q[:, :, :1], qp * theta.cos() + rot * theta.sin()], 2)

    i = 0
    while f"blocks.{i}.norm1.weight" in s:
        pre = f"blocks.{i}."
        a = _ln(h, s, pre + "norm1", 1e-5)
        q = a @ s[pre + "attn.q_proj.weight"].T + s[pre + "attn.q_bias"]
        k = a @ s[pre + "attn.k_proj.weight"].T
        v = a @ s[pre + "attn.v_proj.weight"].T + s[pre + "attn.v_bias"]
        q, k, v = (u.view(b, n + 1, heads, hd).transpose(1, 2) for u in (q, k, v))
        q, k = rope(q), rope(k)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1) @ v
        h = h + att.transpose(1, 2).reshape(b, n + 1, c) @ s[pre + "attn.proj.weight"].T + s[pre + "attn.proj.bias"]
        m = _ln(h, s, pre + "norm2", 1e-5)
        g = F.silu(m @ s[pre + "mlp.w1.weight"].T + s[pre + "mlp.w1.bias"]) * (m @ s[pre + "mlp.w2.weight"].T + s[pre + "mlp.w2.bias"])
        h = h + _ln(g, s, pre + "mlp.ffn_ln", 1e-5) @ s[pre + "mlp.w3.weight"].T + s[pre + "mlp.w3.bias"]
        i += 1
    return _ln(h, s, "norm", 1e-5)


def small_published_vit_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Published key names at a small width (64, 2 heads of 32, 2 blocks)."""
    cfg = published_vit_config(embed_dim=64, depth=2, num_heads=2, mlp_hidden=96, codebook_size=32)
    torch.manual_seed(seed)
    model = SpadViTMIM(cfg)
    state = vit_state_to_published(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    return {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in state.items()}  # non-trivial biases/norms


def imagenet_rgb(y: torch.Tensor) -> torch.Tensor:
    """pumit grey ``[-1, 1]`` → the published pre-training input: ``x ∈ [0, 1]`` replicated, ImageNet-normalised."""
    x = ((y + 1) / 2).expand(-1, 3, -1, -1, -1)
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)


@pytest.mark.parametrize(
    "shape,spacing,patch_depth",
    [
        ((1, 1, 1, 32, 48), (PLANAR_THICKNESS, 0.8, 0.8), 1),  # a 2D image: grid (1, 2, 3), smaller than (5, 10, 10)
        ((1, 1, 32, 32, 32), (1.0, 1.0, 1.0), 16),  # isotropic 3D
        ((1, 1, 4, 32, 32), (4.0, 1.0, 1.0), 4),  # anisotropic 3D (DA 2)
        ((1, 1, 16, 176, 176), (1.0, 1.0, 1.0), 16),  # grid (1, 11, 11): shrinks in depth, grows in-plane
    ],
)
def test_published_vit_matches_a_plain_reference_on_2d_and_3d(shape, spacing, patch_depth):
    s = small_published_vit_state()
    cfg = published_vit_config(embed_dim=64, depth=2, num_heads=2, mlp_hidden=96, codebook_size=32)
    model = SpadViTMIM(cfg).eval()
    load_state_strict(model, vit_state_from_published(s, cfg), "ctx")
    y = torch.rand(*shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ours = model.vit.forward_features(y, spacing)[0]
        ref = reference_vit_tokens(s, imagenet_rgb(y), heads=2, patch_depth=patch_depth)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=5e-5)
    # "signed" convention = channel-sum fold: equal to the RGB filters on the grey [-1, 1] image replicated
    scfg = published_vit_config(input_convention="signed", embed_dim=64, depth=2, num_heads=2, mlp_hidden=96, codebook_size=32)
    signed = SpadViTMIM(scfg).eval()
    load_state_strict(signed, vit_state_from_published(s, scfg), "ctx")
    with torch.no_grad():
        torch.testing.assert_close(signed.vit.forward_features(y, spacing)[0],
                                   reference_vit_tokens(s, y.expand(-1, 3, -1, -1, -1), heads=2, patch_depth=patch_depth),
                                   rtol=1e-4, atol=5e-5)


def test_2d_reduction_holds_for_the_published_vit():
    """A 2D image (one slice) sees the depth-summed patch filters (a 2D conv) and z = 0 RoPE (2D RoPE)."""
    s = small_published_vit_state()
    cfg = published_vit_config(embed_dim=64, depth=2, num_heads=2, mlp_hidden=96, codebook_size=32)
    model = SpadViT(cfg).eval()
    load_state_strict(model, {k[4:]: v for k, v in vit_state_from_published(s, cfg).items() if k.startswith("vit.")}, "ctx")
    y = torch.rand(1, 1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        feat, _, _ = model.embed(y, (PLANAR_THICKNESS, 1.0, 1.0))
        w2d = s["patch_embed.proj.weight"].sum(2)  # (C, 3, 16, 16)
        conv2d = F.conv2d(imagenet_rgb(y)[:, :, 0], w2d, s["patch_embed.proj.bias"], stride=16)
        pos2d = s["pos_embed"].mean(2)  # area over all 5 stored slices, then 10x10 → 2x2 area
        pos2d = F.adaptive_avg_pool2d(pos2d, (2, 2))
    torch.testing.assert_close(feat, (conv2d + pos2d).flatten(2).transpose(1, 2), rtol=1e-4, atol=1e-4)
    rope = AdditiveRoPE3D(32)
    a3 = rope.grid_angles((1, 2, 2))
    yy, xx = torch.meshgrid(torch.arange(2.0), torch.arange(2.0), indexing="ij")
    om = 10000.0 ** (-2 * torch.arange(8, dtype=torch.float64) / 16)
    a2 = torch.cat([yy.reshape(-1, 1).double() * om, xx.reshape(-1, 1).double() * om], 1)
    torch.testing.assert_close(a3, a2)


# --------------------------------------------------------------------------------------- tokenizer


def reference_tokenizer(s: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-torch published tokenizer on an isotropic RGB volume in ``[-1, 1]``: (probs, RGB reconstruction)."""
    def ln(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(h.movedim(1, -1), h.shape[1:2], s[name + ".weight"], s[name + ".bias"]).movedim(-1, 1)

    def gn(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.group_norm(h, 8, s[name + ".weight"], s[name + ".bias"])

    h = x
    for conv, norm in (("encoder.0", "encoder.1.1"), ("encoder.3", "encoder.4.1"), ("encoder.6", "encoder.7.1")):
        k = s[conv + ".weight"].shape[-1]
        h = F.gelu(ln(F.conv3d(h, s[conv + ".weight"], s[conv + ".bias"], stride=k), norm))
    for conv, norm in (("encoder.9", "encoder.10"), ("encoder.12", "encoder.13")):
        h = F.leaky_relu(gn(F.conv3d(h, s[conv + ".weight"], s[conv + ".bias"], padding=1), norm))
    probs = torch.softmax(h.movedim(1, -1) @ s["quantize.proj.weight"].T + s["quantize.proj.bias"], -1)
    h = (probs @ s["quantize.embedding.weight"]).movedim(-1, 1)
    for conv, norm in (("decoder.0", "decoder.1"), ("decoder.3", "decoder.4")):
        h = F.leaky_relu(gn(F.conv3d(h, s[conv + ".weight"], s[conv + ".bias"], padding=1), norm))
    for up in ("decoder.6", "decoder.7"):
        h = F.conv_transpose3d(h, s[up + ".transposed_conv.weight"], s[up + ".transposed_conv.bias"], stride=2)
        h = F.leaky_relu(gn(F.conv3d(h, s[up + ".conv.0.weight"], s[up + ".conv.0.bias"], padding=1), up + ".conv.1"))
    return probs, F.conv_transpose3d(h, s["decoder.8.weight"], s["decoder.8.bias"], stride=4)


def test_published_tokenizer_matches_a_plain_reference_and_folds_grey_with_bt601():
    cfg3 = published_tokenizer_config(in_channels=3, channels=(16, 32, 64), codebook_size=48)
    torch.manual_seed(0)
    rgb = UniversalTokenizer(cfg3).eval()
    g = torch.Generator().manual_seed(0)
    s = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in rgb.state_dict().items()}
    load_state_strict(rgb, s, "ctx")
    y = torch.rand(1, 1, 32, 32, 32, generator=g) * 2 - 1
    y3 = y.expand(-1, 3, -1, -1, -1)
    with torch.no_grad():
        out = rgb(y3, (1.0, 1.0, 1.0))
        ref_probs, ref_rec = reference_tokenizer(s, y3)
    torch.testing.assert_close(out.probs, ref_probs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.recon, ref_rec, rtol=1e-4, atol=1e-4)
    grey = UniversalTokenizer(published_tokenizer_config(in_channels=1, channels=(16, 32, 64), codebook_size=48)).eval()
    load_state_strict(grey, tokenizer_state_from_published(s, grey.config), "ctx")
    with torch.no_grad():
        g_out = grey(y, (1.0, 1.0, 1.0))
    luma = torch.tensor(BT601_WEIGHTS).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(g_out.probs, ref_probs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_out.recon, (ref_rec * luma).sum(1, keepdim=True), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(g_out.recon, ref_rec.mean(1, keepdim=True), atol=1e-4)  # not the channel mean


def test_fold_grey_output_is_bt601_of_each_filter():
    w = torch.randn(4, 3, 2, 2, 2)
    b = torch.tensor([1.0, 2.0, 3.0])
    gw, gb = fold_grey_output(w, b)
    assert gw.shape == (4, 1, 2, 2, 2)
    torch.testing.assert_close(gw[:, 0], 0.299 * w[:, 0] + 0.587 * w[:, 1] + 0.114 * w[:, 2])
    assert gb.item() == pytest.approx(0.299 + 2 * 0.587 + 3 * 0.114)
