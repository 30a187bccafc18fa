"""SHA-256 of files, and copying a file while hashing what was written."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_CHUNK = 4 * 1024 * 1024
_HEX_RE = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_and_hash(src: str | os.PathLike, dst: str | os.PathLike) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` (created, must not exist), flush it to disk, and return
    ``(sha256, size)`` of the bytes written, computed in the same pass."""
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest(), size


def normalize_sha256(value: str) -> str | None:
    """Lower-case hex digest, or ``None`` if ``value`` is not 64 hex digits (``sha256:`` prefix allowed)."""
    s = str(value).strip().lower()
    if s.startswith("sha256:"):
        s = s[len("sha256:"):]
    return s if _HEX_RE.fullmatch(s) else None


def tree_files(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under ``root`` (sorted), skipping hidden names
    (``.DS_Store``, ``.git``, ...)."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            if p.is_file():
                out.append(p.relative_to(root).as_posix())
    return sorted(out)
