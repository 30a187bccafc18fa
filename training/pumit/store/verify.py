"""Checking a model's files against their recorded SHA-256 each time it is loaded, with a cache.

``pumit models verify`` checks a model on request; :func:`verify_files` is what every load does
(:meth:`pumit.store.ModelStore.resolve`): a tampered or corrupt ``model.safetensors`` / ``config.json``
is refused with :class:`~pumit.errors.ModelError` (exit 3) instead of being used silently.

Hashing a large model on every run would cost seconds, so a file whose size and modification time
(nanoseconds) are those recorded in the cache the last time it hashed correctly is not hashed again.
The cache is ``<user data dir>/cache/verified.json`` (``{path: [size, mtime_ns, sha256]}``); when it
cannot be written, every load hashes.
"""

from __future__ import annotations

import json
from pathlib import Path

from pumit.atomic import atomic_write_text
from pumit.errors import ModelError
from pumit.store.hashing import sha256_file
from pumit.store.paths import user_data_dir

_MAX_ENTRIES = 512


def cache_path() -> Path:
    """``<user data dir>/cache/verified.json`` (see :func:`pumit.store.paths.user_data_dir`)."""
    return user_data_dir() / "cache" / "verified.json"


def _read_cache(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def verify_files(expected: dict[str, str], folder: Path, model: str, *, cache: Path | None = None) -> int:
    """Check every ``folder / rel`` against ``expected[rel]`` (hex SHA-256); returns how many files were
    hashed (0 when the cache vouched for all of them).

    Raises :class:`ModelError` naming the model and the file for a mismatch or a missing file.
    """
    cache = cache_path() if cache is None else cache
    known = _read_cache(cache)
    hashed = 0
    changed = False
    for rel, digest in sorted(expected.items()):
        f = folder / rel
        try:
            st = f.stat()
        except OSError:
            raise ModelError(f"model {model}: {rel} is missing from {folder}; reinstall the model") from None
        key = str(f.resolve())
        rec = known.get(key)
        if isinstance(rec, list) and rec == [st.st_size, st.st_mtime_ns, digest]:
            continue
        hashed += 1
        if sha256_file(f) != digest:
            raise ModelError(f"model {model}: {rel} does not match its recorded SHA-256 (modified or corrupt); "
                             f"refusing to use it (details: pumit models verify {model}; reinstall the model)")
        known[key] = [st.st_size, st.st_mtime_ns, digest]
        changed = True
    if changed:
        if len(known) > _MAX_ENTRIES:
            known = dict(list(known.items())[-_MAX_ENTRIES:])
        try:
            atomic_write_text(cache, json.dumps(known, indent=0))
        except OSError:
            pass  # a read-only home: verify by hashing every time
    return hashed
