"""Write runs/data/pretrain/manifest_stage3.jsonl: the pre-training manifest without the AdrenalMNIST3D items (follow-up tokenizer run)."""

import json
from pathlib import Path

src = Path("runs/data/pretrain/manifest_2d.jsonl")
rows = [line for line in src.read_text().splitlines(keepends=True) if json.loads(line)["dataset"] != "adrenalmnist3d"]
Path("runs/data/pretrain/manifest_stage3.jsonl").write_text("".join(rows))
print(f"{len(rows)} items")
