"""Like-for-like segmentation decoder comparison (issue 13): SPAD-ViT + U-Net decoder (``unet``), SPAD-ViT +
light decoder (``light``), MONAI DynUNet configured like nnU-Net 3d_fullres, and MONAI UNETR.

Every arm goes through **the code of** ``pumit train segment``: the same :class:`SegmentationDataModule`
(pre-processing, resampling, random crops with the same foreground ratio, the same seed and data order),
the same :class:`SegmentationModule` (DiceCE loss, AdamW + warm-up + cosine, sliding-window validation Dice)
and :func:`pumit.training.run.build_trainer` (the same Lightning ``Trainer`` settings: steps, clipping,
precision). Only the network differs; the baselines are wrapped to take ``(x, spacing)`` and ignore the
spacing. Each arm trains for the same number of steps at each learning rate of a small search and is
validated once at the end (the reported Dice is that last model; there is no checkpoint selection).

    python experiments/decoder_compare.py --config experiments/configs/decoder_hippocampus.yaml \\
        --data runs/data/hippo13/manifest_frac100.jsonl --out experiments/results/decoder-hippocampus.json \\
        [--arms light unet dynunet unetr] [--lrs 0.001 0.003]

Results are appended per run (``--out``; a run already in the file is skipped), so the script can be
stopped and restarted. ``OMP_NUM_THREADS`` should be set by the caller (1 on a shared machine).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))

ARMS = ("light", "unet", "dynunet", "unetr")


class SpacingIgnoring(nn.Module):
    """A MONAI network behind the segmenter interface: ``forward(x, spacing)``, ``total_stride``."""

    model_type = "segmentation"

    def __init__(self, net: nn.Module, total_stride: int, num_classes: int):
        super().__init__()
        self.net = net
        self.total_stride = total_stride
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, spacing: Any) -> torch.Tensor:  # noqa: ARG002 - spacing-unaware
        return self.net(x)


def nnunet_dynunet(in_channels: int, num_classes: int, roi: tuple[int, int, int], spacing: tuple[float, float, float]
                   ) -> tuple[nn.Module, int]:
    """MONAI DynUNet with nnU-Net 3d_fullres planning rules (:func:`benchmarks.baselines.nnunet_dynunet`);
    returns the network and its in-plane total stride."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.baselines import nnunet_dynunet as build

    net, stride = build(in_channels, num_classes, roi, spacing)
    return net, stride[1]


def monai_unetr(in_channels: int, num_classes: int, roi: tuple[int, int, int], hidden: int, heads: int) -> nn.Module:
    from monai.networks.nets import UNETR

    sys.path.insert(0, str(ROOT))
    from benchmarks.baselines import enable_sdpa

    net = UNETR(in_channels=in_channels, out_channels=num_classes, img_size=roi, feature_size=16, hidden_size=hidden,
                mlp_dim=4 * hidden, num_heads=heads)
    enable_sdpa(net)
    return net


def window_gflops(model: nn.Module, roi: tuple[int, int, int], spacing: tuple[float, ...], in_channels: int) -> float:
    """Forward GFLOP of one ``roi`` window (``torch.utils.flop_counter`` on a meta-device copy)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty((1, in_channels, *roi), device="meta"), spacing)
    return counter.get_total_flops() / 1e9


def _instance_norm(model: nn.Module) -> None:
    """Every GroupNorm outside the ViT becomes GroupNorm(C, C): instance norm with a per-channel affine, as
    nnU-Net's InstanceNorm3d(affine=True); the same parameter shapes, so the weights stay loadable."""
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.GroupNorm) and not f"{name}.{child_name}".startswith("vit."):
                setattr(mod, child_name, nn.GroupNorm(child.num_channels, child.num_channels, eps=child.eps))


def build_arm(arm: str, cfg: dict[str, Any], labels: dict[str, str], in_channels: int, roi: tuple[int, int, int],
              spacing: tuple[float, float, float]) -> nn.Module:
    from pumit.training.segmentation import build_segmenter

    n = len(labels)
    torch.manual_seed(int(cfg.get("seed", 0)))
    if arm in ("light", "unet"):
        sub = dict(cfg, decoder=arm)
        if arm == "unet":
            sub["adapter_channels"], sub["stem_channels"] = cfg.get("unet_adapter_channels"), cfg.get("unet_stem_channels")
        else:
            sub["adapter_channels"], sub["stem_channels"] = cfg.get("light_adapter_channels"), cfg.get("light_stem_channels")
            sub["conv_levels"] = int(cfg.get("light_conv_levels") or 0)
            sub["blocks_per_level"] = int(cfg.get("light_blocks_per_level") or 1)  # 1: the design of the earlier rounds
        model = build_segmenter(sub, labels, in_channels)
        if cfg.get("light_plain_extra_blocks"):  # round-3 ablation: the extra blocks without their skip connection
            from pumit.models.segmentation import _ResidualBlock

            for m in model.modules():
                if isinstance(m, _ResidualBlock):
                    m.forward = m.block.forward  # type: ignore[method-assign]
        if cfg.get("light_instance_norm"):  # round-8 ablation: nnU-Net's instance norm in the stem and decoder
            _instance_norm(model)
        return model
    if arm == "dynunet":
        net, stride = nnunet_dynunet(in_channels, n, roi, spacing)
        return SpacingIgnoring(net, max(stride, 16), n)
    if arm == "unetr":
        return SpacingIgnoring(monai_unetr(in_channels, n, roi, int(cfg["embed_dim"]), int(cfg["num_heads"])), 16, n)
    raise SystemExit(f"unknown arm {arm!r}; choose from {ARMS}")


def save_weights(model: nn.Module, path: Path) -> None:
    """The trained network's weights as safetensors, written atomically (for evaluations after the run, e.g.
    ``experiments/eval_brain.py``: rebuild the network with :func:`build_arm`, then
    ``safetensors.torch.load_model``). ``save_model`` stores tensors that a network shares between two
    attributes once (MONAI's DynUNet keeps its blocks in two module lists)."""
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # beside it (same file system), unique per process
    try:
        save_model(model, str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def run_one(arm: str, lr: float, cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    import lightning.pytorch as pl

    from pumit.training.datamodules import SegmentationDataModule
    from pumit.training.run import build_trainer
    from pumit.training.segmentation import SegmentationModule

    cfg = dict(cfg, lr=lr)
    run_dir = work / f"{arm}-lr{lr:g}-s{int(cfg.get('seed', 0))}"
    pl.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)
    dm = SegmentationDataModule(cfg, work / "data")
    dm.prepare()
    roi = tuple(int(v) for v in cfg["roi"])
    model = build_arm(arm, cfg, dm.labels, dm.in_channels, roi, dm.target_spacing)  # type: ignore[arg-type]
    if cfg.get("init_weights"):  # a continuation: the network starts from an earlier run's weights
        from safetensors.torch import load_model

        load_model(model, str(cfg["init_weights"]))
    gflops = window_gflops(model, roi, dm.target_spacing, dm.in_channels)
    module = SegmentationModule(cfg, dm.labels, dm.target_spacing, dm.in_channels, model=model,  # type: ignore[arg-type]
                                median_shape=dm.median_shape)
    dm.set_roi(module.roi)
    pl.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)
    trainer, _, _ = build_trainer(cfg, run_dir, module, has_val=dm.has_val)
    t0, c0 = time.perf_counter(), time.process_time()
    from pumit.training.run import find_resume_checkpoint

    ckpt = find_resume_checkpoint(run_dir, "auto")  # a run killed after a periodic checkpoint continues from it
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if cfg.get("checkpoint_every_n_steps"):  # the final state (the periodic checkpoint leaves the last step to it)
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    save_weights(model, run_dir / "model.safetensors")
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {
        "arm": arm, "lr": lr, "steps": int(trainer.global_step), "seed": int(cfg.get("seed", 0)), "roi": list(roi),
        "spacing_mm": list(dm.target_spacing), "n_train": len(dm._train_records),
        "n_val": len(dm.val_set) if dm.val_set is not None else 0,
        "dice_mean": m.get("val/dice"), "dice": {k.split("/", 2)[2]: v for k, v in m.items() if k.startswith("val/dice/")},
        "val_loss": m.get("val/loss"), "final_train_loss": m.get("train/loss"),
        "conv_levels": getattr(getattr(model, "config", None), "conv_levels", None),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3), "gflops_per_train_window": round(gflops, 3),
        "init_weights": str(cfg["init_weights"]) if cfg.get("init_weights") else None,
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "threads": torch.get_num_threads(),
        "loadavg_end": list(os.getloadavg()), "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML of pumit train segment options (+ the *_channels of each arm)")
    ap.add_argument("--data", required=True, help="dataset folder or manifest (as pumit train segment --data)")
    ap.add_argument("--out", required=True, help="results JSON (runs are appended; existing ones skipped)")
    ap.add_argument("--work", default="runs/decoder-compare", help="run folders and the prepared data")
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--lrs", nargs="+", type=float, default=None, help="learning rates (default: the config's lrs)")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (default: the config's seed)")
    ap.add_argument("--config-override", nargs="+", default=[], metavar="KEY=VALUE",
                    help="override config keys (YAML values), e.g. light_conv_levels=2")
    ap.add_argument("--init-weights", default=None, metavar="SAFETENSORS",
                    help="start every run from these weights (an earlier run's model.safetensors of the same arm "
                         "and labels): a continuation with a new warm-up and schedule")
    ap.add_argument("--variant", default="", help="a name for this configuration of the arms (kept with each run)")
    args = ap.parse_args(argv)
    import yaml

    from pumit.atomic import atomic_write_text
    from pumit.training.options import resolve_config

    raw = yaml.safe_load(Path(args.config).read_text())
    for item in args.config_override:
        key, _, value = item.partition("=")
        raw[key] = yaml.safe_load(value)
    extra = {k: raw.pop(k) for k in list(raw) if k.startswith(("unet_", "light_")) or k in ("lrs", "dataset")}
    cfg = resolve_config("segment", None, {**raw, "data": args.data, "progress": "none"})
    cfg.update(extra)
    if args.init_weights:
        if not Path(args.init_weights).is_file():
            raise SystemExit(f"--init-weights: {args.init_weights} not found")
        cfg["init_weights"] = args.init_weights
    if args.max_steps:
        cfg["max_steps"] = cfg["val_check_interval"] = args.max_steps
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {"config": {}, "runs": []}
    results["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if k != "data"}
    results["config"]["data"] = str(args.data)
    done = {(r["arm"], r["lr"], r.get("seed", 0), r.get("variant", "")) for r in results["runs"]}
    work = Path(args.work)
    lrs = args.lrs or extra.get("lrs", [cfg["lr"]])
    for seed, lr, arm in itertools.product(args.seeds or [int(cfg.get("seed", 0))], lrs, args.arms):
        if (arm, float(lr), seed, args.variant) in done:
            continue
        r = run_one(arm, float(lr), dict(cfg, seed=seed), work)
        r["variant"] = args.variant
        print(json.dumps(r), flush=True)
        results["runs"].append(r)
        atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
