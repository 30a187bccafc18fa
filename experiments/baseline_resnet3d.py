"""MONAI 3D ResNet-18 baseline on AdrenalMNIST3D with the same data pipeline and budget as `pumit train classify`.

Same as experiments/configs/classify.yaml: official splits of adrenalmnist3d.npz (28^3) through
pumit.training.datamodules.prepare_data (no foreground crop, photo normalization to [-1, 1]), trilinear resize
to 32^3 (ResizeCollate), DABatchSampler (seeded shuffle), batch 32, 8 epochs, AdamW (lr 5e-4, wd 0.01, no decay
on biases/norms), linear warm-up 30 steps + cosine to 1 % (pumit.training.common.adamw_warmup_cosine),
gradient clipping 1.0, seed 0. The ResNet is MONAI's resnet18 with widen_factor 0.25 by default (channels
16/32/64/128): the full-width one costs ~11 CPU-s per step of 32 at 32^3, beyond this CPU budget (see --widen-factor). The checkpoint with the best validation AUC (official val split) is evaluated
once on the official test split.

    python experiments/baseline_resnet3d.py --data ../shared/data/adrenalmnist3d/adrenalmnist3d.npz --output runs/ref/cls-resnet18
writes OUTPUT/result.json (per-epoch val metrics, best epoch, test AUC/ACC, wall time).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import resnet18
from torch.utils.data import DataLoader
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from pumit.data import DABatchSampler, ProcessedDataset
from pumit.training.common import adamw_warmup_cosine
from pumit.training.datamodules import ResizeCollate, prepare_data


def evaluate(model: torch.nn.Module, loader: DataLoader) -> dict[str, float]:
    auc, acc = BinaryAUROC(), BinaryAccuracy()
    model.eval()
    with torch.no_grad():
        for b in loader:
            p = model(b["image"]).float().softmax(-1)[:, 1]
            y = b["target"][:, 0]
            auc.update(p, y)
            acc.update(p, y)
    model.train()
    return {"auc": float(auc.compute()), "acc": float(acc.compute())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup-steps", type=int, default=30)
    ap.add_argument("--min-lr-ratio", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widen-factor", type=float, default=0.25,
                    help="MONAI ResNet width multiplier (1.0 = the standard ResNet-18, 33 M parameters, ~11 CPU-s per "
                         "step here: 8 epochs would take ~1 CPU-hour; 0.25 = 2.1 M parameters)")
    a = ap.parse_args()
    t0 = time.time()
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(a.seed)
    records = prepare_data([a.data], out / "data", val_fraction=0.1, seed=a.seed, crop_foreground=False)
    by = {s: [r for r in records if r.split == s] for s in ("train", "val", "test")}
    collate = ResizeCollate((a.input_size,) * 3)

    def loader(split: str, shuffle: bool) -> DataLoader:
        ds = ProcessedDataset(by[split], crop_mode="none", channels=1)
        return DataLoader(ds, batch_sampler=DABatchSampler(ds.das, a.batch_size, shuffle=shuffle, seed=a.seed,
                                                           drop_last=False, num_replicas=1, rank=0),
                          collate_fn=collate, num_workers=0)

    train, val, test = loader("train", True), loader("val", False), loader("test", False)
    model = resnet18(spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=a.widen_factor)
    total = a.epochs * len(train)
    opt, sched = adamw_warmup_cosine(model, lr=a.lr, weight_decay=a.weight_decay, betas=(0.9, 0.999),
                                     warmup_steps=a.warmup_steps, total_steps=total, min_lr_ratio=a.min_lr_ratio)
    sched = sched["scheduler"]
    history, best, best_state = [], -math.inf, None
    for epoch in range(a.epochs):
        train.batch_sampler.set_epoch(epoch)
        losses = []
        for b in train:
            loss = F.cross_entropy(model(b["image"]).float(), b["target"][:, 0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            sched.step()
            losses.append(float(loss))
        m = evaluate(model, val)
        history.append({"epoch": epoch, "train_loss": sum(losses) / len(losses), "val_auc": m["auc"], "val_acc": m["acc"]})
        print(json.dumps(history[-1]), flush=True)
        if m["auc"] > best:
            best, best_state = m["auc"], {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_epoch = epoch
    model.load_state_dict(best_state)
    t = evaluate(model, test)
    result = {"model": f"monai.networks.nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2, "
                       f"widen_factor={a.widen_factor})",
              "params": sum(p.numel() for p in model.parameters()), "steps": total, "seed": a.seed,
              "config": vars(a), "history": history, "best_epoch": best_epoch,
              "val": {"auc": best, "acc": history[best_epoch]["val_acc"]}, "test": t,
              "wall_s": round(time.time() - t0, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"best_epoch": best_epoch, "val_auc": best, "test": t}))


if __name__ == "__main__":
    main()
