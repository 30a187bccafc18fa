"""Summarise the MIM pre-training runs against pumit-ref-tokenizer-v0.3.0 (experiments/configs/mim_v3.yaml) into
experiments/results/mim3.json, with the diagnostic that explains them: how sharp the tokenizer's token
distributions are on images it never saw (the MIM target is a cross-entropy to them, so its floor is their entropy).

    python experiments/collect_mim_v3.py [--runs runs/ref/mim3 runs/ref/mim3-t01]

Entropy is measured on the 51 MSD Hippocampus validation cases (``runs/data/hippo13``, z-score, as the tokenizer's
MRI training data), each centre-cropped to 32 × 48 × 32 voxels (1 mm; smaller cases to their size rounded down to 8), in nats; ``ln K`` is the uniform maximum.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
TOKENIZER = ROOT / "training" / "pumit" / "assets" / "models" / "pumit-ref-tokenizer-v0.3.0"


def run_summary(run: Path) -> dict:
    files = sorted((run / "logs" / "csv").glob("version_*/metrics.csv"))
    rows = list(csv.DictReader(files[-1].open())) if files else []
    val = [(int(r["step"]), float(r["val/mim"])) for r in rows if r.get("val/mim")]
    train = [(int(r["step"]), float(r["train/mim"])) for r in rows if r.get("train/mim")]
    cfg = json.loads((run / "model" / "config.json").read_text())["meta"].get("training", {}) if (run / "model").is_dir() else {}
    t = (cfg.get("config") or {}).get("target_temperature")
    return {"run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run), "val_mim": val,
            "train_mim_first_last": [train[0], train[-1]] if train else None,
            "target_temperature": 1.0 if t is None else float(t),  # a run made before the option existed: 1
            "steps": cfg.get("steps")}


def token_entropy(temperatures: list[float]) -> dict:
    from pumit.models import load_pretrained
    from pumit.training.mim import pool_token_distributions, sharpen

    tok = load_pretrained(TOKENIZER).eval()
    manifest = ROOT / "runs" / "data" / "hippo13" / "manifest.jsonl"
    recs = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    recs = [r for r in recs if r.get("split") == "val"]
    out: dict = {"cases": len(recs), "ln_K": math.log(tok.codebook_size)}
    ent: dict[str, list[float]] = {}
    for r in recs:
        arr = np.load(manifest.parent / r["image"])[0]
        d, h, w = arr.shape
        size = [min(n, m) // 8 * 8 for n, m in zip((d, h, w), (32, 48, 32))]  # whole patches of the patch-8 ViT
        sl = tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip((d, h, w), size))
        x = torch.from_numpy(np.ascontiguousarray(arr[sl], dtype=np.float32))[None, None]
        with torch.no_grad():
            probs, _, _ = tok.encode(x, tuple(r["spacing"]))
            for t in temperatures:
                p = sharpen(probs, t)
                for name, q in (("token", p), ("patch8_pooled", pool_token_distributions(p, tuple(n // 2 for n in p.shape[1:4])))):
                    e = -(q * q.clamp_min(1e-12).log()).sum(-1).mean().item()
                    ent.setdefault(f"T={t:g}/{name}", []).append(e)
                if t == 1.0:
                    ent.setdefault("T=1/max_prob", []).append(p.max(-1).values.mean().item())
    out["mean"] = {k: round(float(np.mean(v)), 4) for k, v in ent.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["runs/ref/mim3", "runs/ref/mim3-t01"])
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "mim3.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = {"runs": [run_summary(ROOT / r) for r in args.runs], "tokenizer_entropy": token_entropy([1.0, 0.1])}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
