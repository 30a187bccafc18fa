"""Per-window time of the ViT-B light segmenter with 1 vs 2 blocks per level (64x128x128 at 2.5x0.8x0.8 mm, fp32,
channels-last, 2 threads, 4 interleaved repeats after a warm-up). Prints JSON:
    .venv/bin/python benchmarks/blocks_per_level_window.py > benchmarks/results/blocks-per-level-window-cpu-DATE.json
"""
import time, json, torch
from pumit.models import SegmenterConfig, SpadViTSegmenter, ViTConfig
torch.set_num_threads(2)
ms = {b: SpadViTSegmenter(SegmenterConfig(vit=ViTConfig.preset("base"), num_classes=2, decoder="light", blocks_per_level=b)).eval().to(memory_format=torch.channels_last_3d) for b in (1, 2)}
x = torch.randn(1, 1, 64, 128, 128).to(memory_format=torch.channels_last_3d)
t = {1: [], 2: []}
with torch.inference_mode():
    for b in (1, 2): ms[b](x, (2.5, 0.8, 0.8))
    for r in range(4):
        for b in ((1, 2) if r % 2 == 0 else (2, 1)):
            t0 = time.perf_counter(); ms[b](x, (2.5, 0.8, 0.8)); t[b].append(time.perf_counter() - t0)
import statistics, os
print(json.dumps({"threads": 2, "fp32": True, "channels_last_3d": True, "window": [64, 128, 128], "spacing": [2.5, 0.8, 0.8],
  "median_s": {f"blocks_per_level={b}": round(statistics.median(v), 3) for b, v in t.items()}, "all_s": {str(b): [round(x, 3) for x in v] for b, v in t.items()},
  "loadavg": list(os.getloadavg())}))
