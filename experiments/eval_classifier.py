"""Independent check of an exported `pumit train classify` model: AUC/ACC on the official val and test splits.

    python experiments/eval_classifier.py runs/ref/cls-scratch/model [--data ../shared/data/adrenalmnist3d/adrenalmnist3d.npz]

Same data pipeline as training (prepare_data without foreground crop, ResizeCollate to the model's input size);
prints JSON {split: {auc, acc, n}}. Used to cross-check the trainer's test metrics.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from pumit.data import ProcessedDataset
from pumit.models import load_pretrained
from pumit.training.common import batch_spacing
from pumit.training.datamodules import ResizeCollate, prepare_data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data", default="../shared/data/adrenalmnist3d/adrenalmnist3d.npz")
    a = ap.parse_args()
    cfg = json.loads((Path(a.model) / "config.json").read_text())
    size = tuple(cfg["meta"].get("input", {}).get("size") or cfg["meta"]["training"]["config"]["input_size"])
    model = load_pretrained(a.model, "classification").eval()
    with tempfile.TemporaryDirectory() as tmp:
        records = prepare_data([a.data], tmp, val_fraction=0.1, seed=0, crop_foreground=False)
        out = {}
        for split in ("val", "test"):
            ds = ProcessedDataset([r for r in records if r.split == split], crop_mode="none")
            collate = ResizeCollate(size)
            auc, acc = BinaryAUROC(), BinaryAccuracy()
            with torch.no_grad():
                for i in range(0, len(ds), 64):
                    b = collate([ds[j] for j in range(i, min(i + 64, len(ds)))])
                    p = model(b["image"], batch_spacing(b["spacing"])).float().softmax(-1)[:, 1]
                    auc.update(p, b["target"][:, 0])
                    acc.update(p, b["target"][:, 0])
            out[split] = {"auc": float(auc.compute()), "acc": float(acc.compute()), "n": len(ds)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
