"""SPAD-ViT, MIM, classification/segmentation heads and Universal-Model heads."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pumit.errors import InputError
from pumit.imageio import read_image, to_model_layout
from pumit.intensity import IntensitySpec, normalize
from pumit.models import (
    ClassifierConfig,
    ModalityDiscriminator,
    ScaleClassifier,
    SegmenterConfig,
    SpadViT,
    SpadViTClassifier,
    SpadViTMIM,
    SpadViTSegmenter,
    TokenizerConfig,
    UniversalTokenizer,
    ViTConfig,
    grad_reverse,
    random_mask,
)
from pumit.spacing import PLANAR_THICKNESS

SMALL = dict(embed_dim=64, depth=4, num_heads=4, codebook_size=256)


def test_presets_match_published_sizes():
    base = ViTConfig.preset("base")
    assert (base.embed_dim, base.depth, base.num_heads, base.hidden, base.head_dim) == (768, 12, 12, 2048, 64)
    assert ViTConfig.preset("small").embed_dim == 384 and ViTConfig.preset("tiny").embed_dim == 192
    with pytest.raises(InputError, match="unknown ViT preset"):
        ViTConfig.preset("huge")


def test_mim_forward_backward_on_a_real_mri(tptbox_dir):
    image = read_image(tptbox_dir / "sub-mri_label-6_T2w.nii.gz")
    array, layout = to_model_layout(image)
    array, _ = normalize(array, IntensitySpec("zscore"))
    x = torch.from_numpy(np.ascontiguousarray(array[:, :32, :32, :48]))[None]  # (1, 1, 32, 32, 48)
    spacing = layout.spacing
    tokenizer = UniversalTokenizer(TokenizerConfig.preset("tiny")).eval()
    model = SpadViTMIM(ViTConfig(patch_size=16, **SMALL))
    with torch.no_grad():
        target, _, _ = tokenizer.encode(x, spacing)
    n = target[0, ..., 0].numel()
    mask = random_mask(1, n, 0.55, torch.Generator().manual_seed(0))
    assert mask.sum().item() == round(0.55 * n)
    loss = model.loss(x, spacing, target, mask)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None]
    assert not no_grad, no_grad
    assert model.vit.mask_token.grad.abs().sum() > 0
    # soft-target CE is minimised by predicting the target: loss >= entropy of the targets on masked tokens
    ent = -(target * target.clamp_min(1e-12).log()).sum(-1).reshape(1, -1)[mask].mean()
    assert loss.item() >= ent.item() - 1e-4


@pytest.mark.parametrize(
    "shape,spacing,grid",
    [((2, 1, 1, 32, 48), (PLANAR_THICKNESS, 0.3, 0.3), (1, 2, 3)), ((2, 1, 16, 32, 32), (1, 1, 1), (1, 2, 2)), ((2, 1, 8, 32, 32), (5, 1, 1), (2, 2, 2))],
)
def test_one_model_for_2d_iso_and_aniso(shape, spacing, grid):
    vit = SpadViT(ViTConfig(**SMALL))
    h, g, taps = vit.forward_features(torch.randn(shape), spacing, return_layers=(1, 3))
    assert g == grid and h.shape == (2, 1 + grid[0] * grid[1] * grid[2], 64) and len(taps) == 2


def test_vit_bad_input_errors():
    vit = SpadViT(ViTConfig(**SMALL))
    with pytest.raises(InputError, match=r"\(16, 30, 32\).*not divisible by the adaptive patch \(16, 16, 16\)"):
        vit(torch.zeros(1, 1, 16, 30, 32), (1, 1, 1))
    with pytest.raises(InputError, match="expects 1 channel"):
        vit(torch.zeros(1, 2, 16, 32, 32), (1, 1, 1))
    with pytest.raises(InputError, match="2D image"):
        vit(torch.zeros(1, 1, 16, 32, 32), (PLANAR_THICKNESS, 1, 1))
    with pytest.raises(InputError, match="spacing"):
        vit(torch.zeros(1, 1, 16, 32, 32), (float("nan"), 1, 1))


def test_classifier_learns_a_step():
    model = SpadViTClassifier(ClassifierConfig(vit=ViTConfig(patch_size=8, **SMALL), num_classes=2))
    x = torch.randn(4, 1, 8, 16, 16)
    y = torch.tensor([0, 1, 0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x, (1, 1, 1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("spacing,depth", [((1, 1, 1), 32), ((4, 1, 1), 8), ((3, 0.7, 0.7), 8), ((PLANAR_THICKNESS, 1, 1), 1)])
def test_segmenter_output_on_input_grid_for_anisotropic_depth(spacing, depth):
    cfg = SegmenterConfig(vit=ViTConfig(patch_size=8, **SMALL), num_classes=3, adapter_channels=(8, 8, 16, 16), stem_channels=(8,))
    model = SpadViTSegmenter(cfg)
    div = model.required_divisor(spacing)
    assert 32 % div[1] == 0 and depth % div[0] == 0
    x = torch.randn(1, 1, depth, 32, 48)
    y = model(x, spacing)
    assert y.shape == (1, 3, depth, 32, 48)
    y.mean().backward()
    assert model.vit.patch_embed.proj.weight.grad is not None and model.stem[0][0].conv.weight.grad is not None


def test_universal_model_heads_reverse_gradients():
    tokens = torch.randn(3, 10, 16, requires_grad=True)
    disc = ModalityDiscriminator(16, num_modalities=4, lambd=0.5)
    F.cross_entropy(disc(tokens), torch.tensor([0, 1, 2])).backward()
    g_rev = tokens.grad.clone()
    tokens.grad = None
    F.cross_entropy(disc.mlp(tokens.mean(1)), torch.tensor([0, 1, 2])).backward()
    torch.testing.assert_close(g_rev, -0.5 * tokens.grad)
    scale = ScaleClassifier(16, num_scales=6)
    assert scale(tokens).shape == (3, 6)
    x = torch.randn(3, requires_grad=True)
    grad_reverse(x, 2.0).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), -2.0))
