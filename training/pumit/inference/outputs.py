"""All-or-nothing writing of a command's output files, output-path checks and the labels sidecar.

A command's outputs (label map, sidecar JSON, probabilities, montage, ...) are first written to
temporary names in their target folders (:meth:`OutputTransaction.add_image` & co.) and only renamed
into place by :meth:`OutputTransaction.commit` once every one of them was written. A failure (full
disk, unwritable folder, cancel) removes the temporary files, and a failure while renaming removes
the files already renamed, so no partial set of outputs is left behind. A process killed outright
(SIGKILL) cannot clean up: its temporary files (named with its process id) are removed, and reported,
by the next transaction writing into that folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from pumit.atomic import clean_stale_temps, default_file_mode, describe_removed, temp_file
from pumit.errors import InputError, ResourceError
from pumit.headers import written_image_problem
from pumit.imageio import full_suffix, native_stderr

#: Single-file image formats accepted for outputs (two-file formats such as .mhd/.nhdr are not atomic).
IMAGE_OUTPUT_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")

SIDECAR_SUFFIX = ".labels.json"




def sidecar_path(output: str | os.PathLike) -> Path:
    """The labels sidecar of a label-map file: its full suffix (``.nii.gz``, ``.nrrd``, ...) replaced by
    ``.labels.json`` (``seg.nii.gz`` → ``seg.labels.json``)."""
    p = Path(output)
    suffix = full_suffix(p)
    stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
    return p.with_name(stem + SIDECAR_SUFFIX)


def check_image_output(path: str | os.PathLike, option: str = "-o") -> Path:
    """Validate an output image path early (before any work): a supported single-file format and an
    existing-or-creatable folder. Raises :class:`InputError`."""
    p = Path(path)
    name = p.name.lower()
    if not name or p.is_dir():
        raise InputError(f"{option} {p}: is a folder; give an output file name such as result.nii.gz")
    if not name.endswith(IMAGE_OUTPUT_SUFFIXES):
        raise InputError(f"{option} {p}: unsupported output format {full_suffix(p) or '(none)'!r}; use one of "
                         f"{', '.join(IMAGE_OUTPUT_SUFFIXES)}")
    _check_folder(p, option)
    return p


def check_file_output(path: str | os.PathLike, suffixes: tuple[str, ...], option: str) -> Path:
    """Validate a non-image output path (``.json``, ``.png``)."""
    p = Path(path)
    if p.is_dir() or not p.name:
        raise InputError(f"{option} {p}: is a folder; give a file name")
    if not p.name.lower().endswith(suffixes):
        raise InputError(f"{option} {p}: expected a {' or '.join(suffixes)} file")
    _check_folder(p, option)
    return p


def _check_folder(p: Path, option: str) -> None:
    parent = p.parent if str(p.parent) else Path(".")
    existing = parent
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise InputError(f"{option} {p}: {existing} is a file, not a folder")
    if existing.exists() and not os.access(existing, os.W_OK):
        raise InputError(f"{option} {p}: folder {existing} is not writable")


def check_distinct(paths: Iterable[tuple[str, Path | None]], input_path: Path | None = None) -> None:
    """Refuse two outputs with the same path, or an output overwriting the input."""
    seen: dict[Path, str] = {}
    inp = input_path.resolve() if input_path is not None else None
    for option, p in paths:
        if p is None:
            continue
        r = p.resolve()
        if inp is not None and r == inp:
            raise InputError(f"{option} {p} would overwrite the input; choose another output name")
        if r in seen:
            raise InputError(f"{option} {p} is also the {seen[r]} output; give distinct output names")
        seen[r] = option


class OutputTransaction:
    """Stage outputs under temporary names, then rename all of them at once (see module docstring)."""

    def __init__(self, image_writer: Callable[[sitk.Image, str, bool], None] | None = None,
                 note: Callable[[str], None] | None = None) -> None:
        self._staged: list[tuple[Path, Path]] = []  # (temporary, final)
        self._committed: list[Path] = []
        self._cleaned_folders: set[Path] = set()
        #: where the removal of stale temporary files is reported (a progress reporter's ``note``)
        self.note = note or (lambda msg: print(f"pumit: note: {msg}", file=sys.stderr, flush=True))
        #: ``writer(image, path, compress)``; SimpleITK's by default (tests pass one that fails like it)
        self.image_writer = image_writer or _sitk_write

    def _temp(self, final: Path) -> Path:
        final.parent.mkdir(parents=True, exist_ok=True)
        folder = final.parent.resolve()
        if folder not in self._cleaned_folders:  # temporary files of killed runs: removed and reported
            self._cleaned_folders.add(folder)
            removed = clean_stale_temps(folder)
            if removed:
                self.note(describe_removed(removed))
        suffix = full_suffix(final) or final.suffix
        fd, tmp = temp_file(final, suffix)
        os.close(fd)
        return tmp

    def _stage(self, final: str | os.PathLike, write: Callable[[Path], None]) -> Path:
        final_p = Path(final)
        try:
            tmp = self._temp(final_p)
        except OSError as e:
            raise _os_error(e, final_p) from None
        self._staged.append((tmp, final_p))
        try:
            write(tmp)
            default_file_mode(tmp)
        except OSError as e:
            raise _os_error(e, final_p) from None
        except RuntimeError as e:  # SimpleITK write errors
            raise ResourceError(f"cannot write {final_p}: {str(e).strip().splitlines()[-1][:200]}") from None
        return final_p

    def add_image(self, image: sitk.Image, path: str | os.PathLike, *, compress: bool = True) -> Path:
        """Stage an image (format from the suffix of ``path``), checked complete on disk after writing
        (:func:`~pumit.headers.written_image_problem`: ITK does not always raise on a full disk)."""
        final = Path(path)

        def write(tmp: Path) -> None:
            with native_stderr():  # niftilib's own "** ERROR: NWAD" line: pumit reports it in one line
                self.image_writer(image, str(tmp), compress)
                check_written_image(tmp, image, final)

        return self._stage(final, write)

    def add_text(self, text: str, path: str | os.PathLike) -> Path:
        """Stage a UTF-8 text file."""

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())

        return self._stage(path, write)

    def add_json(self, obj: Any, path: str | os.PathLike) -> Path:
        """Stage a JSON file (indented, UTF-8)."""
        return self.add_text(json.dumps(obj, indent=2) + "\n", path)

    def add_file(self, writer: Callable[[Path], None], path: str | os.PathLike) -> Path:
        """Stage a file written by ``writer(temporary_path)`` (e.g. a PNG from matplotlib)."""
        return self._stage(path, writer)

    @property
    def paths(self) -> list[Path]:
        return [final for _, final in self._staged]

    def commit(self) -> list[Path]:
        """Rename every staged file into place; on failure remove what was renamed and what is staged."""
        try:
            for tmp, final in self._staged:
                os.replace(tmp, final)
                self._committed.append(final)
        except OSError as e:
            for final in self._committed:
                with contextlib.suppress(OSError):
                    final.unlink()
            self.rollback()
            raise _os_error(e, final) from None
        done = list(self._committed)
        self._staged.clear()
        return done

    def rollback(self) -> None:
        """Remove every staged temporary file (idempotent)."""
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged.clear()

    def __enter__(self) -> OutputTransaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.rollback()


def _sitk_write(image: sitk.Image, path: str, compress: bool) -> None:
    sitk.WriteImage(image, path, useCompression=compress)


def check_written_image(written: str | os.PathLike, image: sitk.Image, final: str | os.PathLike) -> None:
    """Raise :class:`ResourceError` (exit 4) naming ``final`` when the file ``written`` (from ``image``) is
    incomplete, i.e. the disk filled up (or the write failed) without the writer raising."""
    problem = written_image_problem(written, image)
    if problem is None:
        return
    import shutil

    free = shutil.disk_usage(Path(written).parent).free
    raise ResourceError(f"cannot write {final}: disk full or write error, {problem} ({free / 1e6:.1f} MB free)")


def _os_error(e: OSError, path: Path) -> Exception:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT if hasattr(errno, "EDQUOT") else errno.ENOSPC):
        return ResourceError(f"cannot write {path}: disk full")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"cannot write {path}: permission denied")
    return InputError(f"cannot write {path}: {e.strerror or e}")
