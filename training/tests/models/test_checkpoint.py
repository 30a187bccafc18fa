"""save_pretrained / load_pretrained, the published-checkpoint loader, and 2D→3D inflation."""

import json
import pickle

import pytest
import torch

from pumit.errors import ModelError
from pumit.models import (
    SegmenterConfig,
    SpadViTMIM,
    SpadViTSegmenter,
    TokenizerConfig,
    UniversalTokenizer,
    ViTConfig,
    inflate_pos_embed,
    load_pretrained,
    load_pumit_vit,
    read_record,
    save_pretrained,
    save_single_file,
)
from pumit.models.convert import convert_pumit_vit_state_dict, load_pumit_tokenizer


def _seg():
    cfg = SegmenterConfig(vit=ViTConfig(embed_dim=32, depth=4, num_heads=2, patch_size=8), num_classes=3, adapter_channels=(8, 8, 8, 8), stem_channels=(4,))
    return SpadViTSegmenter(cfg).eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _seg()
    save_pretrained(model, tmp_path / "m", meta={"labels": {"0": "background", "1": "a", "2": "b"}})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    record = json.loads((tmp_path / "m" / "config.json").read_text())
    assert record["model_type"] == "segmentation" and record["meta"]["labels"]["2"] == "b"
    loaded = load_pretrained(tmp_path / "m", "segmentation")
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, (1, 1, 1)), model(x, (1, 1, 1)))
    save_single_file(model, tmp_path / "one.safetensors", meta={"name": "x"})
    assert read_record(tmp_path / "one.safetensors")["meta"]["name"] == "x"
    with torch.no_grad():
        torch.testing.assert_close(load_pretrained(tmp_path / "one.safetensors")(x, (1, 1, 1)), model(x, (1, 1, 1)))


def test_load_errors_are_clear(tmp_path):
    save_pretrained(UniversalTokenizer(TokenizerConfig.preset("tiny")), tmp_path / "tok")
    with pytest.raises(ModelError, match="is a tokenizer model, but a segmentation model is needed"):
        load_pretrained(tmp_path / "tok", "segmentation")
    with pytest.raises(ModelError, match="already exists"):
        save_pretrained(UniversalTokenizer(TokenizerConfig.preset("tiny")), tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelError, match="corrupt or truncated"):
        load_pretrained(tmp_path / "tok")
    with pytest.raises(ModelError, match="not found"):
        load_pretrained(tmp_path / "nope")
    # config and weights that disagree
    save_pretrained(_seg(), tmp_path / "seg")
    rec = json.loads((tmp_path / "seg" / "config.json").read_text())
    rec["config"]["num_classes"] = 5
    (tmp_path / "seg" / "config.json").write_text(json.dumps(rec))
    with pytest.raises(ModelError, match="do not match"):
        load_pretrained(tmp_path / "seg")


def published_vit_state(depth: int = 2, dim: int = 768, hidden: int = 2048, codebook: int = 1024) -> dict[str, torch.Tensor]:
    """A state dict with the published ``pumit-b.ckpt`` key names and ViT-B shapes (fewer blocks to stay fast)."""
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    sd = {
        "cls_token": r(1, 1, dim),
        "pos_embed": r(1, dim, 5, 10, 10),
        "mask_token": r(1, 1, dim),
        "patch_embed.proj.weight": r(dim, 3, 16, 16, 16),
        "patch_embed.proj.bias": r(dim),
        "norm.weight": 1 + r(dim),
        "norm.bias": r(dim),
        "mim_head.0.weight": r(dim, dim),
        "mim_head.0.bias": r(dim),
        "mim_head.2.weight": r(codebook, dim),
        "mim_head.2.bias": r(codebook),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        for n in ("norm1", "norm2"):
            sd[b + n + ".weight"], sd[b + n + ".bias"] = 1 + r(dim), r(dim)
        for n in ("q_proj", "k_proj", "v_proj"):
            sd[b + f"attn.{n}.weight"] = r(dim, dim)
        sd[b + "attn.q_bias"], sd[b + "attn.v_bias"] = r(dim), r(dim)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = r(dim, dim), r(dim)
        for n in ("w1", "w2"):
            sd[b + f"mlp.{n}.weight"], sd[b + f"mlp.{n}.bias"] = r(hidden, dim), r(hidden)
        sd[b + "mlp.ffn_ln.weight"], sd[b + "mlp.ffn_ln.bias"] = 1 + r(hidden), r(hidden)
        sd[b + "mlp.w3.weight"], sd[b + "mlp.w3.bias"] = r(dim, hidden), r(dim)
    return sd


def test_published_vit_checkpoint_loads_strictly(tmp_path):
    sd = published_vit_state()
    ckpt = tmp_path / "pumit-b.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "global_step": 300000}, ckpt)
    model = load_pumit_vit(ckpt, input_convention="signed")  # the authors' fine-tuning convention: channel-sum fold
    cfg = model.config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.hidden, cfg.codebook_size, cfg.abs_pos_grid) == (768, 2, 12, 2048, 1024, (5, 10, 10))
    torch.testing.assert_close(model.vit.blocks[1].attn.q_bias, sd["blocks.1.attn.q_bias"])
    torch.testing.assert_close(model.mim_head[2].weight, sd["mim_head.2.weight"])
    # RGB filters folded into one grey channel: a grey image replicated to RGB gives the same response
    torch.testing.assert_close(model.vit.patch_embed.proj.weight, sd["patch_embed.proj.weight"].sum(1, keepdim=True))
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        ref = torch.nn.functional.conv3d(x.expand(-1, 3, -1, -1, -1), sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16)
        ours, _ = model.vit.patch_embed.proj(x, (1, 1, 1))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    converted = convert_pumit_vit_state_dict(sd)
    assert set(converted) == set(SpadViTMIM(cfg).state_dict())


def test_published_loader_refuses_pickled_objects_and_wrong_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": {}, "hook": Evil()}, f)
    with pytest.raises(ModelError, match="weights_only"):
        load_pumit_vit(bad)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.0.weight": torch.zeros(2)}}, other)
    with pytest.raises(ModelError, match="no 'cls_token'"):
        load_pumit_vit(other)


def test_inflate_pos_embed_to_3d_grid():
    pos2d = torch.randn(1, 14 * 14, 8)
    pos3d = inflate_pos_embed(pos2d, (5, 10, 10))
    assert pos3d.shape == (1, 8, 5, 10, 10)
    torch.testing.assert_close(pos3d[:, :, 0], pos3d[:, :, 4])


def test_published_tokenizer_checkpoint_loads(tmp_path):
    """A Fabric dict with the published layout (encoder.0 [C, 3, 4, 4, 4], LayerNorm after every downsampling)."""
    rgb = UniversalTokenizer(TokenizerConfig(in_channels=3, channels=(16, 32, 64), codebook_size=128, layout="published")).eval()
    state = rgb.state_dict()
    assert state["encoder.0.weight"].shape == (16, 3, 4, 4, 4) and state["quantize.proj.weight"].shape == (128, 64)
    assert "encoder.4.1.weight" in state and "decoder.6.transposed_conv.weight" in state
    torch.save({"model": state, "discriminator": {}, "step": 10}, tmp_path / "simple-soft.ckpt")
    tok = load_pumit_tokenizer(tmp_path / "simple-soft.ckpt").eval()
    assert tok.config.channels == (16, 32, 64) and tok.codebook_size == 128 and tok.config.in_channels == 1
    torch.testing.assert_close(tok.quantize.embedding.weight, state["quantize.embedding.weight"])
    x = torch.rand(1, 1, 16, 32, 32) * 2 - 1
    with torch.no_grad():  # same tokens as the RGB model on the grey image replicated to 3 channels
        torch.testing.assert_close(tok.encode(x, (1, 1, 1))[0], rgb.encode(x.expand(-1, 3, -1, -1, -1), (1, 1, 1))[0], rtol=1e-4, atol=1e-5)
