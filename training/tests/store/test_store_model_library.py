"""The store with real models written and loaded by the model library (pumit.models)."""

from __future__ import annotations

from pathlib import Path

import torch

from pumit.models import MODEL_TYPES, SpadViT, ViTConfig, load_pretrained, save_pretrained, save_single_file
from pumit.store import MODEL_TYPES as STORE_MODEL_TYPES
from pumit.store import ModelStore

SMALL = dict(embed_dim=32, depth=1, num_heads=2, codebook_size=64)


def test_store_accepts_every_model_type() -> None:
    assert set(STORE_MODEL_TYPES) == set(MODEL_TYPES)


def test_roundtrip_folder_and_single_file(store: ModelStore, tmp_path: Path) -> None:
    torch.manual_seed(0)
    vit = SpadViT(ViTConfig(**SMALL)).eval()
    meta = {"name": "tiny-vit", "version": "0.1.0", "license": "Apache-2.0", "task": "feature extraction"}
    folder = save_pretrained(vit, tmp_path / "out" / "tiny", meta)
    single = save_single_file(vit, tmp_path / "out" / "tiny.safetensors", {**meta, "version": "0.2.0"})

    a = store.install(folder)
    b = store.install(single)
    assert (a.id, b.id) == ("tiny-vit-v0.1.0", "tiny-vit-v0.2.0")
    assert a.model_type == b.model_type == "vit" and a.license == "Apache-2.0"
    ref = {k: v.clone() for k, v in vit.state_dict().items()}
    for mid in (a.id, b.id, "tiny-vit"):
        loaded = load_pretrained(store.resolve(mid), expected_type="vit")
        got = loaded.state_dict()
        assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
        assert loaded.meta["name"] == "tiny-vit"
