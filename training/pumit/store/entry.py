""":class:`ModelEntry`: everything the store knows about one model version."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Keys written to the catalog for each model, in this order.
_CATALOG_KEYS = (
    "id", "name", "version", "model_type", "task", "format", "weights_file", "weights_sha256", "size", "files",
    "license", "description", "labels", "input", "pumit_version", "source", "source_sha256", "installed_at",
)


@dataclass(frozen=True)
class FileRecord:
    """One file of a model: its SHA-256 (``None`` for a built-in model without recorded checksums) and size."""

    sha256: str | None
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class ModelEntry:
    """A model version in the store (or built in).

    ``folder`` is the directory holding ``files``; :attr:`model_path` is what a model loader takes
    (the folder, or the ``.safetensors`` file for a single-file model).
    """

    id: str
    name: str
    version: str
    model_type: str
    folder: Path
    format: str = "folder"  # "folder" (config.json + model.safetensors) or "safetensors" (single file)
    weights_file: str = "model.safetensors"
    files: dict[str, FileRecord] = field(default_factory=dict)
    task: str | None = None
    license: str | None = None
    description: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    pumit_version: str | None = None
    source: str | None = None
    source_sha256: str | None = None
    installed_at: str | None = None
    builtin: bool = False

    @property
    def weights_sha256(self) -> str | None:
        """SHA-256 of the weights file."""
        rec = self.files.get(self.weights_file)
        return rec.sha256 if rec else None

    @property
    def size(self) -> int:
        """Total size of the model's files in bytes."""
        return sum(r.size for r in self.files.values())

    @property
    def model_path(self) -> Path:
        """The path to give a model loader: the folder, or the weights file of a single-file model."""
        return self.folder / self.weights_file if self.format == "safetensors" else self.folder

    def to_dict(self, *, location: bool = True) -> dict[str, Any]:
        """JSON-ready dictionary; ``location`` adds ``path``, ``model_path`` and ``builtin``
        (left out of the catalog, where the folder is implied by the id)."""
        d: dict[str, Any] = {
            "id": self.id, "name": self.name, "version": self.version, "model_type": self.model_type,
            "task": self.task, "format": self.format, "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256, "size": self.size,
            "files": {k: v.to_dict() for k, v in sorted(self.files.items())},
            "license": self.license, "description": self.description, "labels": dict(self.labels),
            "input": dict(self.input), "pumit_version": self.pumit_version, "source": self.source,
            "source_sha256": self.source_sha256, "installed_at": self.installed_at,
        }
        if location:
            d.update(path=str(self.folder), model_path=str(self.model_path), builtin=self.builtin)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], folder: Path, *, builtin: bool = False) -> ModelEntry:
        """Rebuild an entry from :meth:`to_dict` output (a catalog record)."""
        files = {
            str(k): FileRecord(v.get("sha256"), int(v.get("size", 0)))
            for k, v in (d.get("files") or {}).items()
            if isinstance(v, dict)
        }
        return cls(
            id=str(d["id"]), name=str(d["name"]), version=str(d["version"]), model_type=str(d.get("model_type")),
            folder=folder, format=str(d.get("format", "folder")),
            weights_file=str(d.get("weights_file", "model.safetensors")), files=files, task=d.get("task"),
            license=d.get("license"), description=d.get("description"), labels=dict(d.get("labels") or {}),
            input=dict(d.get("input") or {}), pumit_version=d.get("pumit_version"), source=d.get("source"),
            source_sha256=d.get("source_sha256"), installed_at=d.get("installed_at"), builtin=builtin,
        )


def labels_from_meta(meta: dict[str, Any]) -> dict[str, str]:
    """``meta["labels"]`` as ``{"0": "background", ...}`` (a list is numbered from 0)."""
    labels = meta.get("labels")
    if isinstance(labels, list):
        return {str(i): str(v) for i, v in enumerate(labels)}
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    return {}


def optional_str(value: Any) -> str | None:
    """``str(value)`` unless ``None``/empty."""
    return None if value is None or value == "" else str(value)
