"""Work around the trainers' one-spacing-per-batch check for 2D items (see experiments/README.md).

``pumit.training.common.batch_spacing`` requires every sample of a batch to have the same *unclipped*
pending halvings ``floor(log2(thickness / in-plane))``. 2D items all carry thickness 1e8 mm, so 2D images of
different pixel sizes (0.3 mm vs 2.8 mm) get 25..28 and cannot share a batch although the sampler (clipped
DA 5) puts them together. For a single slice the thickness has no effect on any computation except this
check (depth is never downsampled), so this script rewrites each 2D item's thickness to
``min(in-plane) * 2**27.5`` (all >= 1e4 mm, still 2D) in a copy of the processed manifest.

    python experiments/data/harmonize_planar.py runs/data/pretrain/manifest.jsonl runs/data/pretrain/manifest_2d_harmonized.jsonl
"""
from __future__ import annotations

import json
import sys


def main(src: str, dst: str) -> None:
    n = 0
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("planar"):
                s = r["spacing"]
                r["spacing"] = [min(s[1], s[2]) * 2 ** 27.5, s[1], s[2]]
                n += 1
            out.write(json.dumps(r) + "\n")
    print(f"{n} planar items harmonized -> {dst}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
