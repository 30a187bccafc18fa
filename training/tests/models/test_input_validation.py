"""Input-validation gaps (issue 11, item 4): clear InputError / ModelError instead of torch errors deep inside."""

from __future__ import annotations

import pickle

import pytest
import torch

from pumit.errors import InputError, ModelError
from pumit.models.losses import build_perceptual
from pumit.models.sac import SACConv, SACDownsample, SACMaxPool, SACUpsample
from pumit.models.segmentation import SegmenterConfig, SpadViTSegmenter
from pumit.models.tokenizer import TokenizerConfig, UniversalTokenizer
from pumit.models.vit import ViTConfig


def _tok() -> UniversalTokenizer:
    return UniversalTokenizer(TokenizerConfig.preset("tiny")).eval()


def test_segmenter_checks_the_channel_count():
    cfg = SegmenterConfig(vit=ViTConfig(embed_dim=32, depth=4, num_heads=2, patch_size=8), num_classes=2)
    model = SpadViTSegmenter(cfg).eval()
    with pytest.raises(InputError, match=r"expects 1 channel\(s\), got input shape \(1, 3, 16, 16, 16\)"):
        model(torch.zeros(1, 3, 16, 16, 16), (1.0, 1.0, 1.0))


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -1.0, float("inf")])
def test_decode_refuses_a_bad_output_spacing(bad):
    tok = _tok()
    probs, _, ts = tok.encode(torch.rand(1, 1, 16, 32, 32) * 2 - 1, (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="output spacing must be positive and finite"):
        tok.decode(probs, ts, (bad, 1.0, 1.0))
    with pytest.raises(InputError, match="token spacing"):
        tok.decode(probs, (bad, 16.0, 16.0), (1.0, 1.0, 1.0))
    with torch.no_grad():  # the valid call still gives the input's grid
        assert tok.decode(probs, ts, (1.0, 1.0, 1.0)).shape == (1, 1, 16, 32, 32)


def test_decode_refuses_wrong_rank_or_codebook_size():
    tok = _tok()
    k = tok.codebook_size
    with pytest.raises(InputError, match=r"shape \(B, d, h, w, K\), got \(1, 2, 2, " + str(k) + r"\)"):
        tok.decode(torch.rand(1, 2, 2, k), (16.0, 16.0, 16.0), (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match=f"have {k + 1} codes, this tokenizer's codebook has {k}"):
        tok.decode(torch.rand(1, 1, 2, 2, k + 1), (16.0, 16.0, 16.0), (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="empty axis"):
        tok.decode(torch.rand(1, 0, 2, 2, k), (16.0, 16.0, 16.0), (1.0, 1.0, 1.0))


@pytest.mark.parametrize(
    "layer,call",
    [
        (SACDownsample(1, 4, 2), lambda m, x: m(x, (1.0, 1.0, 1.0))),
        (SACConv(1, 4), lambda m, x: m(x, (1.0, 1.0, 1.0))),
        (SACUpsample(1, 4, 2), lambda m, x: m(x, (2.0, 2.0, 2.0), 1.0)),
        (SACMaxPool(2), lambda m, x: m(x, (1.0, 1.0, 1.0))),
    ],
)
def test_sac_layers_refuse_4d_tensors(layer, call):
    with pytest.raises(InputError, match=r"needs a 5D tensor \(B, C, D, H, W\), got shape \(1, 4, 4, 4\)"):
        call(layer, torch.zeros(1, 4, 4, 4))
    y, _ = call(layer, torch.zeros(1, 1, 4, 4, 4))  # the same data with its batch axis is fine
    assert y.ndim == 5


def test_build_perceptual_refuses_unsafe_or_corrupt_files_with_a_model_error(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("never",))

    evil = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": torch.zeros(1), "x": Evil()}, evil)
    with pytest.raises(ModelError, match="refusing to load .*global 'print'"):
        build_perceptual(evil)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(ModelError, match="refusing to load"):
        build_perceptual(raw)
    broken = tmp_path / "vgg16.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="cannot read"):
        build_perceptual(broken)
    other = tmp_path / "other.pt"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, other)
    with pytest.raises(ModelError, match="not a VGG16 weights file"):
        build_perceptual(other)
