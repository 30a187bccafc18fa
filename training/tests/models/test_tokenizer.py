"""Universal tokenizer: soft tokens, prior regularization, spacing through encoder/decoder, losses."""

import math

import pytest
import torch

from pumit.errors import InputError
from pumit.models.losses import TokenizerLoss, build_perceptual
from pumit.models.tokenizer import SoftQuantizer, TokenizerConfig, UniversalTokenizer, entropy, prior_regularization
from pumit.spacing import PLANAR_THICKNESS


def test_soft_token_is_probability_weighted_codebook_mean():
    q = SoftQuantizer(dim=6, codebook_size=5)
    z = torch.randn(2, 6, 1, 2, 3)
    z_q, probs, logits = q(z)
    assert probs.shape == (2, 1, 2, 3, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 1, 2, 3))
    # explicit expectation for one token
    p = probs[1, 0, 1, 2]
    expected = sum(p[k] * q.embedding.weight[k] for k in range(5))
    torch.testing.assert_close(z_q[1, :, 0, 1, 2], expected)
    torch.testing.assert_close(p, torch.softmax(q.proj(z[1, :, 0, 1, 2]), -1))


def test_prior_regularization_matches_hand_computed_entropies():
    k = 4
    # two tokens: one-hot on code 0 and uniform
    p = torch.tensor([[1.0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]])
    p_bar = torch.tensor([0.625, 0.125, 0.125, 0.125])
    h_bar = -(0.625 * math.log(0.625) + 3 * 0.125 * math.log(0.125))
    mean_h = (0.0 + math.log(4)) / 2
    reg = prior_regularization(p, diversity_weight=0.5, sharpness_weight=2.0)
    assert reg.diversity_kl.item() == pytest.approx(math.log(k) - h_bar, abs=1e-6)
    assert reg.mean_token_entropy.item() == pytest.approx(mean_h, abs=1e-6)
    assert reg.sharpness_kl.item() == pytest.approx(math.log(k) - mean_h, abs=1e-6)
    assert reg.loss.item() == pytest.approx(0.5 * (math.log(k) - h_bar) - 2.0 * (math.log(k) - mean_h), abs=1e-6)
    # KL(p̄‖U) = log K − H(p̄) identity, checked against the definition
    kl = (p_bar * (p_bar / (1 / k)).log()).sum()
    assert reg.diversity_kl.item() == pytest.approx(kl.item(), abs=1e-6)
    # ideal codebook use: distinct one-hot tokens → diversity 0, sharpness log K (loss minimal)
    ideal = prior_regularization(torch.eye(k))
    assert ideal.diversity_kl.item() == pytest.approx(0, abs=1e-6)
    assert ideal.mean_token_entropy.item() == pytest.approx(0, abs=1e-6)
    collapsed = prior_regularization(torch.tensor([[1.0, 0, 0, 0]] * 4))
    assert collapsed.diversity_kl.item() == pytest.approx(math.log(k), abs=1e-6)
    assert entropy(torch.full((k,), 1 / k)).item() == pytest.approx(math.log(k))


@pytest.mark.parametrize(
    "shape,spacing,grid,token_spacing",
    [
        ((1, 1, 1, 32, 48), (PLANAR_THICKNESS, 0.5, 0.5), (1, 2, 3), (PLANAR_THICKNESS, 8.0, 8.0)),
        ((1, 1, 32, 32, 32), (1.0, 1.0, 1.0), (2, 2, 2), (16.0, 16.0, 16.0)),
        ((1, 1, 8, 32, 32), (4.0, 1.0, 1.0), (2, 2, 2), (16.0, 16.0, 16.0)),
        ((1, 1, 4, 32, 64), (6.0, 0.75, 0.75), (2, 2, 4), (12.0, 12.0, 12.0)),
    ],
)
def test_tokenizer_spacing_round_trip(shape, spacing, grid, token_spacing):
    tok = UniversalTokenizer(TokenizerConfig.preset("tiny"))
    x = torch.rand(shape) * 2 - 1
    out = tok(x, spacing)
    assert out.recon.shape == x.shape
    assert out.probs.shape == (1, *grid, tok.codebook_size)
    assert out.token_spacing == pytest.approx(token_spacing)
    probs, _, ts = tok.encode(x, spacing)
    torch.testing.assert_close(tok.decode(probs, ts, spacing), out.recon)


def test_tokenizer_rejects_bad_shapes():
    tok = UniversalTokenizer(TokenizerConfig.preset("tiny"))
    with pytest.raises(InputError, match="divisible by"):
        tok(torch.zeros(1, 1, 16, 30, 32), (1, 1, 1))
    with pytest.raises(InputError, match="channel"):
        tok(torch.zeros(1, 3, 16, 32, 32), (1, 1, 1))
    with pytest.raises(InputError, match="rank 3"):
        tok(torch.zeros(1, 32, 32), (1, 1, 1))


def test_tokenizer_loss_gradients_reach_every_parameter_and_gan_gate():
    tok = UniversalTokenizer(TokenizerConfig.preset("tiny"))
    loss_fn = TokenizerLoss(perceptual="random", disc_channels=(8, 16, 32))  # threshold 0.025
    x = torch.rand(2, 1, 8, 32, 32) * 2 - 1
    spacing = (4.0, 1.0, 1.0)
    out = tok(x, spacing)
    total, logs = loss_fn.generator_loss(x, out, spacing)
    assert "gan" not in logs and logs["gan_active"] == 0  # gate closed: the disc-loss EMA starts at 0.1 > 0.025
    total.backward()
    missing = [n for n, p in tok.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert all(p.grad is None for p in loss_fn.discriminator.parameters())  # generator step leaves D alone
    # a weak discriminator (hinge loss ≈ 1) keeps the GAN term off
    d_loss, _ = loss_fn.discriminator_loss(x, out.recon, spacing)
    assert d_loss.item() > 0.5 and not loss_fn.gan_active
    # once the discriminator loss is below the threshold, the GAN term is applied
    loss_fn.disc_loss_ema.fill_(0.01)
    loss_fn.disc_loss_last.fill_(0.01)
    _, logs = loss_fn.generator_loss(x, tok(x, spacing), spacing)
    assert "gan" in logs and logs["gan_active"] == 1


def test_perceptual_is_pluggable_and_never_downloads(tmp_path):
    assert build_perceptual("none") is None
    net = build_perceptual("random")
    assert not any(p.requires_grad for p in net.parameters())
    from safetensors.torch import save_file

    state = {f"features.{k}": v.clone() for k, v in net.features.state_dict().items()}
    save_file(state, str(tmp_path / "vgg16.safetensors"))
    loaded = build_perceptual(tmp_path / "vgg16.safetensors")
    torch.testing.assert_close(loaded.features[0].weight, net.features[0].weight)
    from pumit.errors import ModelError

    with pytest.raises(ModelError, match="not found"):
        build_perceptual(tmp_path / "missing.safetensors")


def test_channel_norm_tokenizer_output_does_not_depend_on_the_window() -> None:
    """``norm='channel'``: a crop of the input gives the same reconstruction as the whole input wherever the crop's
    cut is outside the receptive field; GroupNorm (the published block) changes every voxel with the window."""
    x = torch.randn(1, 1, 8, 32, 64)
    diffs = {}
    for norm in ("channel", "group"):
        torch.manual_seed(0)
        t = UniversalTokenizer(TokenizerConfig.preset("tiny", channels=(16,), first_stride=2, codebook_size=32,
                                                      norm=norm)).eval()
        with torch.no_grad():
            whole, crop = t(x, (1.0, 1.0, 1.0))[0], t(x[..., :40], (1.0, 1.0, 1.0))[0]
        diffs[norm] = (whole[..., :16] - crop[..., :16]).abs().max().item()  # 24 voxels from the cut
    assert diffs["channel"] == 0.0 and diffs["group"] > 1e-3, diffs
    saved = TokenizerConfig.preset("tiny", norm="channel").to_dict()
    assert saved["norm"] == "channel" and TokenizerConfig.from_dict(saved).norm == "channel"
    assert TokenizerConfig.from_dict({"channels": [16]}).norm == "group"  # configs saved before the option


@pytest.mark.parametrize("bad", [dict(norm="batch"), dict(norm="channel", layout="published")])
def test_tokenizer_norm_is_checked(bad: dict) -> None:
    with pytest.raises(InputError, match="norm"):
        TokenizerConfig.preset("tiny", **bad)
