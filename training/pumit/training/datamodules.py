"""LightningDataModules of the training jobs, built on the data pipeline (:mod:`pumit.data`).

Data preparation (:func:`prepare_data`) runs once per run folder, before the model is built:

* a **processed manifest** (``pumit data preprocess`` output, ``.../manifest.jsonl``) is used as is;
* anything else (MSD folder, MedMNIST ``.npz``, image folder, index manifest) is indexed
  (:func:`pumit.data.index_sources`), its labels validated (:func:`pumit.data.validate`: label geometry and
  undeclared values raise :class:`~pumit.data.LabelError`, exit code 2, naming the file) and pre-processed
  (:func:`pumit.data.preprocess_manifest`) into ``OUTPUT/data/<key>/``. A later launch with the same
  sources and options (a resumed run) reuses it. Concurrent processes of one run (DDP ranks) serialise on
  a file lock, so the work is done once.

Every DataLoader uses :class:`pumit.data.DABatchSampler` (one DA per batch, split across ranks itself: the
Trainer runs with ``use_distributed_sampler=False``) and :func:`pumit.data.collate_samples`.

Two small adapters live here because the pipeline does not provide them:

* :func:`resample_records` resamples processed items to the segmentation target spacing (trilinear
  image, nearest label), cached as ``.npy`` next to the processed data;
* :class:`SegmentationCrops` draws ``roi`` crops with a foreground-centred fraction (``foreground_ratio``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import SpatialPad
from torch.utils.data import DataLoader, Dataset

from pumit.data import (
    CropRule,
    DABatchSampler,
    ProcessedDataset,
    ProcessedRecord,
    collate_samples,
    index_sources,
    modality_id,
    preprocess_manifest,
    read_processed_manifest,
    validate,
    write_manifest,
)
from pumit.data.dataset import PAD_VALUE
from pumit.data.preprocess import save_npy
from pumit.errors import InputError
from pumit.intensity import IntensitySpec
from pumit.spacing import Spacing, degree_of_anisotropy, is_planar
from pumit.store.locking import FileLock

log = logging.getLogger(__name__)

#: Item ids are listed in the exported model's ``meta.training.data`` up to this many per split.
MAX_LISTED_IDS = 5000


# ---------------------------------------------------------------------- preparation


def is_processed_manifest(path: str | os.PathLike) -> bool:
    """True for a ``manifest.jsonl`` written by ``pumit data preprocess`` (rows carry ``stats``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.jsonl"
        if not p.is_file():
            return False
    if p.suffix != ".jsonl" or not p.is_file():
        return False
    with open(p, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    return "stats" in json.loads(line)
                except json.JSONDecodeError:
                    return False
    return False


def _check_orientation(records: Sequence[ProcessedRecord], manifest: Path) -> None:
    """Refuse 3D items pre-processed before the canonical orientation existed (they kept the stored voxel
    order, while the exported model would record ``orientation: RAS`` and inference would reorient)."""
    old = [r.id for r in records if not r.planar and "orientation" not in r.source]
    if old:
        raise InputError(f"{manifest} was prepared by an older pumit that kept each file's stored voxel order "
                         f"({len(old)} 3D item(s), e.g. {old[0]}); models now see the canonical orientation: "
                         "run 'pumit data preprocess' on its sources again")


def prepare_data(
    sources: Sequence[str | os.PathLike],
    work_dir: str | os.PathLike,
    *,
    val_fraction: float,
    seed: int = 0,
    intensity: str | None = None,
    medmnist_spacing: float | None = None,
    crop_foreground: bool = True,
    workers: int = 0,
    require_labels: bool = False,
) -> list[ProcessedRecord]:
    """Processed records of ``sources`` (see the module docstring); raises :class:`InputError` for missing data.

    ``require_labels``: every training item must have a label map (segmentation).
    """
    if not sources:
        raise InputError("no training data given: pass --data PATH")
    processed = [s for s in sources if is_processed_manifest(s)]
    if processed and len(processed) != len(sources):
        raise InputError("mix of processed manifests and raw sources in --data: pre-process all of them or none")
    if processed:
        records: list[ProcessedRecord] = []
        for s in processed:
            p = Path(s)
            manifest = p / "manifest.jsonl" if p.is_dir() else p
            part = read_processed_manifest(manifest)
            _check_orientation(part, manifest)
            records += part
        validate(records)
    else:
        resolved = [str(Path(s).expanduser().resolve()) for s in sources]
        for r in resolved:
            if not Path(r).exists():
                raise InputError(f"training data not found: {r}")
        key = {"sources": resolved, "val_fraction": val_fraction, "seed": seed, "intensity": intensity,
               "medmnist_spacing": medmnist_spacing, "crop_foreground": crop_foreground,
               "format": 2}  # 2: canonical orientation (pumit.imageio.plan_layout); format-1 caches kept voxel order
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        out = Path(work_dir) / f"prepared-{digest}"
        from pumit.data.preprocess import clean_stale_preparations

        clean_stale_preparations(Path(work_dir), keep=digest)
        lock_path = Path(work_dir) / f".prepared-{digest}.lock"
        with FileLock(lock_path, timeout=24 * 3600):
            marker = out / "prepared.json"
            if marker.is_file() and (out / "manifest.jsonl").is_file():
                records = read_processed_manifest(out / "manifest.jsonl")
            else:
                if out.exists():  # half-prepared by a killed or failed run: start clean
                    shutil.rmtree(out, ignore_errors=True)
                try:
                    index, report = index_sources(resolved, intensity=intensity, val_fraction=val_fraction, seed=seed,
                                                  medmnist_spacing=medmnist_spacing)
                    if not index:
                        raise InputError(f"no images found in {', '.join(resolved)} ({report.summary()})")
                    validate(index, check_values=True)  # label geometry + declared values, before any training
                    records, report = preprocess_manifest(index, out, crop_foreground=crop_foreground, workers=workers)
                    if report.skipped:
                        log.warning("%s", report.summary())
                    if not records:
                        raise InputError(f"none of the images in {', '.join(resolved)} could be read "
                                         f"({report.summary()})")
                except BaseException:
                    shutil.rmtree(out, ignore_errors=True)  # no half-prepared cache (nor its lock) is left behind
                    lock_path.unlink(missing_ok=True)
                    raise
                marker.write_text(json.dumps(key, indent=2))
            if require_labels and not _labels_have_foreground(records):
                shutil.rmtree(out, ignore_errors=True)  # not kept: fixed label files (same paths) are read again
                lock_path.unlink(missing_ok=True)
                raise _empty_labels_error()
    if require_labels:
        missing = [r.id for r in records if r.split != "test" and not r.label]
        if missing:
            raise InputError(f"{len(missing)} training item(s) have no label map (e.g. {missing[0]}); segmentation "
                             "needs a label for every image")
        if not _labels_have_foreground(records):
            raise _empty_labels_error()
    return records


def _labels_have_foreground(records: Sequence[ProcessedRecord]) -> bool:
    from pumit.data.preprocess import has_foreground

    return has_foreground([r for r in records if r.split != "test"])


def _empty_labels_error() -> InputError:
    return InputError("every label map is empty (background only): there is nothing to learn; check the label "
                      "files (or their label values) before training")


def resample_records(records: Sequence[ProcessedRecord], target: Spacing, out_dir: str | os.PathLike,
                     rtol: float = 0.01) -> list[ProcessedRecord]:
    """Records resampled to ``target`` spacing (mm); items already there (within ``rtol``) are kept.

    Image ``(C, D, H, W)``: trilinear; label ``(D, H, W)``: nearest. 2D items keep their single slice.
    Results are cached in ``out_dir`` (an item is only resampled once).
    """
    out = Path(out_dir)
    result: list[ProcessedRecord] = []
    for rec in records:
        tgt = (rec.spacing[0], target[1], target[2]) if rec.planar else tuple(target)
        if all(abs(a - b) <= rtol * b for a, b in zip(rec.spacing, tgt)):
            result.append(rec)
            continue
        shape = tuple(max(int(round(n * s / t)), 1) for n, s, t in zip(rec.shape[1:], rec.spacing, tgt))
        ds = Path(rec.image).parent.name
        img_path = out / "images" / ds / f"{rec.id}.npy"
        lab_path = out / "labels" / ds / f"{rec.id}.npy" if rec.label else None
        if not img_path.is_file() or (lab_path is not None and not lab_path.is_file()):
            img = torch.from_numpy(np.load(rec.image).astype(np.float32))[None]
            img = F.interpolate(img, size=shape, mode="trilinear", align_corners=False)[0]
            if lab_path is not None:
                lab_np = np.load(rec.label)
                lab = torch.from_numpy(lab_np.astype(np.float32))[None, None]
                lab = F.interpolate(lab, size=shape, mode="nearest-exact")[0, 0].round().numpy().astype(lab_np.dtype)
                save_npy(lab_path, lab)
            save_npy(img_path, img.numpy().astype(np.float16))
        result.append(dataclasses.replace(
            rec, image=str(img_path), label=str(lab_path) if lab_path else None, spacing=tgt,  # type: ignore[arg-type]
            shape=(rec.shape[0],) + shape, da=degree_of_anisotropy(tgt),
            source={**rec.source, "resampled_from": list(rec.spacing)}))
    return result


def median_spacing(records: Sequence[ProcessedRecord]) -> Spacing:
    """Element-wise median spacing (mm) of ``records`` (the segmentation default target)."""
    if not records:
        raise InputError("no training items to compute a median spacing from")
    arr = np.median(np.asarray([r.spacing for r in records], dtype=np.float64), axis=0)
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def ensure_val_split(records: list[ProcessedRecord], val_fraction: float) -> list[ProcessedRecord]:
    """Make sure there is at least one ``val`` item when ``val_fraction > 0`` (the hash split may give none for
    small datasets): the last ``train`` item (by id) is moved to ``val``."""
    if val_fraction <= 0 or any(r.split == "val" for r in records):
        return records
    train = sorted((r for r in records if r.split == "train"), key=lambda r: r.id)
    if len(train) < 2:
        return records
    moved = train[-1].id
    return [dataclasses.replace(r, split="val") if r.id == moved else r for r in records]


def data_summary(sources: Sequence[str], records: Sequence[ProcessedRecord]) -> dict[str, Any]:
    """``meta.training.data``: sources, counts per split and dataset, and item ids (up to a limit)."""
    by_split: dict[str, list[str]] = {}
    for r in records:
        by_split.setdefault(r.split, []).append(r.id)
    return {
        "sources": [str(s) for s in sources],
        "counts": {k: len(v) for k, v in sorted(by_split.items())},
        "datasets": dict(Counter(r.dataset for r in records)),
        "items": {k: sorted(v) for k, v in sorted(by_split.items()) if len(v) <= MAX_LISTED_IDS},
    }


def common_intensity(records: Sequence[ProcessedRecord]) -> dict[str, Any]:
    """The intensity spec shared by ``records``. When they differ (several modalities), the modality-agnostic
    ``percentile`` spec, the paper's universal pre-processing; see :func:`intensity_by_modality` for the rest."""
    specs = {json.dumps(r.intensity, sort_keys=True) for r in records}
    if len(specs) > 1:
        return IntensitySpec(scheme="percentile").to_dict()
    return IntensitySpec.from_dict(records[0].intensity).to_dict()


def intensity_by_modality(records: Sequence[ProcessedRecord]) -> dict[str, dict[str, Any]]:
    """``{modality: spec}`` when ``records`` were normalized with more than one spec (e.g. a tokenizer trained on
    CT windows and MRI z-scores): inference must normalize each input as its modality was in training.
    Empty when one spec covers all. A modality seen with several specs keeps its most frequent one."""
    if len({json.dumps(r.intensity, sort_keys=True) for r in records}) <= 1:
        return {}
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        key = json.dumps(r.intensity, sort_keys=True)
        counts.setdefault(r.modality, {}).setdefault(key, 0)
        counts[r.modality][key] += 1
    return {m: json.loads(max(c, key=c.get)) for m, c in sorted(counts.items())}


# ---------------------------------------------------------------------- datasets


def check_mirroring(mirror_prob: float, mirror_axes: Sequence[int]) -> None:
    """Raise :class:`InputError` unless ``0 <= mirror_prob <= 1`` and every axis is a model axis (0, 1, 2)."""
    if not 0.0 <= float(mirror_prob) <= 1.0:
        raise InputError(f"mirror_prob must be between 0 and 1, got {mirror_prob}")
    bad = [a for a in mirror_axes if int(a) not in (0, 1, 2)]
    if bad:
        raise InputError(f"mirror_axes are model axes 0 (D), 1 (H) and 2 (W), got {bad[0]}")


class SegmentationCrops(Dataset):
    """``roi`` crops of labelled processed items, ``samples_per_volume`` per item per epoch.

    A fraction ``foreground_ratio`` of crops is centred on a random foreground voxel (label > 0), the rest is
    uniform. Smaller volumes are padded (image :data:`~pumit.data.dataset.PAD_VALUE`, label 0). Samples are
    the pipeline's dicts: ``image (C, *roi)``, ``label (*roi)`` int64, ``spacing (3,)``, ``modality``, ``da``, ``id``.

    Mirroring (nnU-Net's cheapest augmentation): each axis of ``mirror_axes`` (model axes ``0 = D``
    Inferior→Superior, ``1 = H`` Posterior→Anterior, ``2 = W`` Left→Right in the canonical orientation) is
    reversed, image and label together, with probability ``mirror_prob``. Spacing is unchanged. With
    ``mirror_prob`` 0 no random number is drawn for it, so earlier runs' crops are reproduced exactly.
    """

    def __init__(self, records: Sequence[ProcessedRecord], roi: Sequence[int], *, samples_per_volume: int = 1,
                 foreground_ratio: float = 0.5, seed: int = 0, max_fg_points: int = 20000,
                 mirror_prob: float = 0.0, mirror_axes: Sequence[int] = (0, 1, 2)):
        if not records:
            raise InputError("no training cases for segmentation")
        check_mirroring(mirror_prob, mirror_axes)
        self.mirror_prob = float(mirror_prob)
        self.mirror_axes = tuple(sorted({int(a) for a in mirror_axes}))
        self.records = list(records)
        self.roi = tuple(int(v) for v in roi)
        self.spv = max(int(samples_per_volume), 1)
        self.fg_ratio = float(foreground_ratio)
        self.seed = int(seed)
        self.max_fg_points = max_fg_points
        self._fg: dict[int, np.ndarray] = {}
        self._rng: np.random.RandomState | None = None
        self._rng_key: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.records) * self.spv

    @property
    def das(self) -> list[int]:
        return [self.records[i % len(self.records)].da for i in range(len(self))]

    def _random(self) -> np.random.RandomState:
        key = (os.getpid(), torch.initial_seed())
        if self._rng is None or self._rng_key != key:
            self._rng = np.random.RandomState((self.seed * 1_000_003 + key[1]) % (2**32))
            self._rng_key = key
        return self._rng

    def _foreground(self, idx: int, label: np.ndarray) -> np.ndarray:
        if idx not in self._fg:
            pts = np.argwhere(np.asarray(label) > 0)
            if len(pts) > self.max_fg_points:
                pts = pts[np.random.RandomState(idx).choice(len(pts), self.max_fg_points, replace=False)]
            self._fg[idx] = pts
        return self._fg[idx]

    def __getitem__(self, index: int) -> dict[str, Any]:
        idx = index % len(self.records)
        rec = self.records[idx]
        image = np.load(rec.image, mmap_mode="r")
        label = np.load(rec.label, mmap_mode="r")
        rng = self._random()
        spatial = np.asarray(image.shape[1:])
        size = np.minimum(np.asarray(self.roi), spatial)
        fg = self._foreground(idx, label) if rng.random_sample() < self.fg_ratio else np.empty((0, 3))
        if len(fg):
            center = fg[rng.randint(len(fg))]
            start = np.clip(center - size // 2, 0, spatial - size)
        else:
            start = np.asarray([rng.randint(0, int(m) + 1) for m in spatial - size])
        sl = tuple(slice(int(a), int(a + b)) for a, b in zip(start, size))
        img = torch.from_numpy(np.asarray(image[(slice(None),) + sl], dtype=np.float32))
        lab = torch.from_numpy(np.asarray(label[sl]).astype(np.int64))[None]
        if tuple(size) != self.roi:
            img = _plain(SpatialPad(self.roi, method="symmetric", value=PAD_VALUE)(img))
            lab = _plain(SpatialPad(self.roi, method="symmetric", value=0)(lab))
        if self.mirror_prob > 0:
            axes = [a for a in self.mirror_axes if rng.random_sample() < self.mirror_prob]
            if axes:
                img = torch.flip(img, [a + 1 for a in axes])
                lab = torch.flip(lab, [a + 1 for a in axes])
        return {"image": img.clamp_(-1.0, 1.0), "label": lab[0].long(),
                "spacing": torch.tensor(rec.spacing, dtype=torch.float64), "modality": modality_id(rec.modality),
                "da": rec.da, "id": rec.id}


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_tensor() if hasattr(t, "as_tensor") else t


class ResizeCollate:
    """Collate that first resizes every ``image (C, D, H, W)`` (trilinear) to ``size`` and scales its spacing,
    so items of different sizes share a batch (classification)."""

    def __init__(self, size: Sequence[int]):
        self.size = tuple(int(v) for v in size)

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out = []
        for s in samples:
            img = s["image"]
            if tuple(img.shape[1:]) != self.size:
                sp = s["spacing"]
                new_sp = torch.stack([sp[i] * img.shape[1 + i] / self.size[i] for i in range(3)])
                if is_planar(sp):
                    new_sp[0] = sp[0]
                img = F.interpolate(img[None].float(), size=self.size, mode="trilinear", align_corners=False)[0]
                s = {**s, "image": img, "spacing": new_sp}
            out.append(s)
        return collate_samples(out)


# ---------------------------------------------------------------------- data modules


class _Base(pl.LightningDataModule):
    """Common loader construction. Subclasses fill ``train_set``/``val_set``/``test_set`` in :meth:`prepare`."""

    val_batch_size: int | None = None

    def __init__(self, cfg: dict[str, Any], work_dir: str | os.PathLike):
        super().__init__()
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.records: list[ProcessedRecord] = []
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.collate: Callable[[Sequence[dict[str, Any]]], dict[str, Any]] = collate_samples

    @property
    def has_val(self) -> bool:
        return self.val_set is not None and len(self.val_set) > 0  # type: ignore[arg-type]

    @property
    def has_test(self) -> bool:
        return self.test_set is not None and len(self.test_set) > 0  # type: ignore[arg-type]

    def summary(self) -> dict[str, Any]:
        src = self.cfg.get("data")
        return data_summary([src] if isinstance(src, str) else list(src or ()), self.records)

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = int(self.cfg.get("num_workers", 0))
        sampler = DABatchSampler(ds.das, batch_size, shuffle=shuffle, seed=int(self.cfg.get("seed", 0)),  # type: ignore[attr-defined]
                                 drop_last=False)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=self.collate, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return self._loader(self.train_set, int(self.cfg["batch_size"]), True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.has_val:
            return []
        return self._loader(self.val_set, self.val_batch_size or int(self.cfg["batch_size"]), False)  # type: ignore[arg-type]

    def test_dataloader(self) -> DataLoader | list:
        if not self.has_test:
            return []
        return self._loader(self.test_set, self.val_batch_size or int(self.cfg["batch_size"]), False)  # type: ignore[arg-type]


class PretrainDataModule(_Base):
    """Tokenizer / MIM data: random crops of ``crop_tokens`` tokens of the model's patch, sized per DA
    (:class:`pumit.data.CropRule`), grey images (``channels`` 1; RGB averaged)."""

    def __init__(self, cfg: dict[str, Any], work_dir: str | os.PathLike, channels: int = 1):
        super().__init__(cfg, work_dir)
        self.channels = channels
        self.patch: int | None = None

    def prepare(self) -> None:
        """Index / validate / pre-process the data (see :func:`prepare_data`)."""
        val_fraction = float(self.cfg["val_fraction"])
        self.records = prepare_data(list(self.cfg["data"]), self.work_dir, val_fraction=val_fraction,
                                    seed=int(self.cfg.get("seed", 0)), workers=int(self.cfg.get("num_workers", 0)))
        self.records = ensure_val_split(self.records, val_fraction)

    def set_patch(self, patch: int) -> None:
        """Build the datasets for a model of in-plane patch/stride ``patch``."""
        tokens = tuple(self.cfg["crop_tokens"])
        if len(tokens) != 2:
            raise InputError(f"crop_tokens must be 2 numbers (depth tokens, in-plane tokens), got {tokens}")
        self.patch = patch
        rule = CropRule(tokens_z=tokens[0], tokens_xy=tokens[1], patch=patch)
        train = [r for r in self.records if r.split == "train"]
        val = [r for r in self.records if r.split == "val"]
        if not train:
            raise InputError("no training items (split 'train') in the data")
        seed = int(self.cfg.get("seed", 0))
        self.train_set = ProcessedDataset(train, crop=rule, crop_mode="random", channels=self.channels, seed=seed)
        self.val_set = ProcessedDataset(val, crop=rule, crop_mode="center", channels=self.channels, seed=seed) if val else None


class ClassificationDataModule(_Base):
    """Classification data (e.g. MedMNIST ``.npz``): whole images resized to ``input_size`` in the collate;
    official ``train``/``val``/``test`` splits when the source has them."""

    def prepare(self) -> None:
        if not self.cfg.get("data"):
            raise InputError("pumit train classify needs --data (a MedMNIST .npz, a processed manifest or a folder)")
        self.records = prepare_data([self.cfg["data"]], self.work_dir, val_fraction=float(self.cfg.get("val_fraction", 0.1)),
                                    seed=int(self.cfg.get("seed", 0)), medmnist_spacing=self.cfg.get("medmnist_spacing"),
                                    crop_foreground=False, workers=int(self.cfg.get("num_workers", 0)))
        self.records = ensure_val_split(self.records, float(self.cfg.get("val_fraction", 0.1)))
        missing = [r.id for r in self.records if r.target is None]
        if missing:
            raise InputError(f"{len(missing)} item(s) have no class target (e.g. {missing[0]}); classification needs "
                             "a target per image (MedMNIST labels, or 'target' in a JSON Lines manifest)")
        if any(len(r.target or []) != 1 for r in self.records):
            raise InputError("multi-label targets are not supported: each image needs exactly one class index")
        targets = sorted({int(r.target[0]) for r in self.records})  # type: ignore[index]
        if targets[0] < 0:
            raise InputError(f"class indices must be >= 0, got {targets[0]}")
        self.num_classes = int(self.cfg.get("num_classes") or max(max(targets) + 1, 2))
        if max(targets) >= self.num_classes:
            raise InputError(f"class index {max(targets)} >= num_classes {self.num_classes}")
        self.in_channels = int(self.records[0].shape[0])
        self.collate = ResizeCollate(tuple(self.cfg["input_size"]))
        by = {s: [r for r in self.records if r.split == s] for s in ("train", "val", "test")}
        if not by["train"]:
            raise InputError("no training items (split 'train') in the data")
        self.train_set = ProcessedDataset(by["train"], crop_mode="none")
        self.val_set = ProcessedDataset(by["val"], crop_mode="none") if by["val"] else None
        self.test_set = ProcessedDataset(by["test"], crop_mode="none") if by["test"] else None
        self.class_counts = dict(Counter(int(r.target[0]) for r in by["train"]))  # type: ignore[index]


class SegmentationDataModule(_Base):
    """Segmentation data: an MSD folder (or manifest) → validated, pre-processed, resampled to the target
    spacing; training crops of ``roi`` (:class:`SegmentationCrops`), validation on whole volumes (batch 1)."""

    val_batch_size = 1

    def prepare(self, base_spacing: Spacing | None = None, base_intensity: str | None = None) -> None:
        """``base_spacing`` / ``base_intensity``: those of a base segmentation model (used unless overridden)."""
        data = self.cfg.get("data")
        if not data:
            raise InputError("pumit train segment needs --data DATASET_DIR (imagesTr/, labelsTr/, dataset.json)")
        check_mirroring(*self._mirroring())  # before any work
        val_fraction = float(self.cfg.get("val_fraction", 0.2))
        records = prepare_data([data], self.work_dir, val_fraction=val_fraction, seed=int(self.cfg.get("seed", 0)),
                               intensity=self.cfg.get("intensity") or base_intensity, require_labels=True,
                               workers=int(self.cfg.get("num_workers", 0)))
        records = [r for r in records if r.split != "test" and r.label]
        records = ensure_val_split(records, val_fraction)
        self.labels = dataset_labels(data, records)
        train = [r for r in records if r.split == "train"]
        if not train:
            raise InputError("no training cases (split 'train') in the data")
        tgt = self.cfg.get("target_spacing")
        self.target_spacing: Spacing = tuple(float(v) for v in tgt) if tgt else (base_spacing or median_spacing(train))  # type: ignore[assignment]
        key = "_".join(f"{v:.4g}" for v in self.target_spacing)
        self.records = resample_records(records, self.target_spacing, self.work_dir / f"resampled-{key}")
        self.in_channels = int(self.records[0].shape[0])
        self.intensity = common_intensity(self.records)
        self.modality = self.records[0].modality
        train = [r for r in self.records if r.split == "train"]
        val = [r for r in self.records if r.split == "val"]
        self.median_shape = tuple(int(v) for v in np.median(np.asarray([r.shape[1:] for r in train]), axis=0))
        self._train_records = train
        self.val_set = ProcessedDataset(val, crop_mode="none") if val else None

    def _mirroring(self) -> tuple[float, tuple[int, ...]]:
        """``(mirror_prob, mirror_axes)`` of the config (an empty axis list means no axis, not every axis)."""
        return float(self.cfg.get("mirror_prob") or 0.0), tuple(self.cfg.get("mirror_axes", (0, 1, 2)))

    def set_roi(self, roi: Sequence[int]) -> None:
        """Build the training crops of size ``roi (D, H, W)`` (chosen by the module for the network's divisor)."""
        self.roi = tuple(int(v) for v in roi)
        mirror_prob, mirror_axes = self._mirroring()
        self.train_set = SegmentationCrops(self._train_records, self.roi,
                                           samples_per_volume=int(self.cfg.get("samples_per_volume", 1)),
                                           foreground_ratio=float(self.cfg.get("foreground_ratio", 0.5)),
                                           seed=int(self.cfg.get("seed", 0)),
                                           mirror_prob=mirror_prob, mirror_axes=mirror_axes)
        if self.train_set.mirror_prob > 0 and 2 in self.train_set.mirror_axes:
            sided = sorted(n for n in self.labels.values() if _names_a_side(n))
            if sided:
                log.warning("mirroring axis 2 (W, Left-Right) swaps sides, but %d label name(s) name one (e.g. %r): "
                            "those labels become wrong on mirrored crops; set mirror_axes to 0,1", len(sided), sided[0])


def _names_a_side(name: str) -> bool:
    """Whether a label name says left or right (``Hippocampus_L``, ``Left-Amygdala``, ``right lung``)."""
    words = [w for w in re.split(r"[^a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower()) if w]
    return any(w in ("l", "r", "left", "right", "lh", "rh") for w in words)


def dataset_labels(data: str | os.PathLike, records: Sequence[ProcessedRecord]) -> dict[str, str]:
    """Label names ``{"0": "background", ...}``: an MSD ``dataset.json``'s ``labels`` when ``data`` is such a
    folder, else the names the manifest carries (indexed from such a file), else ``label_N`` for the declared
    values (background for 0). Values must be ``0..N-1``."""
    names: dict[str, str] = {}
    p = Path(data)
    meta_path = p / "dataset.json" if p.is_dir() else (p if p.name == "dataset.json" else None)
    if meta_path is not None and meta_path.is_file():
        try:
            labels = json.loads(meta_path.read_text(encoding="utf-8")).get("labels") or {}
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"cannot read {meta_path}: {e}") from e
        if isinstance(labels, dict) and all(str(k).strip().isdigit() for k in labels):
            names = {str(int(k)): str(v) for k, v in labels.items()}
        elif isinstance(labels, dict):  # nnU-Net v2 style {"background": 0, ...}
            names = {str(int(v)): str(k) for k, v in labels.items() if not isinstance(v, list | tuple)}
    if not names:  # names carried by the manifest (from the indexed dataset.json), when all records agree
        carried = {json.dumps(r.label_names, sort_keys=True) for r in records if r.label_names}
        if len(carried) == 1:
            names = json.loads(carried.pop())
    if not names:
        values: set[int] = set()
        for r in records:
            values.update(r.label_values or [])
        if not values:
            raise InputError(f"{data} declares no labels: add \"labels\" to dataset.json (e.g. "
                             "{\"0\": \"background\", \"1\": \"organ\"})")
        names = {str(v): ("background" if v == 0 else f"label_{v}") for v in sorted(values)}
    keys = sorted(int(k) for k in names)
    if keys != list(range(len(keys))):
        raise InputError(f"label values of {data} must be 0..N-1 without gaps, got {keys}")
    return {str(k): names[str(k)] for k in keys}


def write_records(path: str | os.PathLike, records: Sequence[ProcessedRecord]) -> Path:
    """Write ``records`` (absolute paths) as a processed manifest (for inspection / re-use)."""
    return write_manifest(path, records)
