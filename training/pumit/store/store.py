""":class:`ModelStore`: the versioned local model store (install, list, info, resolve, verify, remove).

Layout of a store folder::

    <root>/catalog.json          ids → name, version, checksums, sizes, license, labels, input, source, date
    <root>/<name>-vX.Y.Z/        one folder per model version, files copied verbatim from the source
    <root>/.catalog.lock         inter-process lock guarding catalog read-modify-write
    <root>/.staging/, .trash/    temporary folders of installs and removals in progress

An install copies the model into ``.staging`` (hashing as it copies), checks the checksums, then,
holding the lock, renames the folder into place and rewrites the catalog atomically; a failure at
any point leaves the store as it was. Ids are never overwritten.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pumit.errors import CancelledError, InputError, ModelError, PumitError, ResourceError
from pumit.store.catalog import CATALOG_FILE, load_catalog, save_catalog
from pumit.store.entry import FileRecord, ModelEntry, labels_from_meta, optional_str
from pumit.store.hashing import copy_and_hash, normalize_sha256, sha256_file, tree_files
from pumit.store.ids import ModelId, Version, is_full_id, parse_id_or_name, slugify_name, validate_name
from pumit.store.locking import FileLock
from pumit.store.paths import builtin_model_dirs, default_store_root
from pumit.store.source import (
    ARCHIVE_SUFFIXES,
    ModelSource,
    open_source,
    read_model_config,
    read_recorded_checksums,
    safetensors_metadata,
    strip_model_suffix,
)
from pumit.store.verify import verify_files

#: Version given to a model whose source names none.
DEFAULT_VERSION = Version(1, 0, 0)
_STALE_STAGING_S = 24 * 3600


class ModelStore:
    """The user's model store at ``root`` (default :func:`~pumit.store.paths.default_store_root`,
    i.e. ``$PUMIT_HOME/models`` or the platform user data folder), plus read-only built-in models
    from ``builtin_dirs`` (default :func:`~pumit.store.paths.builtin_model_dirs`).

    Nothing is created on disk until the first install.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        builtin_dirs: Sequence[str | os.PathLike] | None = None,
        lock_timeout: float = 120.0,
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else default_store_root()
        self.builtin_dirs = [Path(d) for d in (builtin_model_dirs() if builtin_dirs is None else builtin_dirs)]
        self.lock_timeout = lock_timeout

    # ------------------------------------------------------------------ paths

    @property
    def catalog_path(self) -> Path:
        """``<root>/catalog.json``."""
        return self.root / CATALOG_FILE

    def _lock(self) -> FileLock:
        return FileLock(self.root / ".catalog.lock", timeout=self.lock_timeout)

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # ------------------------------------------------------------------ queries

    def _user_entries(self) -> dict[str, ModelEntry]:
        return {mid: ModelEntry.from_dict(rec, self.root / mid) for mid, rec in load_catalog(self.catalog_path).items()}

    def _builtin_entries(self) -> dict[str, ModelEntry]:
        out: dict[str, ModelEntry] = {}
        for d in self.builtin_dirs:
            if not d.is_dir():
                continue
            for child in sorted(d.iterdir()):
                stem = child.name if child.is_dir() else strip_model_suffix(child.name)
                if child.name.startswith(".") or not is_full_id(stem):
                    continue
                if not (child.is_dir() or child.suffix.lower() == ".safetensors"):
                    continue
                mid = str(ModelId.parse(stem))
                if mid in out:
                    continue
                try:
                    out[mid] = _builtin_entry(child, ModelId.parse(stem))
                except CancelledError:
                    raise  # a cancel (SIGTERM) while listing is never a broken model
                except PumitError as e:
                    warnings.warn(f"skipping broken built-in model {child}: {e}", stacklevel=2)
        return out

    def _all_entries(self) -> dict[str, ModelEntry]:
        entries = self._builtin_entries()
        entries.update(self._user_entries())  # a user model shadows a built-in of the same id
        return entries

    def list(self) -> list[ModelEntry]:
        """All models, the store's and the built-in ones, sorted by name then version."""
        return sorted(self._all_entries().values(), key=lambda e: ModelId.parse(e.id))

    def ids(self) -> list[str]:
        """All available model ids, sorted."""
        return [e.id for e in self.list()]

    def versions(self, name: str) -> list[str]:
        """Available versions of ``name``, oldest first."""
        n = validate_name(name)
        return [e.version for e in self.list() if e.name == n]

    def next_version(self, name: str) -> str:
        """The version a new model of ``name`` gets: the latest version's patch + 1 (``1.0.0`` if none)."""
        return str(_next_version(self._all_entries(), validate_name(name)))

    def _find(self, id_or_name: str) -> ModelEntry:
        name, version = parse_id_or_name(id_or_name)
        entries = self._all_entries()
        if version is not None:
            found = entries.get(str(ModelId(name, version)))
        else:
            same = [e for e in entries.values() if e.name == name]
            found = max(same, key=lambda e: Version.parse(e.version)) if same else None
        if found is None:
            raise ModelError(f"unknown model {id_or_name!r}; {_available(entries)}")
        return found

    def info(self, id_or_name: str) -> ModelEntry:
        """The entry of a full id, or of a bare name's latest version; raises :class:`ModelError` if unknown.

        For a built-in model without recorded checksums they are computed now.
        """
        entry = self._find(id_or_name)
        if entry.builtin and any(r.sha256 is None for r in entry.files.values()):
            files = {k: FileRecord(sha256_file(entry.folder / k), r.size) for k, r in entry.files.items()}
            entry = replace(entry, files=files)
        return entry

    def resolve(self, id_or_path: str | os.PathLike) -> Path:
        """The path to load a model from (a model folder, or a ``.safetensors`` file).

        A path object, or text that looks like a path (has a separator, starts with ``.``/``~`` or ends
        in ``.safetensors``), is checked and returned resolved. Other text is read as a model id or a
        bare name (its latest version) and looked up in the store and the built-ins; only if no model
        has that id is an existing file or folder of that name in the working directory used.
        Raises :class:`InputError` for a missing path or malformed id, :class:`ModelError` for an
        unknown id (listing the available ones), a non-model path or a model whose files are gone.
        """
        text = os.fspath(id_or_path)
        p = Path(text).expanduser()
        if isinstance(id_or_path, os.PathLike) or _looks_like_path(text):
            return self._verified_path(_check_model_path(p))
        try:
            entry = self._find(text)
        except CancelledError:
            raise
        except PumitError as e:
            if p.exists():
                return self._verified_path(_check_model_path(p))
            if isinstance(e, InputError):
                raise InputError(f"{e}; {_available(self._all_entries())}") from None
            raise
        if not entry.model_path.exists():
            raise ModelError(f"files of model {entry.id} are missing from {entry.folder}; remove and reinstall it")
        self._verify_entry(entry)
        return entry.model_path

    def _verify_entry(self, entry: ModelEntry) -> None:
        """Check the files of ``entry`` against the checksums recorded at install (or shipped with a built-in
        model) before it is used; see :mod:`pumit.store.verify`."""
        expected = {rel: r.sha256 for rel, r in entry.files.items() if r.sha256}
        if expected:
            verify_files(expected, entry.folder, entry.id)

    def _verified_path(self, p: Path) -> Path:
        """A model path given directly, checked against what it records: the store's catalog when it is a
        store folder, else its own ``checksums.json`` (a lone file: its ``.sha256`` side file). A folder that
        records no checksums cannot be checked."""
        if p.is_dir():
            if p.parent == self.root.resolve() and is_full_id(p.name):
                entry = self._user_entries().get(p.name)
                if entry is not None:
                    self._verify_entry(entry)
                    return p
            recorded, _ = read_recorded_checksums(p)
            if recorded:
                verify_files(recorded, p, str(p))
            return p
        side = p.with_name(p.name + ".sha256")
        if side.is_file():
            digest = normalize_sha256((side.read_text(encoding="utf-8", errors="replace").split() or [""])[0])
            if digest:
                verify_files({p.name: digest}, p.parent, str(p))
        return p

    def verify(self, id_or_name: str) -> ModelEntry:
        """Recompute every file's SHA-256 and compare with the catalog; also check that the config and
        the safetensors header parse. Raises :class:`ModelError` naming each problem (tampered,
        missing or unexpected files). Returns the entry when all is well."""
        entry = self._find(id_or_name)
        if not entry.folder.is_dir():
            raise ModelError(f"model {entry.id} failed verification: folder {entry.folder} is missing")
        problems: list[str] = []
        for rel, rec in sorted(entry.files.items()):
            f = entry.folder / rel
            if not f.is_file():
                problems.append(f"{rel}: missing")
            elif rec.sha256 is not None and sha256_file(f) != rec.sha256:
                problems.append(f"{rel}: SHA-256 mismatch (modified or corrupt)")
        if not entry.builtin or entry.format == "folder":
            extra = sorted(set(tree_files(entry.folder)) - set(entry.files))
            problems += [f"{rel}: unexpected file" for rel in extra]
        if not problems:
            try:
                read_model_config(entry.model_path)
                safetensors_metadata(entry.folder / entry.weights_file)
            except ModelError as e:
                problems.append(str(e))
        if problems:
            raise ModelError(f"model {entry.id} failed verification: {'; '.join(problems)}")
        return entry

    # ------------------------------------------------------------------ changes

    def install(
        self,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        version: str | None = None,
        expected_sha256: str | None = None,
        origin: tuple[str, str | None] | None = None,
    ) -> ModelEntry:
        """Copy a model (folder, ``.safetensors`` file, or ``.zip``/``.tar.gz`` archive) into the store.

        ``origin`` = ``(source, sha256)`` replaces the catalog's ``source``/``source_sha256`` (e.g. the
        ``.ckpt`` a converted model was made from, see :mod:`pumit.store.import_pumit`).

        ``name`` and ``version`` default to the model's ``meta.name``/``meta.version``, then to a
        ``name-vX.Y.Z`` file or folder name, then (version only) to ``1.0.0``. ``expected_sha256`` must
        equal the SHA-256 of the file given or of the weights (``model.safetensors``).

        Raises :class:`ModelError` (and leaves nothing behind) if the id already exists, the
        checksum does not match ``expected_sha256`` or the source's own ``checksums.json`` /
        ``.sha256`` file / catalog, or the model is invalid; :class:`InputError` for a missing path or
        malformed name/version/checksum; :class:`ResourceError` when the disk is full.
        """
        return self._install(path, name=name, version=Version.parse(version) if version else None,
                             expected_sha256=expected_sha256, bump=False, origin=origin)

    def register_new_version(self, src_dir: str | os.PathLike, name: str) -> ModelEntry:
        """Install ``src_dir`` (e.g. a fine-tuned model) as the next patch version of ``name``.

        The version is chosen while holding the store lock, so concurrent registrations get distinct
        versions.
        """
        return self._install(src_dir, name=validate_name(name), version=None, expected_sha256=None, bump=True)

    def remove(self, model_id: str) -> ModelEntry:
        """Delete a model version from the store (a full id is required). Built-in models cannot be
        removed. Returns the removed entry."""
        if not is_full_id(model_id):
            parse_id_or_name(model_id)  # raises for malformed text
            versions = ", ".join(self.versions(model_id)) or "none"
            raise InputError(
                f"give the full id to remove (NAME-vX.Y.Z), not the bare name {model_id!r}; versions: {versions}"
            )
        mid = str(ModelId.parse(model_id))
        try:
            with self._lock():
                catalog = load_catalog(self.catalog_path)
                if mid not in catalog:
                    if mid in self._builtin_entries():
                        raise ModelError(f"{mid} is a built-in model and cannot be removed")
                    raise ModelError(f"unknown model {mid!r}; {_available(self._all_entries())}")
                entry = ModelEntry.from_dict(catalog.pop(mid), self.root / mid)
                save_catalog(self.catalog_path, catalog)
                self._discard(entry.folder)
        except OSError as e:
            raise _os_error(e, self.root) from e
        return entry

    # ------------------------------------------------------------------ install internals

    def _install(
        self,
        path: str | os.PathLike,
        *,
        name: str | None,
        version: Version | None,
        expected_sha256: str | None,
        bump: bool,
        origin: tuple[str, str | None] | None = None,
    ) -> ModelEntry:
        if name is not None:
            name = validate_name(name)
        expected = None
        if expected_sha256:
            expected = normalize_sha256(expected_sha256)
            if expected is None:
                raise InputError(f"--sha256 must be 64 hexadecimal digits, got {expected_sha256!r}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging_root = self.root / ".staging"
            staging_root.mkdir(exist_ok=True)
            _clean_stale(staging_root)
            staging = Path(tempfile.mkdtemp(prefix="install-", dir=staging_root))
        except OSError as e:
            raise _os_error(e, self.root) from e
        try:
            src = open_source(path, staging / "work")
            name, version = _choose_id(src, name, version)
            if not bump:
                self._check_new_id(str(ModelId(name, version or DEFAULT_VERSION)), self._all_entries())
            files = _copy_files(src, staging / "model")
            _check_checksums(src, files, expected)
            record = _record(src, name, files)
            if origin is not None:
                record.update(source=str(origin[0]), source_sha256=origin[1])
            with self._lock():
                catalog = load_catalog(self.catalog_path)
                entries = self._builtin_entries()
                entries.update({k: ModelEntry.from_dict(v, self.root / k) for k, v in catalog.items()})
                if bump:
                    version = _next_version(entries, name)
                model_id = ModelId(name, version or DEFAULT_VERSION)
                mid = str(model_id)
                self._check_new_id(mid, entries)
                record.update(id=mid, version=str(model_id.version))
                target = self.root / mid
                if target.exists():  # left over by a crash between rename and catalog write: not in the catalog
                    self._discard(target)
                os.replace(staging / "model", target)
                catalog[mid] = record
                try:
                    save_catalog(self.catalog_path, catalog)
                except BaseException:
                    os.replace(target, staging / "model")
                    raise
        except OSError as e:
            raise _os_error(e, self.root) from e
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ModelEntry.from_dict(record, self.root / mid)

    @staticmethod
    def _check_new_id(mid: str, entries: dict[str, ModelEntry]) -> None:
        if mid in entries:
            where = "a built-in model" if entries[mid].builtin else "already installed"
            name = mid.rsplit("-v", 1)[0]
            raise ModelError(
                f"model {mid} is {where}; ids are never overwritten: install with another --version "
                f"(next free: {_next_version(entries, name)}) or remove {mid} first"
            )

    def _discard(self, folder: Path) -> None:
        """Move a folder out of the way (atomic rename into ``.trash``) and delete it."""
        if not folder.exists():
            return
        trash = self.root / ".trash"
        trash.mkdir(exist_ok=True)
        dest = Path(tempfile.mkdtemp(prefix=f"{folder.name}-", dir=trash))
        os.replace(folder, dest / "model")
        for leftover in trash.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)  # files still open (Windows) are retried next time


def register_new_version(src_dir: str | os.PathLike, name: str, *, store: ModelStore | None = None) -> ModelEntry:
    """Install a fine-tuned model folder as the next patch version of ``name`` in ``store``
    (default: the user's store). See :meth:`ModelStore.register_new_version`."""
    return (store or ModelStore()).register_new_version(src_dir, name)


# ---------------------------------------------------------------------- helpers


def _available(entries: dict[str, ModelEntry]) -> str:
    if not entries:
        return "no models are installed (add one with: pumit models install FILE_OR_DIR)"
    return "available: " + ", ".join(sorted(entries, key=ModelId.parse))


def _looks_like_path(text: str) -> bool:
    low = text.lower()
    return (
        "/" in text or "\\" in text or text.startswith(("~", "."))
        or low.endswith((".safetensors", ".json") + ARCHIVE_SUFFIXES)
    )


def _check_model_path(p: Path) -> Path:
    """``p`` resolved, if it is a model folder or a ``.safetensors`` file."""
    if not p.exists():
        raise InputError(f"model path not found: {p}")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(f"not a model folder (no config.json): {p}")
    elif p.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise ModelError(f"archives cannot be loaded directly; install it first: pumit models install {p}")
    elif p.suffix.lower() != ".safetensors":
        raise ModelError(f"not a model folder or .safetensors file: {p}")
    return p.resolve()


def _next_version(entries: dict[str, ModelEntry], name: str) -> Version:
    versions = [Version.parse(e.version) for e in entries.values() if e.name == name]
    return max(versions).bump_patch() if versions else DEFAULT_VERSION


def _choose_id(src: ModelSource, name: str | None, version: Version | None) -> tuple[str, Version | None]:
    """Name and version from the arguments, else the model's meta, else a ``name-vX.Y.Z`` file name."""
    stem = strip_model_suffix(src.origin.name)
    stem_id = ModelId.parse(stem) if is_full_id(stem) else None
    meta = src.meta
    if name is None:
        meta_name = slugify_name(str(meta["name"])) if meta.get("name") else None
        name = meta_name or (stem_id.name if stem_id else slugify_name(stem))
        if name is None:
            raise InputError(f"cannot derive a model name from {src.origin}; pass --name NAME")
    if version is None:
        if meta.get("version") not in (None, ""):
            try:
                version = Version.parse(str(meta["version"]))
            except InputError:
                raise ModelError(
                    f"meta.version {meta['version']!r} of {src.origin} is not a semantic version X.Y.Z; "
                    "pass --version X.Y.Z"
                ) from None
        elif stem_id is not None and stem_id.name == name:
            version = stem_id.version
    return name, version


def _copy_files(src: ModelSource, dest: Path) -> dict[str, FileRecord]:
    files: dict[str, FileRecord] = {}
    dest.mkdir(parents=True)
    for rel, path in sorted(src.files.items()):
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        digest, size = copy_and_hash(path, out)
        files[rel] = FileRecord(digest, size)
    return files


def _check_checksums(src: ModelSource, files: dict[str, FileRecord], expected: str | None) -> None:
    bad = [rel for rel, digest in sorted(src.recorded.items()) if files[rel].sha256 != digest]
    if bad:
        raise ModelError(
            f"checksum mismatch for {', '.join(bad)} of {src.origin}: the files do not match {src.recorded_from} "
            "(corrupt download or modified files); nothing was installed"
        )
    if expected is not None and expected not in (src.origin_sha256, files[src.weights_file].sha256):
        got = src.origin_sha256 or files[src.weights_file].sha256
        raise ModelError(
            f"checksum mismatch for {src.origin}: expected SHA-256 {expected}, got {got}; nothing was installed"
        )


def _record(src: ModelSource, name: str, files: dict[str, FileRecord]) -> dict[str, Any]:
    """Catalog record (without ``id``/``version``, set under the lock)."""
    meta = src.meta
    inp = meta.get("input")
    entry = ModelEntry(
        id="", name=name, version="", model_type=str(src.config["model_type"]), folder=Path(), format=src.kind,
        weights_file=src.weights_file, files=files,
        task=optional_str(meta.get("task")) or str(src.config["model_type"]),
        license=optional_str(meta.get("license")), description=optional_str(meta.get("description")),
        labels=labels_from_meta(meta), input=inp if isinstance(inp, dict) else {},
        pumit_version=optional_str(src.config.get("pumit_version")), source=str(src.origin),
        source_sha256=src.origin_sha256, installed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return entry.to_dict(location=False)


def _builtin_entry(path: Path, mid: ModelId) -> ModelEntry:
    """Entry of a built-in model folder ``<id>/`` or file ``<id>.safetensors`` (checksums from its
    ``checksums.json``, a ``catalog.json`` beside it, or a ``.sha256`` side file; else ``None``)."""
    config = read_model_config(path)
    meta = config.get("meta") if isinstance(config.get("meta"), dict) else {}
    if path.is_dir():
        recorded, _ = read_recorded_checksums(path)
        names = tree_files(path)
        folder, fmt, weights = path, "folder", "model.safetensors"
    else:
        side = path.with_name(path.name + ".sha256")
        recorded = {path.name: normalize_sha256(side.read_text().split()[0]) or ""} if side.is_file() else {}
        names, folder, fmt, weights = [path.name], path.parent, "safetensors", path.name
    files = {n: FileRecord(recorded.get(n), (folder / n).stat().st_size) for n in names}
    inp = meta.get("input")
    return ModelEntry(
        id=str(mid), name=mid.name, version=str(mid.version), model_type=str(config["model_type"]), folder=folder,
        format=fmt, weights_file=weights, files=files,
        task=optional_str(meta.get("task")) or str(config["model_type"]), license=optional_str(meta.get("license")),
        description=optional_str(meta.get("description")), labels=labels_from_meta(meta),
        input=inp if isinstance(inp, dict) else {}, pumit_version=optional_str(config.get("pumit_version")),
        source=str(path), builtin=True,
    )


def _clean_stale(staging_root: Path) -> None:
    """Delete staging folders left by crashed installs (untouched for a day)."""
    now = time.time()
    for d in staging_root.iterdir():
        try:
            if now - d.stat().st_mtime > _STALE_STAGING_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _os_error(e: OSError, root: Path) -> PumitError:
    """A one-line user error for a file-system failure while reading a source or writing the store."""
    if e.errno == errno.ENOSPC:
        return ResourceError(f"not enough disk space for the model store at {root}; free space or set PUMIT_HOME")
    where = Path(os.fsdecode(e.filename)) if e.filename else None
    in_store = where is None or root in (where, *where.parents)
    if isinstance(e, PermissionError):
        if in_store:
            return InputError(f"cannot write to the model store at {root}: permission denied (set PUMIT_HOME)")
        return InputError(f"permission denied: {where}")
    return InputError(f"{'model store at ' + str(root) if in_store else where}: {e.strerror or e}")
