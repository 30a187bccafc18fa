"""The store's ``catalog.json``: ``{"format_version": 1, "models": {id: record}}``.

Reads need no lock (every write replaces the file atomically); read-modify-write sequences must hold
the store's :class:`~pumit.store.locking.FileLock`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pumit.errors import ModelError
from pumit.atomic import atomic_write_text

CATALOG_FILE = "catalog.json"
CATALOG_FORMAT_VERSION = 1


def load_catalog(path: Path) -> dict[str, dict[str, Any]]:
    """The catalog's model records by id (empty if the file does not exist)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"model catalog {path} is unreadable or corrupt ({e}); restore it or move it away") from e
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ModelError(f"model catalog {path} is malformed (no 'models' object); restore it or move it away")
    version = data.get("format_version", CATALOG_FORMAT_VERSION)
    if not isinstance(version, int) or version > CATALOG_FORMAT_VERSION:
        raise ModelError(f"model catalog {path} has format_version {version!r}, newer than this pumit supports")
    return {str(k): v for k, v in data["models"].items() if isinstance(v, dict)}


def save_catalog(path: Path, models: dict[str, dict[str, Any]]) -> None:
    """Write the catalog atomically (ids sorted)."""
    data = {"format_version": CATALOG_FORMAT_VERSION, "models": {k: models[k] for k in sorted(models)}}
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
