"""Per-window time of the ViT-B light segmenter with 1 vs 2 blocks per level (one 64×128×128 window at
2.5 × 0.8 × 0.8 mm (depth, H, W), fp32, channels-last-3d), interleaved with :func:`benchmarks.common.time_interleaved`
(one warm-up, alternating order each round). Writes JSON (atomically) with the environment and the load:

    .venv/bin/python -m benchmarks.blocks_per_level_window --threads 2 \\
        --out benchmarks/results/blocks-per-level-window-cpu-DATE.json
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from benchmarks.common import env_info, summarize, time_interleaved, write_json

WINDOW = (64, 128, 128)
SPACING = (2.5, 0.8, 0.8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from pumit.models import SegmenterConfig, SpadViTSegmenter, ViTConfig

    torch.set_num_threads(a.threads)
    device = torch.device("cpu")
    cl = torch.channels_last_3d
    models = {b: SpadViTSegmenter(SegmenterConfig(vit=ViTConfig.preset("base"), num_classes=2, decoder="light",
                                                  blocks_per_level=b)).eval().to(memory_format=cl) for b in (1, 2)}
    x = torch.randn(1, 1, *WINDOW).to(memory_format=cl)
    load0 = list(os.getloadavg())
    with torch.inference_mode():
        times = time_interleaved({f"blocks_per_level={b}": (lambda m=m: m(x, SPACING)) for b, m in models.items()},
                                 device, repeats=a.repeats, warmup=1)
    out = {"env": env_info(device), "threads": a.threads, "dtype": "float32", "memory_format": "channels_last_3d",
           "window": list(WINDOW), "spacing_mm": list(SPACING), "repeats": a.repeats, "warmup": 1,
           "wall_s": {k: summarize(w) for k, (w, _) in times.items()},
           "cpu_s": {k: summarize(c) for k, (_, c) in times.items()},
           "all_wall_s": {k: [round(v, 3) for v in w] for k, (w, _) in times.items()},
           "loadavg": {"start": load0, "end": list(os.getloadavg())}}
    write_json(Path(a.out), out)
    print({k: round(v["median"], 3) for k, v in out["wall_s"].items()}, "->", a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
