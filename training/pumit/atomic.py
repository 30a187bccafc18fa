"""Atomic file writes (temporary file in the same folder + ``os.replace``); torch-free so light tools import fast.

Temporary files carry the writer's host and process id in their name, so that the temporary files of a
killed process are recognised and removed by the next run (:func:`clean_stale_temps`)."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from pathlib import Path


def default_file_mode(path: str | os.PathLike) -> None:
    """Give a ``mkstemp`` file (mode 0600) the permissions a plain ``open`` would (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` atomically (temporary file in the same folder + ``os.replace``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(p)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        default_file_mode(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


#: Temporary files of atomic writes are named ``.NAME.pumit-HOST-PID-RANDOM.tmp[SUFFIX]`` so that a later run
#: can tell those of a dead process (killed with SIGKILL, crashed) from those of a live one.
_TEMP_RE = re.compile(r"^\..+\.pumit-(?P<host>[A-Za-z0-9-]{1,40})-(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp")


#: Names of the temporary files of earlier pumit versions (``mkstemp``: 8 random characters, no process id):
#: removed only when untouched for :data:`LEGACY_TEMP_AGE_S` seconds.
_LEGACY_TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9.]+)?$")
LEGACY_TEMP_AGE_S = 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def temp_file(final: str | os.PathLike, suffix: str = "") -> tuple[int, Path]:
    """``(fd, path)`` of a new temporary file beside ``final`` (``mkstemp``, mode 0600) whose name records this
    host and process id (see :func:`clean_stale_temps`); ``suffix`` is appended after ``.tmp`` (writers
    that pick the format from the name need it)."""
    p = Path(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.pumit-{_host()}-{os.getpid()}-", suffix=f".tmp{suffix}",
                               dir=p.parent)
    return fd, Path(tmp)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's process), or cannot tell: keep its files
    return True


def clean_stale_temps(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """Delete the temporary files of atomic writes in ``folder`` whose process (on this host) is gone, e.g.
    killed during the write stage (and those of earlier pumit versions untouched for an hour). Returns
    ``(path, size in bytes)`` of each file removed."""
    removed: list[tuple[Path, int]] = []
    host = _host()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        m = _TEMP_RE.match(e.name)
        try:
            if m is not None:
                if m["host"] != host or _alive(int(m["pid"])):
                    continue
            elif not (_LEGACY_TEMP_RE.match(e.name) and e.is_file()
                      and now - e.stat().st_mtime > LEGACY_TEMP_AGE_S):
                continue
            size = e.stat().st_size
            os.unlink(e.path)
            removed.append((Path(e.path), size))
        except OSError:
            pass
    return removed


def describe_removed(removed: list[tuple[Path, int]]) -> str:
    """``"removed N stale temporary file(s) (X MB) left by killed pumit runs in FOLDER"``."""
    total = sum(s for _, s in removed)
    folders = sorted({str(p.parent) for p, _ in removed})
    return (f"removed {len(removed)} stale temporary file(s) ({total / 1e6:.1f} MB) left by killed pumit runs in "
            f"{', '.join(folders)}")
