"""Reading a model as given by the user: a folder, a lone ``.safetensors`` file, or an archive.

Only JSON and safetensors are ever parsed (never pickle). A model folder holds ``config.json`` and
``model.safetensors``; a lone ``.safetensors`` file carries the same config as JSON in its metadata
under ``pumit_config``; a ``.zip``/``.tar.gz``/``.tgz``/``.tar`` archive holds one of these.
"""

from __future__ import annotations

import errno
import json
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open

from pumit.errors import CancelledError, InputError, ModelError
from pumit.store.hashing import normalize_sha256, sha256_file, tree_files

#: Allowed values of ``config.json["model_type"]``: the keys of ``pumit.models.MODEL_TYPES``, repeated
#: here so that the store (and ``pumit models``) works without importing torch (a test keeps them in sync).
MODEL_TYPES: tuple[str, ...] = ("tokenizer", "vit", "mim", "classification", "segmentation")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: Optional file in a model folder: recorded SHA-256 of its files (see :func:`read_recorded_checksums`).
CHECKSUMS_FILE = "checksums.json"
#: safetensors metadata key holding a lone file's ``config.json`` content as a JSON string.
SAFETENSORS_CONFIG_KEY = "pumit_config"
#: Pickle-based checkpoint suffixes: refused, since loading them can run arbitrary code.
PICKLE_SUFFIXES: frozenset[str] = frozenset({".pt", ".pth", ".ckpt", ".pkl", ".pickle"})
ARCHIVE_SUFFIXES: tuple[str, ...] = (".zip", ".tar.gz", ".tgz", ".tar")


@dataclass
class ModelSource:
    """A model ready to be copied into the store.

    ``files`` maps each destination path (relative, POSIX) inside the store folder to its source file.
    ``recorded`` holds the SHA-256 the source itself declares for some destination paths
    (``checksums.json``, a ``.sha256`` side file, or a catalog next to the folder).
    """

    origin: Path
    kind: str  # "folder" or "safetensors"
    files: dict[str, Path]
    config: dict[str, Any]
    recorded: dict[str, str] = field(default_factory=dict)
    recorded_from: str | None = None
    origin_sha256: str | None = None  # of the lone file or archive the user gave

    @property
    def weights_file(self) -> str:
        """Destination path of the weights inside the store folder."""
        return WEIGHTS_FILE

    @property
    def meta(self) -> dict[str, Any]:
        """The config's free ``meta`` dictionary (empty if absent)."""
        m = self.config.get("meta")
        return m if isinstance(m, dict) else {}


def is_archive(path: Path) -> bool:
    """Whether ``path`` has an archive suffix (``.zip``, ``.tar.gz``, ``.tgz``, ``.tar``)."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def strip_model_suffix(name: str) -> str:
    """File name without ``.safetensors`` or an archive suffix."""
    low = name.lower()
    for s in (".safetensors",) + ARCHIVE_SUFFIXES:
        if low.endswith(s):
            return name[: -len(s)]
    return name


def validate_config(cfg: Any, where: str) -> dict[str, Any]:
    """Check the lead-defined layout ``{"model_type", "config", "pumit_version", "meta"}``."""
    if not isinstance(cfg, dict):
        raise ModelError(f"{where}: model config must be a JSON object")
    mt = cfg.get("model_type")
    if mt not in MODEL_TYPES:
        raise ModelError(f"{where}: model_type {mt!r} is not one of {', '.join(MODEL_TYPES)}")
    if not isinstance(cfg.get("config"), dict):
        raise ModelError(f"{where}: 'config' (the architecture) must be a JSON object")
    if "meta" in cfg and not isinstance(cfg["meta"], dict):
        raise ModelError(f"{where}: 'meta' must be a JSON object")
    return cfg


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read {path}: {e}") from e


def safetensors_metadata(path: Path) -> dict[str, str]:
    """Open a safetensors file's header (validating it covers the whole file) and return its metadata."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if not list(f.keys()):
                raise ModelError(f"weights file holds no tensors: {path}")
    except (ModelError, CancelledError):
        raise
    except Exception as e:  # safetensors raises its own error type for corrupt/truncated files
        raise ModelError(f"not a valid safetensors file (corrupt or truncated?): {path}: {e}") from e
    return dict(meta)


def read_model_config(path: str | os.PathLike) -> dict[str, Any]:
    """The model config of a model folder (``config.json``) or a lone ``.safetensors`` file (its
    ``pumit_config`` metadata). Validated; raises :class:`ModelError`."""
    p = Path(path)
    if p.is_dir():
        cfg_path = p / CONFIG_FILE
        if not cfg_path.is_file():
            raise ModelError(f"not a model folder (no {CONFIG_FILE}): {p}")
        return validate_config(_load_json(cfg_path), str(cfg_path))
    if p.suffix.lower() == ".safetensors":
        meta = safetensors_metadata(p)
        raw = meta.get(SAFETENSORS_CONFIG_KEY)
        if raw is None:
            raise ModelError(
                f"{p} has no '{SAFETENSORS_CONFIG_KEY}' metadata: not a pumit model file "
                f"(install a folder with {CONFIG_FILE} + {WEIGHTS_FILE} instead)"
            )
        try:
            cfg = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ModelError(f"{p}: '{SAFETENSORS_CONFIG_KEY}' metadata is not valid JSON: {e}") from e
        return validate_config(cfg, str(p))
    raise ModelError(f"not a model folder or .safetensors file: {p}")


def _checksum_map(data: Any, where: str) -> dict[str, str]:
    """Accept ``{"file": "hex"}``, ``{"file": {"sha256": "hex"}}``, or either wrapped in ``{"files": ...}``."""
    if isinstance(data, dict) and isinstance(data.get("files"), dict):
        data = data["files"]
    if not isinstance(data, dict):
        raise ModelError(f"{where}: expected a JSON object mapping file names to SHA-256")
    out: dict[str, str] = {}
    for name, value in data.items():
        raw = value.get("sha256") if isinstance(value, dict) else value
        if raw is None:
            continue
        digest = normalize_sha256(str(raw))
        if digest is None:
            raise ModelError(f"{where}: SHA-256 of {name!r} is not 64 hex digits: {raw!r}")
        out[str(name).replace("\\", "/")] = digest
    return out


def _sidecar_sha256(path: Path) -> str | None:
    """A ``<file>.sha256`` (or ``.sha256sum``) side file's digest (first word), if present."""
    for suffix in (".sha256", ".sha256sum"):
        side = path.with_name(path.name + suffix)
        if side.is_file():
            words = side.read_text(encoding="utf-8", errors="replace").split()
            digest = normalize_sha256(words[0]) if words else None
            if digest is None:
                raise ModelError(f"{side}: does not start with a 64-hex-digit SHA-256")
            return digest
    return None


def read_recorded_checksums(folder: Path) -> tuple[dict[str, str], str | None]:
    """Checksums a model folder declares for its files: its ``checksums.json``, else the entry for
    the folder in a ``catalog.json`` next to it (a copy of a store). Returns ``(map, where)``."""
    own = folder / CHECKSUMS_FILE
    if own.is_file():
        return _checksum_map(_load_json(own), str(own)), str(own)
    cat = folder.parent / "catalog.json"
    if cat.is_file():
        data = _load_json(cat)
        models = data.get("models") if isinstance(data, dict) else None
        entry = models.get(folder.name) if isinstance(models, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("files"), dict):
            return _checksum_map(entry["files"], f"{cat} [{folder.name}]"), f"{cat} [{folder.name}]"
    return {}, None


def is_pickle_file(path: Path) -> bool:
    """Whether ``path`` is a pickle whatever its name: a pickle protocol 2-5 header, or a ``torch.save``
    zip archive (holding ``data.pkl``). Only the first bytes (and a zip's member list) are read."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            return True
        if head == b"PK\x03\x04":
            with zipfile.ZipFile(path) as zf:
                return any(n == "data.pkl" or n.endswith("/data.pkl") for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return False


def _open_folder(folder: Path, origin: Path) -> ModelSource:
    names = tree_files(folder)
    pickles = [n for n in names if Path(n).suffix.lower() in PICKLE_SUFFIXES
               or (not n.lower().endswith((".json", ".safetensors", ".md", ".txt")) and is_pickle_file(folder / n))]
    if pickles:
        raise ModelError(
            f"model folder {folder} holds pickle checkpoints ({', '.join(pickles)}), which are never loaded; "
            "remove them (weights must be in model.safetensors)"
        )
    if CONFIG_FILE not in names or WEIGHTS_FILE not in names:
        raise ModelError(f"not a model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}): {folder}")
    config = read_model_config(folder)
    safetensors_metadata(folder / WEIGHTS_FILE)
    recorded, where = read_recorded_checksums(folder)
    missing = sorted(set(recorded) - set(names))
    if missing:
        raise ModelError(f"{where} lists files missing from {folder}: {', '.join(missing)}")
    return ModelSource(origin, "folder", {n: folder / n for n in names}, config, recorded, where)


def _open_lone_file(path: Path, origin: Path) -> ModelSource:
    config = read_model_config(path)
    recorded: dict[str, str] = {}
    where = None
    side = _sidecar_sha256(path)
    if side is not None:
        recorded, where = {WEIGHTS_FILE: side}, f"{path.name}.sha256"
    return ModelSource(origin, "safetensors", {WEIGHTS_FILE: path}, config, recorded, where)


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract without letting members escape ``dest`` (absolute paths, ``..``, links, devices)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    parts = Path(info.filename.replace("\\", "/")).parts
                    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                    if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in info.filename or is_link:
                        raise ModelError(f"unsafe member {info.filename!r} in archive {archive}")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")
    except ModelError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as e:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise
        raise ModelError(f"cannot extract archive {archive} (corrupt or unsafe?): {e}") from e


def _archive_root(dest: Path, archive: Path) -> Path:
    """The model folder or lone ``.safetensors`` file inside an extracted archive."""
    here = dest
    for _ in range(2):
        if (here / CONFIG_FILE).is_file():
            return here
        children = [c for c in here.iterdir() if not c.name.startswith(".") and c.name != "__MACOSX"]
        if len(children) == 1 and children[0].is_dir():
            here = children[0]
            continue
        if len(children) == 1 and children[0].suffix.lower() == ".safetensors":
            return children[0]
        break
    raise ModelError(
        f"archive {archive} holds neither a model folder ({CONFIG_FILE} + {WEIGHTS_FILE}) "
        "nor a single .safetensors file"
    )


def open_source(path: str | os.PathLike, workdir: Path) -> ModelSource:
    """Inspect and validate a model folder, ``.safetensors`` file or archive (extracted under
    ``workdir``). Raises :class:`InputError` if it does not exist, :class:`ModelError` if it is not a
    valid pumit model."""
    origin = Path(path).expanduser()
    if not origin.exists():
        raise InputError(f"model not found: {origin}")
    origin = origin.resolve()
    if origin.is_dir():
        return _open_folder(origin, origin)
    if origin.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(f"pickle checkpoints are never loaded (unsafe): {origin}; convert the weights to safetensors")
    if origin.suffix.lower() == ".safetensors":
        src = _open_lone_file(origin, origin)
    elif is_archive(origin):
        extracted = workdir / "extracted"
        _safe_extract(origin, extracted)
        root = _archive_root(extracted, origin)
        src = _open_folder(root, origin) if root.is_dir() else _open_lone_file(root, origin)
    else:
        raise ModelError(
            f"unsupported model file {origin}: expected a folder, a .safetensors file or a .zip/.tar.gz archive"
        )
    src.origin_sha256 = sha256_file(origin)
    side = _sidecar_sha256(origin) if is_archive(origin) else None
    if side is not None and side != src.origin_sha256:
        raise ModelError(f"checksum mismatch: {origin} has SHA-256 {src.origin_sha256}, its .sha256 file says {side}")
    return src
