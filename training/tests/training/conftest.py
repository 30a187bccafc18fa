"""Fixtures of the training tests: mini datasets cut from ../shared/data (skipped when it is absent), tiny saved
models, a temporary PUMIT_HOME, single-threaded torch (the tests share 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_helpers import make_mini_adrenal, make_mini_msd, save_tiny_mim, save_tiny_tokenizer, shared_data_dir


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.delenv("PUMIT_TRAIN_RUN_DIR", raising=False)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pumit_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "pumit_home"
    monkeypatch.setenv("PUMIT_HOME", str(home))
    return home


def _hippocampus() -> Path:
    d = shared_data_dir() / "msd_task04_hippocampus"
    if not (d / "dataset.json").is_file():
        pytest.skip(f"MSD hippocampus data not found at {d} (set PUMIT_SHARED_DATA to the shared data folder)")
    return d


def _adrenal() -> Path:
    p = shared_data_dir() / "adrenalmnist3d" / "adrenalmnist3d.npz"
    if not p.is_file():
        pytest.skip(f"AdrenalMNIST3D not found at {p} (set PUMIT_SHARED_DATA to the shared data folder)")
    return p


@pytest.fixture(scope="session")
def hippo_msd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-case MSD hippocampus folder (read-only for tests: copy it before modifying)."""
    return make_mini_msd(_hippocampus(), tmp_path_factory.mktemp("hippo") / "Task04_mini")


@pytest.fixture
def hippo_copy(tmp_path: Path) -> Path:
    """A modifiable 4-case MSD hippocampus folder."""
    return make_mini_msd(_hippocampus(), tmp_path / "Task04_bad", cases=("001", "003", "004", "006"))


@pytest.fixture(scope="session")
def adrenal_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class-balanced subset of AdrenalMNIST3D (train 48 / val 24 / test 16)."""
    return make_mini_adrenal(_adrenal(), tmp_path_factory.mktemp("adrenal"))


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tiny-tokenizer")


@pytest.fixture(scope="session")
def tiny_mim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_mim(tmp_path_factory.mktemp("vit") / "tiny-vit")
