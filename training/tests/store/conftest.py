"""Fixtures for the model-store tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_helpers import make_model_dir

from pumit.store import ModelStore


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """An empty store under tmp_path, without built-in models."""
    return ModelStore(tmp_path / "store", builtin_dirs=[])


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A valid model folder (knee 1.0.0)."""
    return make_model_dir(tmp_path / "src")
