"""Issue 15 items 3, 5 and 9 (pickles): weights are verified when loaded, a cancel while models are listed is
a cancel, and a model folder holding a pickle is refused.

Real parts: the shipped hippocampus model (copied and installed into a temporary store), the real CLI in a
subprocess, a real SIGTERM.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from pumit.errors import ModelError
from pumit.store import ModelStore
from pumit.store.verify import verify_files

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "training" / "pumit" / "assets" / "models" / "pumit-ref-hippocampus-seg-v0.1.0"
DEMO = REPO / "training" / "pumit" / "assets" / "demo" / "hippocampus_004.nii.gz"


def pumit(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PUMIT_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUTF8": "1"}
    return subprocess.run([sys.executable, "-m", "pumit.cli.main", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def tamper(weights: Path) -> None:
    """Change one weight value in place: still a valid safetensors file, different predictions."""
    data = bytearray(weights.read_bytes())
    for i in range(len(data) - 4000, len(data) - 4, 4):  # the tail of the last tensors
        data[i + 3] ^= 0x40
    weights.write_bytes(bytes(data))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def installed(home: Path, tmp_path: Path) -> tuple[ModelStore, str]:
    store = ModelStore(home / "models", builtin_dirs=[])
    copy = tmp_path / "copy" / SHIPPED.name
    shutil.copytree(SHIPPED, copy)
    entry = store.install(copy, name="hippo-copy", version="1.0.0")
    return store, entry.id


def test_tampered_weights_are_refused_by_segment(installed, home: Path, tmp_path: Path):
    store, mid = installed
    out = tmp_path / "seg.nii.gz"
    ok = pumit("segment", DEMO, "-o", out, "-m", mid, home=home)
    assert ok.returncode == 0, ok.stderr
    tamper(store.root / mid / "model.safetensors")
    for model in (mid, store.root / mid):  # by id, and by folder path
        out.unlink(missing_ok=True)
        r = pumit("segment", DEMO, "-o", out, "-m", model, home=home)
        assert r.returncode == 3, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pumit: error: ") and "model.safetensors" in lines[0]
        assert "SHA-256" in lines[0] and not out.exists()


def test_tampered_folder_with_its_own_checksums_is_refused(home: Path, tmp_path: Path):
    folder = tmp_path / "loose" / "my-model"
    shutil.copytree(SHIPPED, folder)
    tamper(folder / "model.safetensors")
    r = pumit("segment", DEMO, "-o", tmp_path / "seg.nii.gz", "-m", folder, home=home)
    assert r.returncode == 3 and "does not match its recorded SHA-256" in r.stderr


def test_verification_is_cached_by_size_and_mtime(installed, tmp_path: Path):
    store, mid = installed
    entry = store.info(mid)
    expected = {rel: r.sha256 for rel, r in entry.files.items()}
    cache = tmp_path / "verified.json"
    assert verify_files(expected, entry.folder, mid, cache=cache) == len(expected)  # first load hashes
    assert verify_files(expected, entry.folder, mid, cache=cache) == 0  # second: nothing hashed
    weights = entry.folder / "model.safetensors"
    tamper(weights)  # new mtime: hashed again and refused
    with pytest.raises(ModelError, match="model.safetensors"):
        verify_files(expected, entry.folder, mid, cache=cache)
    # resolve() goes through the same check
    with pytest.raises(ModelError, match="SHA-256"):
        store.resolve(mid)


def test_second_load_does_not_hash_again(installed, home: Path, monkeypatch):
    store, mid = installed
    monkeypatch.setenv("PUMIT_HOME", str(home))
    store.resolve(mid)
    t = time.perf_counter()
    store.resolve(mid)
    assert time.perf_counter() - t < 0.5
    assert (home / "cache" / "verified.json").is_file()


def test_sigterm_while_listing_built_in_models_is_a_cancel(tmp_path: Path):
    """SIGTERM (every 20 ms until the process ends) while 1500 built-in model folders are being listed: the
    first one cancels (exit 130); none is swallowed as a "broken built-in model" or turns into "unknown model"."""
    builtin = tmp_path / "builtin"
    config = (SHIPPED / "config.json").read_bytes()
    for i in range(1500):
        d = builtin / f"m{i:04d}-v1.0.0"
        d.mkdir(parents=True)
        (d / "config.json").write_bytes(config)
    script = textwrap.dedent(f"""
        import signal, sys
        from pumit.cli.main import _raise_cancel
        from pumit.errors import PumitError
        from pumit.inference.modelinfo import load_model
        from pumit.store import ModelStore
        done = []
        def cancel(signum, frame):  # pumit's handler, until the script reports the outcome
            if not done:
                _raise_cancel(signum, frame)
        signal.signal(signal.SIGTERM, cancel)
        store = ModelStore({str(tmp_path / 'store')!r}, builtin_dirs=[{str(builtin)!r}])
        print("listing", flush=True)
        try:
            for _ in range(20):
                store.list()
            load_model("m1499-v1.0.0", "segment", store=store)
        except PumitError as e:
            done.append(1)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the test's later signals
            print(f"pumit: error: {{e}}", file=sys.stderr)
            sys.exit(e.exit_code)
        done.append(1)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("finished", flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-W", "always", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "listing"
    time.sleep(0.5)  # well inside the 20 listings
    while p.poll() is None:
        p.send_signal(signal.SIGTERM)
        time.sleep(0.02)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (out, err)
    assert "finished" not in out and "unknown model" not in err and "skipping broken" not in err
    assert "cancelled" in err


def test_model_folder_with_a_pickle_is_refused(tmp_path: Path):
    store = ModelStore(tmp_path / "store", builtin_dirs=[])
    for name in ("pytorch_model.bin", "extra_state", "weights.pt"):
        folder = tmp_path / name / "m"
        shutil.copytree(SHIPPED, folder)
        with open(folder / name, "wb") as f:
            pickle.dump({"w": np.zeros(3)}, f)
        with pytest.raises(ModelError, match="pickle"):
            store.install(folder, name="pickled", version="1.0.0")
    assert store.ids() == []
    # a torch.save zip archive (pickle inside) beside the safetensors is refused as well
    import torch

    folder = tmp_path / "zip" / "m"
    shutil.copytree(SHIPPED, folder)
    torch.save({"w": torch.zeros(2)}, folder / "optimizer.bin")
    with pytest.raises(ModelError, match="pickle"):
        store.install(folder, name="pickled", version="1.0.0")
