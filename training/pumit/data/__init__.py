"""The heterogeneous data pipeline: index → validate → pre-process → dataset + DA batch sampler.

Typical use (see ``docs/data.md``)::

    records, report = index_sources(["/data/Task04_Hippocampus", "/data/adrenalmnist3d.npz"])
    write_manifest("index.jsonl", records)
    validate(records)                                   # label geometry/values, raises LabelError
    processed, report = preprocess_manifest(records, "processed/")
    ds = ProcessedDataset("processed/manifest.jsonl", split="train", crop=CropRule(5, 10, 16), flip_prob=0.5)
    sampler = DABatchSampler(ds.das, batch_size=8, seed=0, num_replicas=world, rank=rank)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_samples, num_workers=4)

Conventions: arrays are ``(C, D, H, W)`` with D the slice axis, spacing ``(thickness, H, W)`` mm
(:mod:`pumit.spacing`).
"""

from pumit.data.crops import CropRule, crop_size_for_da
from pumit.data.dataset import ProcessedDataset, collate_samples
from pumit.data.manifest import (ImageRecord, ProcessedRecord, npz_ref, parse_npz_ref, read_manifest,
                                 read_processed_manifest, select, write_manifest)
from pumit.modality import MODALITIES, canonical_modality, modality_id
from pumit.data.preprocess import foreground_box, preprocess_manifest, preprocess_record, shrink_in_plane
from pumit.data.report import Report
from pumit.data.sampler import DABatchSampler
from pumit.data.sources import index_sources
from pumit.data.splits import hash_split
from pumit.data.validate import LabelError, validate

__all__ = [
    "MODALITIES",
    "CropRule",
    "DABatchSampler",
    "ImageRecord",
    "LabelError",
    "ProcessedDataset",
    "ProcessedRecord",
    "Report",
    "canonical_modality",
    "collate_samples",
    "crop_size_for_da",
    "foreground_box",
    "hash_split",
    "index_sources",
    "modality_id",
    "npz_ref",
    "parse_npz_ref",
    "preprocess_manifest",
    "preprocess_record",
    "read_manifest",
    "read_processed_manifest",
    "select",
    "shrink_in_plane",
    "validate",
    "write_manifest",
]
