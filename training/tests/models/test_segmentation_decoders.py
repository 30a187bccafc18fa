"""The two segmentation decoders of :class:`~pumit.models.SpadViTSegmenter` (``unet``, ``light``): the shipped model
(saved before the field existed) still loads as ``unet``; the light decoder keeps the spacing rules, the ViT and its
checkpoint compatibility, costs a fraction of the U-Net decoder's FLOPs, saves/loads, and trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pumit.errors import InputError
from pumit.models import SegmenterConfig, SpadViTSegmenter, ViTConfig, load_pretrained, save_pretrained
from pumit.models.segmentation import DEFAULT_CHANNELS, DEFAULT_CONV_LEVELS
from pumit.spacing import PLANAR_THICKNESS

SHIPPED = Path(__file__).resolve().parents[2] / "pumit" / "assets" / "models" / "pumit-ref-hippocampus-seg-v0.1.0"


def tiny(decoder: str, **kw) -> SpadViTSegmenter:
    torch.manual_seed(0)
    vit = ViTConfig(embed_dim=32, depth=4, num_heads=2, patch_size=kw.pop("patch_size", 8))
    return SpadViTSegmenter(SegmenterConfig(vit=vit, num_classes=3, decoder=decoder, **kw))


def gflops(model: SpadViTSegmenter, shape, spacing) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 1, *shape), spacing)
    return counter.get_total_flops() / 1e9


def test_shipped_model_without_decoder_field_loads_as_unet():
    cfg = json.loads((SHIPPED / "config.json").read_text())["config"]
    assert "decoder" not in cfg  # saved before the light decoder existed
    model = load_pretrained(SHIPPED)
    assert model.config.decoder == "unet"
    assert model.config.adapter_channels == (16, 32, 48, 64) and model.config.stem_channels == (8,)
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 32, 48, 32), (1.0, 1.0, 1.0))
    assert out.shape == (1, 3, 32, 48, 32)
    # an old config dict without channels gets the old defaults, not the light ones
    old = SegmenterConfig.from_dict({"vit": model.config.vit.to_dict(), "num_classes": 2})
    assert old.decoder == "unet" and old.adapter_channels == DEFAULT_CHANNELS["unet"][0] and old.conv_levels == 0


@pytest.mark.parametrize("spacing,shape", [((1.0, 1.0, 1.0), (16, 32, 32)), ((4.0, 0.8, 0.8), (4, 32, 48)),
                                           ((PLANAR_THICKNESS, 1.0, 1.0), (1, 32, 32))])
@pytest.mark.parametrize("conv_levels", [0, 2, 3])
def test_light_decoder_output_on_the_input_grid(spacing, shape, conv_levels):
    for patch in (8, 16):
        model = tiny("light", patch_size=patch, conv_levels=conv_levels).eval()
        div = model.required_divisor(spacing)
        shp = tuple(max(n, d) // d * d for n, d in zip(shape, div))
        if spacing[0] >= PLANAR_THICKNESS:  # a 2D image: one slice
            shp = (1,) + shp[1:]
        with torch.no_grad():
            out = model(torch.randn(2, 1, *shp), spacing)
        assert out.shape == (2, 3, *shp)


def test_light_config_defaults_round_trip_and_errors(tmp_path):
    cfg = SegmenterConfig(vit=ViTConfig(embed_dim=32, depth=4, num_heads=2, patch_size=16), decoder="light")
    assert cfg.adapter_channels == DEFAULT_CHANNELS["light"][0] and cfg.stem_channels == DEFAULT_CHANNELS["light"][1]
    assert cfg.conv_levels == DEFAULT_CONV_LEVELS["light"] == 2
    assert SegmenterConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="unknown segmentation decoder"):
        SegmenterConfig(decoder="fancy")
    with pytest.raises(InputError, match="conv_levels needs the light decoder"):
        SegmenterConfig(decoder="unet", conv_levels=1)
    with pytest.raises(InputError, match="conv_levels must be 0"):
        SegmenterConfig(decoder="light", conv_levels=4)
    # a light config saved before conv_levels existed has none
    old = {k: v for k, v in cfg.to_dict().items() if k != "conv_levels"}
    assert SegmenterConfig.from_dict(old).conv_levels == 0
    hybrid = SegmenterConfig(vit=cfg.vit, decoder="light", conv_levels=2)
    assert SegmenterConfig.from_dict(hybrid.to_dict()) == hybrid
    model = tiny("light")
    folder = save_pretrained(model, tmp_path / "light", meta={"name": "x"})
    back = load_pretrained(folder)
    assert back.config.decoder == "light"
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(x, (1.0, 1.0, 1.0)), model.eval()(x, (1.0, 1.0, 1.0)))


@pytest.mark.parametrize("conv_levels", [0, 2])
def test_vit_is_identical_so_a_vit_checkpoint_loads_into_either_decoder(conv_levels):
    light, unet = tiny("light", conv_levels=conv_levels), tiny("unet")
    assert light.vit.state_dict().keys() == unet.vit.state_dict().keys()
    light.vit.load_state_dict(unet.vit.state_dict())  # strict
    for k, v in unet.vit.state_dict().items():
        assert torch.equal(light.vit.state_dict()[k], v)


def test_conv_levels_add_a_cnn_path_into_the_vit_levels():
    """``conv_levels = 2`` (patch 8): the stem continues to levels 1 and 2 at the adapter widths; the old light model's
    parameters are a subset (only new stem levels are added), and the output depends on the new path."""
    plain, hybrid = tiny("light", conv_levels=0), tiny("light")
    assert hybrid.config.conv_levels == 2  # the light decoder's default for new models
    extra = set(hybrid.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith(("stem.1.", "stem.2.")) for k in extra), extra
    assert set(plain.state_dict()) <= set(hybrid.state_dict())
    x = torch.randn(1, 1, 16, 32, 32)
    hybrid.eval()
    with torch.no_grad():
        before = hybrid(x, (1.0, 1.0, 1.0))
        for prm in hybrid.stem[2].parameters():
            prm.add_(0.5)
        after = hybrid(x, (1.0, 1.0, 1.0))
    assert not torch.allclose(before, after)


def test_light_decoder_costs_a_fraction_of_the_unet_decoder():
    """ViT-B at a 64x128x128 CT window (meta device: no compute): the light model is < 1/4 of the U-Net one."""
    flops = {}
    for dec in ("light", "unet"):
        m = SpadViTSegmenter(SegmenterConfig(vit=ViTConfig.preset("base"), num_classes=2, decoder=dec)).to("meta")
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            m(torch.empty(1, 1, 64, 128, 128, device="meta"), (2.5, 0.8, 0.8))
        flops[dec] = counter.get_total_flops() / 1e9
    assert flops["light"] < flops["unet"] / 4, flops


@pytest.mark.parametrize("conv_levels", [0, 2])
def test_light_decoder_trains(conv_levels):
    """Real optimisation steps on a fixed batch: the Dice-CE loss falls."""
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    model = tiny("light", conv_levels=conv_levels)
    x = torch.randn(2, 1, 16, 32, 32)
    y = (x > 0.5).long() + (x > 1.5).long()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = loss_fn(model(x, (1.0, 1.0, 1.0)), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_blocks_per_level_adds_residual_blocks_and_old_configs_keep_one():
    """``blocks_per_level`` (light): new configs default to 2; a config saved before the field has 1 (the design then);
    the extra blocks are residual, so with their weights zeroed (a block's norm bias 0 → LeakyReLU(0) = 0) the model
    equals the one-block model it extends."""
    from pumit.models.segmentation import DEFAULT_BLOCKS_PER_LEVEL

    vit = ViTConfig(embed_dim=32, depth=4, num_heads=2, patch_size=8)
    new = SegmenterConfig(vit=vit, num_classes=3, decoder="light")
    assert new.blocks_per_level == DEFAULT_BLOCKS_PER_LEVEL["light"] == 2
    assert SegmenterConfig.from_dict(new.to_dict()) == new
    old = {k: v for k, v in new.to_dict().items() if k != "blocks_per_level"}
    assert SegmenterConfig.from_dict(old).blocks_per_level == 1
    assert SegmenterConfig(vit=vit, decoder="unet").blocks_per_level == 1
    with pytest.raises(InputError, match="blocks_per_level needs the light decoder"):
        SegmenterConfig(vit=vit, decoder="unet", blocks_per_level=2)
    with pytest.raises(InputError, match="blocks_per_level must be 1"):
        SegmenterConfig(vit=vit, decoder="light", blocks_per_level=0)

    one, two = tiny("light", blocks_per_level=1), tiny("light", blocks_per_level=2)
    extra = set(two.state_dict()) - set(one.state_dict())
    assert extra and all(".extra." in k or k.startswith("stem.") for k in extra), extra
    assert set(one.state_dict()) <= set(two.state_dict())
    state = two.state_dict()
    state.update(one.state_dict())
    two.load_state_dict(state)
    x = torch.randn(1, 1, 16, 32, 32)
    one.eval(), two.eval()
    with torch.no_grad():
        for name, prm in two.named_parameters():
            if name in extra and "norm" in name:
                prm.zero_()  # GroupNorm weight and bias 0: the residual branch outputs exactly 0
        torch.testing.assert_close(two(x, (1.0, 1.0, 1.0)), one(x, (1.0, 1.0, 1.0)))
        for name, prm in two.named_parameters():
            if name in extra:
                prm.add_(0.3)
        assert not torch.allclose(two(x, (1.0, 1.0, 1.0)), one(x, (1.0, 1.0, 1.0)))
    for spacing, shape in (((4.0, 0.8, 0.8), (4, 32, 48)), ((PLANAR_THICKNESS, 1.0, 1.0), (1, 32, 32))):
        with torch.no_grad():
            assert two(torch.randn(1, 1, *shape), spacing).shape == (1, 3, *shape)
