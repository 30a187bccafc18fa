"""Training crops of ``pumit train segment``: mirroring augmentation (``mirror_prob``, ``mirror_axes``).

Image and label must be mirrored together, on the axes asked for only, with the probability asked for;
``mirror_prob`` 0 must reproduce the un-augmented crops exactly (the reported runs), and bad values and
side-named labels on a mirrored Left-Right axis must be told to the user."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pumit.data.manifest import ProcessedRecord
from pumit.errors import InputError
from pumit.training.datamodules import SegmentationCrops, SegmentationDataModule
from pumit.training.options import resolve_config

SHAPE = (12, 16, 20)  # (D, H, W): the crops below are the whole volume, so a mirror is exactly torch.flip


def _record(tmp_path: Path, name: str = "case") -> ProcessedRecord:
    """A volume whose every voxel differs (so any flip is visible) and a label that is a function of the image."""
    image = np.linspace(-1.0, 1.0, int(np.prod(SHAPE)), dtype=np.float32).reshape(1, *SHAPE)
    label = (np.arange(int(np.prod(SHAPE))).reshape(SHAPE) % 3).astype(np.uint8)
    np.save(tmp_path / f"{name}_img.npy", image.astype(np.float16))
    np.save(tmp_path / f"{name}_lab.npy", label)
    return ProcessedRecord(id=name, image=str(tmp_path / f"{name}_img.npy"), modality="mri", spacing=(3.0, 1.0, 1.0),
                           shape=(1, *SHAPE), planar=False, da=1, split="train", dataset="t", intensity={},
                           stats={}, label=str(tmp_path / f"{name}_lab.npy"), label_values=[0, 1, 2])


def _samples(ds: SegmentationCrops, n: int) -> list[dict]:
    torch.manual_seed(0)
    return [ds[i] for i in range(n)]


def test_mirror_prob_zero_is_the_unaugmented_crop(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    plain = _samples(SegmentationCrops([rec], SHAPE, samples_per_volume=4, seed=3), 4)
    zero = _samples(SegmentationCrops([rec], SHAPE, samples_per_volume=4, seed=3, mirror_prob=0.0), 4)
    image = torch.from_numpy(np.load(rec.image).astype(np.float32))
    for a, b in zip(plain, zero, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert torch.equal(a["image"], image)  # whole-volume crop, not mirrored


@pytest.mark.parametrize("axes", [(2,), (0, 1), (0, 1, 2)])
def test_mirror_prob_one_flips_image_and_label_on_those_axes_only(tmp_path: Path, axes: tuple[int, ...]) -> None:
    rec = _record(tmp_path)
    image = torch.from_numpy(np.load(rec.image).astype(np.float32))
    label = torch.from_numpy(np.load(rec.label).astype(np.int64))
    s = _samples(SegmentationCrops([rec], SHAPE, seed=1, mirror_prob=1.0, mirror_axes=axes), 1)[0]
    assert torch.equal(s["image"], torch.flip(image, [a + 1 for a in axes]))
    assert torch.equal(s["label"], torch.flip(label, list(axes)))  # the label went with its voxel
    assert s["image"].shape == (1, *SHAPE) and s["label"].dtype == torch.int64
    assert s["spacing"].tolist() == [3.0, 1.0, 1.0]  # a mirror keeps the (anisotropic) spacing


def test_mirror_prob_half_mirrors_each_axis_about_half_the_time(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    ds = SegmentationCrops([rec], SHAPE, samples_per_volume=400, seed=2, mirror_prob=0.5, mirror_axes=(0, 2))
    label = torch.from_numpy(np.load(rec.label).astype(np.int64))
    counts = {0: 0, 1: 0, 2: 0}
    for s in _samples(ds, 400):
        img = s["image"][0]  # the image increases along every axis: reversed where its first slice is larger
        flipped = [a for a in range(3) if img.select(a, 0).sum() > img.select(a, SHAPE[a] - 1).sum()]
        for axis in flipped:
            counts[axis] += 1
        assert torch.equal(s["label"], torch.flip(label, flipped))  # the label went with the image
    assert counts[1] == 0  # H is not in mirror_axes
    for axis in (0, 2):  # binomial(400, 0.5): 200 +- 10; 140..260 is 6 sd
        assert 140 <= counts[axis] <= 260, counts


def test_bad_mirror_options_are_input_errors(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    with pytest.raises(InputError, match="mirror_prob must be between 0 and 1"):
        SegmentationCrops([rec], SHAPE, mirror_prob=1.5)
    with pytest.raises(InputError, match="mirror_axes are model axes 0"):
        SegmentationCrops([rec], SHAPE, mirror_prob=0.5, mirror_axes=(3,))
    with pytest.raises(InputError, match="bad value"):
        resolve_config("segment", overrides={"mirror_axes": "x,y"})
    cfg = resolve_config("segment", overrides={"mirror_prob": "-0.1", "data": str(tmp_path / "absent")})
    with pytest.raises(InputError, match="mirror_prob must be between 0 and 1"):  # before the data is read
        SegmentationDataModule(cfg, tmp_path / "work").prepare()


def test_options_reach_the_training_crops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = resolve_config("segment", overrides={"mirror_prob": "0.5", "mirror_axes": "0,1,2", "seed": 0})
    assert cfg["mirror_prob"] == 0.5 and cfg["mirror_axes"] == (0, 1, 2)
    assert resolve_config("segment")["mirror_prob"] == 0.0  # off unless asked for: reported runs unchanged
    dm = SegmentationDataModule(cfg, tmp_path / "work")
    dm._train_records = [_record(tmp_path)]  # what prepare() leaves; prepare itself is covered by the CLI tests
    dm.labels = {"0": "background", "1": "Hippocampus_L", "2": "Right-Amygdala"}
    with caplog.at_level(logging.WARNING, logger="pumit.training.datamodules"):
        dm.set_roi(SHAPE)
    assert dm.train_set.mirror_prob == 0.5 and dm.train_set.mirror_axes == (0, 1, 2)
    assert "swaps sides" in caplog.text and "2 label name(s)" in caplog.text
    caplog.clear()
    dm.cfg = dict(cfg, mirror_axes=(0, 1))  # Left-Right left out: no warning
    with caplog.at_level(logging.WARNING, logger="pumit.training.datamodules"):
        dm.set_roi(SHAPE)
    assert "swaps sides" not in caplog.text and dm.train_set.mirror_axes == (0, 1)
    dm.cfg = dict(cfg, mirror_axes=())  # an empty list: no axis is mirrored (not every axis)
    dm.set_roi(SHAPE)
    assert dm.train_set.mirror_axes == ()
