"""ProcessedDataset + DABatchSampler + collate on a mixed real collection (3D CT, anisotropic CT, CR, US cine)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import CT, CT_VERT, dicom_file, shared_data_dir, subsample
from torch.utils.data import DataLoader

from pumit.data import (CropRule, DABatchSampler, ProcessedDataset, collate_samples, crop_size_for_da,
                        index_sources, modality_id, preprocess_manifest)
from pumit.errors import InputError
from pumit.spacing import PLANAR_THICKNESS

RULE = CropRule(tokens_z=2, tokens_xy=2, patch=16)  # DA0: 32^3, DA2: 8 x 32 x 32, DA5: 1 x 32 x 32


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    aniso = subsample(CT, root / "aniso_ct.nii.gz", "x")
    aniso_lab = subsample(CT_VERT, root / "aniso_vert_msk.nii.gz", "x")
    lines = [{"image": str(CT), "label": str(CT_VERT), "split": "train"},
             {"image": str(aniso), "label": str(aniso_lab), "split": "train"}]
    for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm", "OBXXXX1A_2frame.dcm"):
        shutil.copy(dicom_file(name), root / name)
        lines.append({"image": str(root / name), "split": "train"})
    (root / "list.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    sources = [root / "list.jsonl"]
    npz = shared_data_dir() / "adrenalmnist3d" / "adrenalmnist3d.npz"
    records, _ = index_sources(sources)
    if npz.is_file():
        adrenal, _ = index_sources([npz])
        records += [r for r in adrenal if r.split == "val"][:6]
    preprocess_manifest(records, root / "out", max_side=48)
    return root / "out" / "manifest.jsonl"


def test_crop_rule() -> None:
    assert crop_size_for_da(0, tokens_z=5, tokens_xy=10) == (80, 160, 160)
    assert crop_size_for_da(2, tokens_z=5, tokens_xy=10) == (20, 160, 160)
    assert crop_size_for_da(4, tokens_z=5, tokens_xy=10) == (5, 160, 160)
    assert crop_size_for_da(5, tokens_z=5, tokens_xy=10) == (1, 160, 160)  # 2D: depth 1
    assert RULE(2) == (8, 32, 32)
    with pytest.raises(InputError):
        crop_size_for_da(6, tokens_z=1, tokens_xy=1)


def test_samples(mixed: Path) -> None:
    ds = ProcessedDataset(mixed, crop=RULE, flip_prob=0.5)
    assert sorted(set(ds.das)) == [0, 2, 5]
    for i, rec in enumerate(ds.records):
        s = ds[i]
        assert s["image"].dtype == torch.float32 and s["image"].shape[1:] == RULE(rec.da)
        assert s["image"].shape[0] == rec.shape[0]
        assert s["image"].min() >= -1 and s["image"].max() <= 1
        assert s["spacing"].dtype == torch.float64 and s["spacing"].tolist() == list(rec.spacing)
        assert s["modality"] == modality_id(rec.modality) and s["da"] == rec.da
        if rec.label:
            assert s["label"].dtype == torch.int64 and s["label"].shape == RULE(rec.da)
        if rec.target:
            assert s["target"].dtype == torch.int64
        if rec.planar:
            assert s["spacing"][0] == PLANAR_THICKNESS and s["da"] == 5


def test_center_crop_flip_and_pad(mixed: Path) -> None:
    plain = ProcessedDataset(mixed, split="train", crop=RULE, crop_mode="center")
    i = next(k for k, r in enumerate(plain.records) if r.label and r.da == 2)
    rec = plain.records[i]
    a, b = plain[i], plain[i]
    assert torch.equal(a["image"], b["image"])  # center crop: deterministic
    full = np.load(rec.image, mmap_mode="r")
    d0 = (full.shape[1] - 8) // 2 if full.shape[1] >= 8 else 0
    h0, w0 = (full.shape[2] - 32) // 2, (full.shape[3] - 32) // 2
    np.testing.assert_allclose(a["image"][0].numpy(), full[0, d0:d0 + 8, h0:h0 + 32, w0:w0 + 32].astype(np.float32))
    flipped = ProcessedDataset(mixed, crop=RULE, crop_mode="center", flip_prob=1.0)[i]
    assert torch.equal(flipped["image"], a["image"].flip(1, 2, 3))
    assert torch.equal(flipped["label"], a["label"].flip(0, 1, 2))
    assert torch.equal(flipped["spacing"], a["spacing"])
    # a crop larger than the image is padded with -1 (image) and 0 (label)
    big = ProcessedDataset(mixed, crop=CropRule(tokens_z=8, tokens_xy=8, patch=16), crop_mode="center")
    j = next(k for k, r in enumerate(big.records) if r.label and r.da == 0)
    s = big[j]
    assert s["image"].shape[1:] == (128, 128, 128) and s["image"][0, 0, 0, 0] == -1 and s["label"][0, 0, 0] == 0


def test_random_crops_reproducible(mixed: Path) -> None:
    ds = ProcessedDataset(mixed, crop=CropRule(tokens_z=1, tokens_xy=1, patch=16), seed=3)
    i = next(k for k, r in enumerate(ds.records) if r.da == 0 and r.label)
    torch.manual_seed(0)
    first = [ds[i]["image"] for _ in range(4)]
    torch.manual_seed(0)
    again = [ds[i]["image"] for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not all(torch.equal(first[0], x) for x in first[1:])


def test_loader_with_da_batches(mixed: Path) -> None:
    ds = ProcessedDataset(mixed, crop=RULE, flip_prob=0.5, channels=3)
    sampler = DABatchSampler(ds.das, batch_size=2, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_samples, num_workers=0)
    seen = []
    for batch in loader:
        b = batch["image"].shape[0]
        assert batch["image"].shape[1:] == (3, *RULE(int(batch["da"][0])))
        assert batch["spacing"].shape == (b, 3) and batch["modality"].shape == (b,)
        assert len(set(batch["da"].tolist())) == 1
        seen += batch["id"]
    assert sorted(seen) == sorted(r.id for r in ds.records)
    grey = ProcessedDataset(mixed, channels=1, crop=RULE)
    k = next(k for k, r in enumerate(grey.records) if r.shape[0] == 3)
    assert grey[k]["image"].shape[0] == 1


def test_collate_refuses_mixed_shapes(mixed: Path) -> None:
    ds = ProcessedDataset(mixed, crop=RULE)
    i = ds.das.index(0)
    j = ds.das.index(5)
    with pytest.raises(InputError, match="DABatchSampler"):
        collate_samples([ds[i], ds[j]])
