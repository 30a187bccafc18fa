"""Torch dataset over a processed manifest: lazy memory-mapped reads, crops sized per DA, and a collate.

A sample is a dict:

* ``"image"``: ``(C, D, H, W)`` float32 tensor in ``[-1, 1]`` (D = slice axis);
* ``"spacing"``: ``(3,)`` float64 tensor, mm, ``(thickness, in-plane H, in-plane W)``; 2D images have
  thickness :data:`~pumit.spacing.PLANAR_THICKNESS`;
* ``"modality"``: int id (:data:`pumit.modality.MODALITIES`);
* ``"da"``: int, :func:`pumit.spacing.degree_of_anisotropy` of the spacing;
* ``"label"`` (segmentation items): ``(D, H, W)`` int64 tensor;
* ``"target"`` (classification items): ``(K,)`` int64 tensor;
* ``"id"``: the item id (str).

Intensities were normalized per whole image during pre-processing (:mod:`pumit.data.preprocess`, with
:func:`pumit.intensity.normalize`; the spec and stats are in the record), so a crop is never normalized
with its own statistics. Crops and flips do not change the spacing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from monai.data.utils import get_random_patch, get_valid_patch_size
from monai.transforms import CenterSpatialCrop, Flip, SpatialPad
from torch.utils.data import Dataset

from pumit.data.crops import CropRule
from pumit.data.manifest import ProcessedRecord, read_processed_manifest, select
from pumit.modality import modality_id
from pumit.errors import InputError

CropMode = Literal["random", "center", "none"]

#: Value used to pad images smaller than the crop: the bottom of the normalized range (background).
PAD_VALUE = -1.0


class ProcessedDataset(Dataset):
    """Samples of a processed manifest (see the module docstring for the sample dict).

    Args:
        manifest: ``OUTDIR/manifest.jsonl`` of ``pumit data preprocess``, or its records.
        split: keep only this split / these splits (None: all).
        datasets: keep only these dataset names (None: all).
        crop: crop size rule per DA (:class:`~pumit.data.crops.CropRule`); None = whole images.
        crop_mode: ``random`` (training), ``center`` (validation) or ``none``; images smaller than the
            crop are padded symmetrically with :data:`PAD_VALUE` (labels with 0).
        flip_prob: probability of flipping each spatial axis (D, H, W) independently (training).
        channels: convert every image to this many channels (1: channel mean; 3: grey repeated) so that
            grey and RGB images can share a batch; None keeps them.
        seed: offset mixed into the per-item random draws (crops, flips), which come from torch's
            global RNG (seeded per DataLoader worker), so runs are reproducible under ``torch.manual_seed``.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | Sequence[ProcessedRecord],
        *,
        split: str | Sequence[str] | None = None,
        datasets: Sequence[str] | None = None,
        crop: CropRule | None = None,
        crop_mode: CropMode = "random",
        flip_prob: float = 0.0,
        channels: int | None = None,
        seed: int = 0,
    ) -> None:
        records = read_processed_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
        self.records: list[ProcessedRecord] = select(records, split=split, datasets=datasets)
        if crop_mode not in ("random", "center", "none"):
            raise InputError(f"crop_mode must be random, center or none, got {crop_mode!r}")
        if channels not in (None, 1, 3):
            raise InputError(f"channels must be None, 1 or 3, got {channels}")
        self.crop = crop
        self.crop_mode: CropMode = crop_mode if crop is not None else "none"
        self.flip_prob = float(flip_prob)
        self.channels = channels
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def das(self) -> list[int]:
        """DA of every item, in order: what :class:`~pumit.data.sampler.DABatchSampler` buckets by."""
        return [r.da for r in self.records]

    def crop_size(self, index: int) -> tuple[int, int, int] | None:
        """Crop size ``(D, H, W)`` of item ``index`` (None when whole images are returned)."""
        if self.crop is None or self.crop_mode == "none":
            return None
        return self.crop(self.records[index].da)

    def _random(self) -> np.random.RandomState:
        """A generator for one item, drawn from torch's global RNG: reproducible under
        ``torch.manual_seed`` / ``lightning.seed_everything(workers=True)``, and different in every
        DataLoader worker (which torch seeds per worker and epoch)."""
        draw = int(torch.randint(0, 2**31 - 1, (1,)).item())
        return np.random.RandomState((draw + self.seed * 1_000_003) % (2**32))

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        image = np.load(rec.image, mmap_mode="r")  # (C, D, H, W) float16, memory-mapped
        label = np.load(rec.label, mmap_mode="r") if rec.label else None  # (D, H, W)
        size = self.crop_size(index)
        rng = self._random() if (size is not None and self.crop_mode == "random") or self.flip_prob > 0 else None
        if size is not None:
            spatial = image.shape[1:]
            if self.crop_mode == "random":
                slices = get_random_patch(spatial, get_valid_patch_size(spatial, size), rng)
            else:
                slices = CenterSpatialCrop(size).compute_slices(spatial)
            image = image[(slice(None),) + tuple(slices)]  # only the crop is read from disk
            if label is not None:
                label = label[tuple(slices)]
        img = torch.from_numpy(np.asarray(image, dtype=np.float32))
        lab = torch.from_numpy(np.asarray(label).astype(np.int64))[None] if label is not None else None
        if size is not None:
            img = SpatialPad(size, method="symmetric", value=PAD_VALUE)(img)
            if lab is not None:
                lab = SpatialPad(size, method="symmetric", value=0)(lab)
        if rng is not None and self.flip_prob > 0:
            axes = [a for a in range(3) if rng.random_sample() < self.flip_prob]
            if axes:
                img = Flip(spatial_axis=axes)(img)
                if lab is not None:
                    lab = Flip(spatial_axis=axes)(lab)
        img = _as_plain(img).clamp_(-1.0, 1.0)
        if self.channels is not None and img.shape[0] != self.channels:
            img = img.mean(0, keepdim=True) if self.channels == 1 else img.mean(0, keepdim=True).expand(3, -1, -1, -1)
            img = img.contiguous()
        sample: dict[str, Any] = {
            "image": img,
            "spacing": torch.tensor(rec.spacing, dtype=torch.float64),
            "modality": modality_id(rec.modality),
            "da": rec.da,
            "id": rec.id,
        }
        if lab is not None:
            sample["label"] = _as_plain(lab)[0].long()
        if rec.target is not None:
            sample["target"] = torch.tensor(rec.target, dtype=torch.int64)
        return sample


def _as_plain(t: torch.Tensor) -> torch.Tensor:
    """A MONAI MetaTensor as a plain tensor (no metadata tracking downstream)."""
    return t.as_tensor() if hasattr(t, "as_tensor") else t


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples of one DA bucket: ``image`` ``(B, C, D, H, W)``, ``spacing`` ``(B, 3)`` (kept per sample),
    ``modality`` / ``da`` ``(B,)`` int64, ``label`` ``(B, D, H, W)`` and ``target`` ``(B, K)`` when every
    sample has one, ``id`` a list. Raises :class:`~pumit.errors.InputError` when image shapes differ
    (batch with :class:`~pumit.data.sampler.DABatchSampler` and a crop rule; pass ``channels`` to mix grey
    and RGB)."""
    if not samples:
        raise InputError("cannot collate an empty batch")
    shapes = {tuple(s["image"].shape) for s in samples}
    if len(shapes) > 1:
        raise InputError(
            f"images of one batch differ in shape {sorted(shapes)}: batch by DA with DABatchSampler and a "
            "CropRule, and set channels= to mix grey and RGB images"
        )
    batch: dict[str, Any] = {
        "image": torch.stack([s["image"] for s in samples]),
        "spacing": torch.stack([s["spacing"] for s in samples]),
        "modality": torch.tensor([s["modality"] for s in samples], dtype=torch.int64),
        "da": torch.tensor([s["da"] for s in samples], dtype=torch.int64),
        "id": [s["id"] for s in samples],
    }
    for key in ("label", "target"):
        if all(key in s for s in samples):
            batch[key] = torch.stack([s[key] for s in samples])
    return batch
