"""Helpers of the training tests: tiny models, tiny option sets, mini datasets cut from the shared data, and a
CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from pumit.models import SpadViTMIM, TokenizerConfig, UniversalTokenizer, ViTConfig, save_pretrained
from pumit.training.options import resolve_config

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable

#: A SPAD-ViT small enough for CPU tests: patch 8, width 32, 2 blocks.
TINY_VIT = dict(preset="tiny", patch_size=8, embed_dim=32, depth=2, num_heads=2)
#: Tiny segmentation decoder.
TINY_SEG = dict(adapter_channels=(8, 8, 16, 16), stem_channels=(8,))
#: Trainer options for fast, quiet, deterministic CPU runs.
CPU = dict(accelerator="cpu", devices=1, num_workers=0, progress="none", num_sanity_val_steps=0, log_every_n_steps=1,
           precision="32", warmup_steps=0)

HIPPO_CASES = ("001", "003", "004", "006", "008", "011")


def shared_data_dir() -> Path:
    """``$PUMIT_SHARED_DATA`` or ``<repo>/../shared/data`` (as in ``training/tests/conftest.py``)."""
    return Path(os.environ.get("PUMIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def tiny_cfg(job: str, **over: Any) -> dict[str, Any]:
    """The packaged defaults of ``job`` with CPU settings and ``over`` applied."""
    return resolve_config(job, None, {**CPU, **over})


def tiny_tokenizer() -> UniversalTokenizer:
    """Total stride 8 (= the tiny ViT patch), codebook 32."""
    return UniversalTokenizer(TokenizerConfig(channels=(8, 16), codebook_size=32))


def save_tiny_tokenizer(folder: Path) -> Path:
    return save_pretrained(tiny_tokenizer(), folder, {"name": "tiny-tok", "version": "1.0.0"})


def save_tiny_mim(folder: Path, codebook: int = 32) -> Path:
    cfg = ViTConfig.preset("tiny", patch_size=8, embed_dim=32, depth=2, num_heads=2, codebook_size=codebook)
    return save_pretrained(SpadViTMIM(cfg), folder, {"name": "tiny-vit", "version": "1.0.0"})


def make_mini_msd(src: Path, dest: Path, cases: Sequence[str] = HIPPO_CASES, labels: dict[str, str] | None = None) -> Path:
    """An MSD folder with a few hippocampus cases (files copied) and its dataset.json."""
    (dest / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dest / "labelsTr").mkdir(parents=True, exist_ok=True)
    meta = json.loads((src / "dataset.json").read_text())
    training = []
    for c in cases:
        name = f"hippocampus_{c}.nii.gz"
        if not (src / "imagesTr" / name).is_file():
            continue
        shutil.copy(src / "imagesTr" / name, dest / "imagesTr" / name)
        shutil.copy(src / "labelsTr" / name, dest / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta.update(training=training, numTraining=len(training))
    if labels is not None:
        meta["labels"] = labels
    (dest / "dataset.json").write_text(json.dumps(meta, indent=1))
    return dest


def corrupt_label_geometry(msd: Path, index: int = 0) -> Path:
    """Replace one label map by a smaller one (size mismatch); returns the label path."""
    meta = json.loads((msd / "dataset.json").read_text())
    path = msd / meta["training"][index]["label"]
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)[:, :-3, :]
    bad = sitk.GetImageFromArray(arr)
    bad.SetSpacing(img.GetSpacing())
    bad.SetOrigin(img.GetOrigin())
    bad.SetDirection(img.GetDirection())
    sitk.WriteImage(bad, str(path))
    return path


def add_undeclared_label(msd: Path, index: int = 0, value: int = 7) -> Path:
    """Write an undeclared value into one label map; returns the label path."""
    meta = json.loads((msd / "dataset.json").read_text())
    path = msd / meta["training"][index]["label"]
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    arr[0, 0, 0] = value
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    sitk.WriteImage(out, str(path))
    return path


def make_mini_adrenal(src: Path, dest_dir: Path, n_train: int = 48, n_val: int = 24, n_test: int = 16) -> Path:
    """A subset of adrenalmnist3d.npz with both classes in every split (same file name, so it indexes as MedMNIST)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    with np.load(src) as z:
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            y = z[f"{split}_labels"][:, 0]
            pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
            k = min(len(pos), n // 2)
            idx = np.sort(np.concatenate([pos[:k], neg[: n - k]]))
            out[f"{split}_images"] = z[f"{split}_images"][idx]
            out[f"{split}_labels"] = z[f"{split}_labels"][idx]
    path = dest_dir / "adrenalmnist3d.npz"
    np.savez(path, **out)
    return path


def write_yaml(path: Path, values: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}))
    return path


def cli_main(argv: Sequence[str]) -> int:
    """``pumit ARGV`` in this process, through :func:`pumit.cli.main.main`."""
    from pumit.cli.main import main

    return main(list(argv))


CLI_SNIPPET = (
    "import sys; sys.path.insert(0, {helpers!r}); import training_helpers as h; "
    "import torch; torch.set_num_threads(1); sys.exit(h.cli_main(sys.argv[1:]))"
)


def cli_command(args: Sequence[str]) -> list[str]:
    """A subprocess command line running ``pumit ARGS``."""
    return [PYTHON, "-c", CLI_SNIPPET.format(helpers=str(Path(__file__).parent))] + [str(a) for a in args]


def cli_env(pumit_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PUMIT_HOME=str(pumit_home), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PUMIT_TRAIN_RUN_DIR", None)
    return env


def run_cli(args: Sequence[str], pumit_home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``pumit ARGS`` in a subprocess with ``PUMIT_HOME=pumit_home``."""
    return subprocess.run(cli_command(args), env=cli_env(pumit_home), capture_output=True, text=True, timeout=timeout,
                          cwd=str(REPO), check=False)


def kill_once_checkpointed(args: Sequence[str], pumit_home: Path, checkpoint: Path, timeout: float = 240) -> None:
    """Start ``pumit ARGS`` and SIGKILL it as soon as ``checkpoint`` exists (no chance to clean up: only
    atomic writes survive); fails if the run writes no checkpoint before it ends or ``timeout`` s pass."""
    import signal
    import time

    proc = subprocess.Popen(cli_command(args), env=cli_env(pumit_home), cwd=str(REPO), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoint.is_file(), (f"no {checkpoint.name} was written: "
                                      f"{proc.stderr.read()[-2000:] if proc.poll() is not None else ''}")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
