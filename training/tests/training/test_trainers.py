"""A few steps of each job on real data with tiny models: the run folder, checkpoints, logs and the exported,
registered model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from pumit.models import load_pretrained
from pumit.store import ModelStore
from pumit.training.run import run_job
from training_helpers import TINY_VIT, tiny_cfg, tiny_tokenizer


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    files = sorted((run_dir / "logs" / "csv").glob("version_*/metrics.csv"))
    assert files, "no CSV log"
    with open(files[-1]) as f:
        return list(csv.DictReader(f))


def _check_run(run_dir: Path, steps: int) -> dict:
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # plain tensors and Python values only
    assert ckpt["global_step"] == steps
    assert list((run_dir / "logs" / "tensorboard").glob("version_*/events.out.tfevents.*"))
    return ckpt


def test_tokenizer_job(hippo_msd: Path, tmp_path: Path, pumit_home: Path) -> None:
    cfg = tiny_cfg("tokenizer", data=[str(hippo_msd)], output=str(tmp_path / "tok"), name="tiny-tok", channels=(8, 16),
                   codebook_size=32, disc_channels=(8, 16), perceptual="random", crop_tokens=(2, 4), batch_size=2,
                   max_steps=3, gan_threshold=10.0, val_fraction=0.3, limit_val_batches=1, accumulate_grad_batches=2,
                   gradient_clip_val=1.0)
    result = run_job("tokenizer", cfg)
    assert result.global_step == 3  # generator steps (of 2 batches each); the discriminator's steps are not counted
    ckpt = _check_run(result.run_dir, 3)
    assert len(ckpt["optimizer_states"]) == 2
    assert ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] >= 5  # ~2 batches per step
    assert [s["last_epoch"] for s in ckpt["lr_schedulers"]] == [3, 3]  # both schedules stepped once per step
    rows = _metrics(result.run_dir)
    assert any(r.get("train/disc") for r in rows) and any(r.get("train/gan") for r in rows)  # gate open: GAN used
    model = load_pretrained(result.model_dir, "tokenizer")
    assert model.config.channels == (8, 16)
    assert result.model_id == "tiny-tok-v1.0.0"
    assert ModelStore().info("tiny-tok").model_type == "tokenizer"


def test_mim_job_with_universal_objectives(hippo_msd: Path, tmp_path: Path, pumit_home: Path,
                                           tiny_tokenizer_dir: Path) -> None:
    cfg = tiny_cfg("mim", data=[str(hippo_msd)], output=str(tmp_path / "mim"), name="tiny-mim",
                   tokenizer=str(tiny_tokenizer_dir), crop_tokens=(2, 4), batch_size=2, max_steps=3, val_fraction=0.3,
                   modality_adversary=True, scale_classifier=True, limit_val_batches=1, val_check_interval=2,
                   check_val_every_n_epoch=None, **TINY_VIT)
    result = run_job("mim", cfg)
    assert result.global_step == 3
    ckpt = _check_run(result.run_dir, 3)
    assert any(k.startswith("modality_head.") for k in ckpt["state_dict"])
    assert any(k.startswith("scale_head.") for k in ckpt["state_dict"])
    rows = _metrics(result.run_dir)
    for key in ("train/mim", "train/modality", "train/scale", "val/mim"):
        assert any(r.get(key) for r in rows), key
    model = load_pretrained(result.model_dir, "mim")
    assert model.config.codebook_size == 32 and model.config.patch_size == 8
    meta = json.loads((result.model_dir / "config.json").read_text())["meta"]
    assert meta["training"]["tokenizer"] == str(tiny_tokenizer_dir) and meta["training"]["steps"] == 3


def test_mim_tokenizer_stays_frozen(tiny_tokenizer_dir: Path) -> None:
    from pumit.training.mim import MIMModule

    module = MIMModule(tiny_cfg("mim", tokenizer=str(tiny_tokenizer_dir), **TINY_VIT))
    module.train()
    assert not module.tokenizer.training
    assert not any(p.requires_grad for p in module.tokenizer.parameters())
    x = torch.randn(2, 1, 16, 32, 32)
    out = module._losses({"image": x, "spacing": torch.ones(2, 3, dtype=torch.float64),
                          "modality": torch.tensor([2, 2]), "da": torch.tensor([0, 0])})
    out["loss"].backward()
    assert all(p.grad is None for p in module.tokenizer.parameters())


def test_classification_job_adrenal(adrenal_npz: Path, tmp_path: Path, pumit_home: Path, tiny_mim_dir: Path) -> None:
    cfg = tiny_cfg("classify", data=str(adrenal_npz), output=str(tmp_path / "cls"), name="adrenal-tiny",
                   base_model=str(tiny_mim_dir), input_size=(32, 32, 32), batch_size=8, max_epochs=2, lr=1e-3)
    result = run_job("classify", cfg)
    assert result.global_step == 12  # 48 training images / 8 x 2 epochs
    _check_run(result.run_dir, 12)
    assert (result.run_dir / "checkpoints" / "best.ckpt").is_file()
    assert result.best["name"] == "val/auc" and 0.0 <= result.best["value"] <= 1.0
    assert set(result.best["test"]) == {"test/auc", "test/acc"}
    rows = _metrics(result.run_dir)
    assert sum(1 for r in rows if r.get("val/auc")) == 2 and any(r.get("val/acc") for r in rows)
    model = load_pretrained(result.model_dir, "classification")
    meta = model.meta
    assert meta["class_names"] == ["0", "1"] and meta["input"]["size"] == [32, 32, 32]
    assert meta["normalization"]["scheme"] == "photo"
    assert meta["training"]["data"]["counts"] == {"test": 16, "train": 48, "val": 24}
    assert meta["training"]["best_metric"]["name"] == "val/auc"
    x = torch.zeros(1, 1, 28, 28, 28)
    assert model(torch.nn.functional.interpolate(x, size=(32, 32, 32)), (2.0, 2.0, 2.0)).shape == (1, 2)


def test_mim_pools_a_finer_tokenizer_onto_the_vit_patches() -> None:
    """A stride-4 tokenizer teaches a patch-8 ViT: each patch's target is the mean of the 2x2x2 (isotropic) or 1x2x2
    (thick slices: the depth stride follows the spacing) token distributions it covers; other patch sizes are refused."""
    from pumit.errors import InputError
    from pumit.models import TokenizerConfig, UniversalTokenizer
    from pumit.training.mim import MIMModule, pool_token_distributions

    probs = torch.softmax(torch.randn(2, 4, 8, 8, 16), dim=-1)
    pooled = pool_token_distributions(probs, (2, 4, 4))
    assert pooled.shape == (2, 2, 4, 4, 16)
    torch.testing.assert_close(pooled[0, 1, 2, 3], probs[0, 2:4, 4:6, 6:8].reshape(-1, 16).mean(0))
    torch.testing.assert_close(pooled.sum(-1), torch.ones(2, 2, 4, 4))
    with pytest.raises(InputError, match="cannot be pooled"):
        pool_token_distributions(probs, (3, 4, 4))

    torch.manual_seed(0)
    tok = UniversalTokenizer(TokenizerConfig(channels=(8, 16), codebook_size=32, first_stride=2))
    assert tok.total_stride == 4
    module = MIMModule(tiny_cfg("mim", tokenizer="unused", **TINY_VIT), tokenizer=tok)
    for shape, spacing in (((16, 32, 32), (1.0, 1.0, 1.0)), ((4, 32, 32), (5.0, 0.8, 0.8))):
        batch = {"image": torch.randn(2, 1, *shape), "spacing": torch.tensor([spacing] * 2, dtype=torch.float64),
                 "modality": torch.tensor([2, 2]), "da": torch.tensor([0, 0])}
        out = module._losses(batch, torch.Generator().manual_seed(0))
        assert torch.isfinite(out["loss"]) and out["mim"] > 0
    for bad, msg in ((2, "times a power of 2"), (12, "power of 2")):
        with pytest.raises(InputError, match=msg):
            MIMModule(tiny_cfg("mim", tokenizer="unused", **{**TINY_VIT, "patch_size": bad}), tokenizer=tok)


def test_mim_target_temperature_sharpens_without_moving_the_argmax() -> None:
    from pumit.errors import InputError
    from pumit.training.mim import MIMModule, sharpen

    probs = torch.softmax(0.1 * torch.randn(3, 5, 64), dim=-1)  # nearly uniform, like a flat tokenizer's
    sharp = sharpen(probs, 0.1)
    assert torch.equal(sharp.argmax(-1), probs.argmax(-1))
    torch.testing.assert_close(sharp.sum(-1), torch.ones(3, 5))

    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.log()).sum(-1).mean()

    assert entropy(sharp) < entropy(probs) - 0.5
    assert sharpen(probs, 1.0) is probs
    with pytest.raises(InputError, match="target_temperature"):
        MIMModule(tiny_cfg("mim", tokenizer="unused", target_temperature=0.0, **TINY_VIT), tokenizer=tiny_tokenizer())
