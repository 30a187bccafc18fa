"""Shared fixtures: repository paths and the optional ../shared/data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_DATA = REPO_ROOT / "Testing" / "Data"


def shared_data_dir() -> Path:
    """``$PUMIT_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("PUMIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data folder {d} is absent (set PUMIT_SHARED_DATA or place ../shared/data next to the repo)")
    return d


@pytest.fixture
def tptbox_dir() -> Path:
    return TEST_DATA / "tptbox"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
