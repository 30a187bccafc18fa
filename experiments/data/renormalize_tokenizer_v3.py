"""Tokenizer-specific intensity normalization of the processed v0.3 training items (in place, plus a new manifest).

    python experiments/data/renormalize_tokenizer_v3.py runs/data/index_tok3.jsonl runs/data/tok3/manifest.jsonl \
        runs/data/tok3/manifest_renorm.jsonl

``pumit data preprocess`` normalizes CT with the soft-tissue window [-175, 250] HU, right for segmentation but
not for a tokenizer that must give back the whole image: air, lung and bone would be clipped, and the
reconstruction could never match the input in HU. Here:

* CT items (tptbox spine CT, pydicom CT slices) are re-read from their source and normalized with the full CT
  window :data:`CT_WINDOW` (same foreground crop and in-plane shrink as the pre-processing);
* AdrenalMNIST3D items are binary masks (0/255) stored as ``photo`` under modality ``ct``; they are relabelled
  modality ``other`` with the ``percentile`` spec (identical values for a 0/255 mask), so that the exported
  ``normalization_by_modality`` gives ``ct`` the CT window rather than the masks' ``x / 255``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pumit.data.load import load_record
from pumit.data.manifest import read_manifest
from pumit.data.preprocess import save_npy, shrink_in_plane
from pumit.intensity import IntensitySpec, normalize

#: Full CT range used by the tokenizer: air (-1024 HU) to dense bone (2048 HU).
CT_WINDOW = (-1024.0, 2048.0)


def main(index: str, src: str, dst: str) -> None:
    by_image = {r.image: r for r in read_manifest(index)}
    base = Path(src).parent
    rows = [json.loads(l) for l in Path(src).read_text().splitlines() if l.strip()]
    n_ct = n_mask = 0
    ct_spec = IntensitySpec(scheme="ct", window=CT_WINDOW)
    pct_spec = IntensitySpec(scheme="percentile")
    for r in rows:
        if r["dataset"] == "adrenalmnist3d":
            a = np.load(base / r["image"]).astype(np.float32)
            raw = (a + 1.0) / 2.0 * 255.0
            new, st = normalize(raw, pct_spec)
            assert np.abs(new - a).max() < 1e-2, r["id"]
            r.update(modality="other", intensity=pct_spec.to_dict(), stats={"offset": st.offset, "scale": st.scale})
            n_mask += 1
        elif r["modality"] == "ct":
            rec = by_image[r["source"]["image"]]
            item = load_record(rec)
            box = r["source"]["crop"]
            img = item.image[(slice(None),) + tuple(slice(s, e) for s, e in box)]
            img, st = normalize(img, ct_spec)
            img, _, spacing = shrink_in_plane(img, None, rec.spacing, 256)
            assert list(img.shape) == list(r["shape"]), (r["id"], img.shape, r["shape"])
            save_npy(base / r["image"], img.astype(np.float16))
            r.update(intensity=ct_spec.to_dict(), stats={"offset": st.offset, "scale": st.scale})
            n_ct += 1
    Path(dst).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"CT items renormalized to {CT_WINDOW} HU: {n_ct}; masks relabelled: {n_mask} -> {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
