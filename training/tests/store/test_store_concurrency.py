"""Two processes changing the same store at once keep the catalog valid and complete."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from store_helpers import make_model_dir, model_config
from store_workers import install_and_register

from pumit.store import ModelStore


def test_concurrent_installs_keep_catalog_valid(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ModelStore(root, builtin_dirs=[]).install(make_model_dir(tmp_path, "base"))  # knee-v1.0.0
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = []
    for w in ("a", "b"):
        srcs = [str(make_model_dir(tmp_path / w, f"m{i}", seed=i, config=model_config(name=f"{w}{i}")))
                for i in range(4)]
        tuned = str(make_model_dir(tmp_path / w, "tuned", seed=10))
        procs.append(ctx.Process(target=install_and_register, args=(str(root), srcs, tuned, barrier, results)))
    for p in procs:
        p.start()
    ids = [results.get(timeout=120) for _ in range(10)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    installed = {f"{w}{i}-v1.0.0" for w in ("a", "b") for i in range(4)}
    tuned_ids = {"knee-v1.0.1", "knee-v1.0.2"}  # register_new_version picks the version under the lock
    assert sorted(ids) == sorted(installed | tuned_ids)
    catalog = json.loads((root / "catalog.json").read_text())  # valid JSON
    assert set(catalog["models"]) == installed | tuned_ids | {"knee-v1.0.0"}
    store = ModelStore(root, builtin_dirs=[])
    for mid in catalog["models"]:
        store.verify(mid)
    assert not list((root / ".staging").iterdir())
