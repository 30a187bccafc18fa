"""Each LightningModule fits one fixed batch of real data: after ~30 steps the loss is below 0.7 x its start."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from pumit.intensity import IntensitySpec, normalize
from training_helpers import TINY_SEG, TINY_VIT, shared_data_dir, tiny_cfg, tiny_tokenizer

STEPS = 30
CONSTANT_LR = dict(warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0)


class _Fixed(torch.utils.data.Dataset):
    def __init__(self, batch: dict, n: int):
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return self.batch


class _Record(pl.Callback):
    def __init__(self, key: str):
        self.key, self.values = key, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values.append(float(trainer.callback_metrics[self.key]))


def _fit(module: pl.LightningModule, batch: dict, key: str = "train/loss") -> list[float]:
    rec = _Record(key)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=STEPS, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[rec])
    loader = torch.utils.data.DataLoader(_Fixed(batch, STEPS), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == STEPS
    return rec.values


def _hippo_batch() -> dict:
    d = shared_data_dir() / "msd_task04_hippocampus"
    if not d.is_dir():
        pytest.skip(f"MSD hippocampus data not found at {d}")
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "imagesTr" / "hippocampus_001.nii.gz")))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "labelsTr" / "hippocampus_001.nii.gz")))
    img, _ = normalize(img, IntensitySpec(scheme="zscore"))
    zc, yc, xc = (int(v.mean()) for v in np.nonzero(lab))
    sl = tuple(slice(max(c - h, 0), max(c - h, 0) + 2 * h) for c, h in zip((zc, yc, xc), (8, 16, 16)))
    x = torch.from_numpy(np.ascontiguousarray(img[sl]))[None, None].float()
    y = torch.from_numpy(np.ascontiguousarray(lab[sl]).astype(np.int64))[None]
    assert x.shape[2:] == (16, 32, 32)
    return {"image": x, "label": y, "spacing": torch.ones(1, 3, dtype=torch.float64),
            "modality": torch.tensor([2]), "da": torch.tensor([0])}


def _adrenal_batch() -> dict:
    """8 AdrenalMNIST3D masks: the 4 largest hyperplasia and the 4 smallest normal glands (a separable batch, so
    that a randomly initialised [CLS] feature breaks symmetry within ~30 steps)."""
    p = shared_data_dir() / "adrenalmnist3d" / "adrenalmnist3d.npz"
    if not p.is_file():
        pytest.skip(f"AdrenalMNIST3D not found at {p}")
    with np.load(p) as z:
        y, imgs = z["train_labels"][:, 0], z["train_images"]
    vol = (imgs > 127).reshape(len(y), -1).sum(1)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    idx = np.concatenate([pos[np.argsort(-vol[pos])[:4]], neg[np.argsort(vol[neg])[:4]]])
    x = torch.from_numpy(imgs[idx].astype(np.float32) / 127.5 - 1.0)[:, None]
    return {"image": x, "target": torch.from_numpy(y[idx].astype(np.int64)),
            "spacing": torch.full((8, 3), 64 / 28, dtype=torch.float64), "modality": torch.ones(8, dtype=torch.long),
            "da": torch.zeros(8, dtype=torch.long)}


def _check(values: list[float]) -> None:
    first, last = values[0], float(np.mean(values[-3:]))
    assert last < 0.7 * first, f"loss did not go down enough: {first:.4f} -> {last:.4f} ({values})"


def test_segmentation_overfits_one_batch() -> None:
    from pumit.training.segmentation import SegmentationModule

    cfg = tiny_cfg("segment", lr=3e-3, roi=(16, 32, 32), **CONSTANT_LR, **TINY_VIT, **TINY_SEG)
    module = SegmentationModule(cfg, {"0": "background", "1": "anterior", "2": "posterior"}, (1.0, 1.0, 1.0))
    _check(_fit(module, _hippo_batch()))


def test_classification_overfits_one_batch() -> None:
    from pumit.training.classification import ClassificationModule

    cfg = tiny_cfg("classify", lr=3e-3, input_size=(32, 32, 32), **CONSTANT_LR, **TINY_VIT)
    _check(_fit(ClassificationModule(cfg, num_classes=2), _adrenal_batch()))


def test_tokenizer_overfits_one_batch() -> None:
    from pumit.training.tokenizer import TokenizerModule

    cfg = tiny_cfg("tokenizer", lr=3e-3, disc_lr=1e-3, perceptual="none", gan_weight=0.0, disc_channels=(8, 16),
                   **CONSTANT_LR)
    batch = _hippo_batch()
    _check(_fit(TokenizerModule(cfg, tokenizer=tiny_tokenizer()), batch, key="train/l1"))


def test_mim_overfits_one_batch() -> None:
    from pumit.training.mim import MIMModule

    tok = tiny_tokenizer()
    tok.quantize.temperature = 0.05  # sharp soft tokens: the cross-entropy can approach 0
    cfg = tiny_cfg("mim", lr=3e-3, mask_ratio=0.55, **CONSTANT_LR, **TINY_VIT)
    torch.manual_seed(0)
    _check(_fit(MIMModule(cfg, tokenizer=tok), _hippo_batch(), key="train/mim"))
