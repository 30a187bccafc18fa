"""Manifest records and their JSON Lines files (format documented in ``docs/data.md``).

Two kinds of manifest, one JSON object per line:

* an **index** manifest (:class:`ImageRecord`, written by ``pumit data index``): where each source image
  and label map is, and its modality, model-order spacing, shape and depth axis;
* a **processed** manifest (:class:`ProcessedRecord`, written by ``pumit data preprocess``): the
  pre-processed ``.npy`` arrays (memory-mappable) with their normalization stats.

Paths that are relative are relative to the manifest's folder. An item inside a MedMNIST ``.npz`` is
referenced as ``FILE.npz::SPLIT::INDEX`` (e.g. ``adrenalmnist3d.npz::train::17``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from pumit.errors import InputError
from pumit.imageio import atomic_write_text
from pumit.spacing import Spacing, as_spacing

NPZ_SEP = "::"

SPLITS: tuple[str, ...] = ("train", "val", "test")


def npz_ref(path: str | os.PathLike, split: str, index: int) -> str:
    """Reference of item ``index`` of the ``{split}_images`` array in an ``.npz`` file."""
    return f"{path}{NPZ_SEP}{split}{NPZ_SEP}{int(index)}"


def parse_npz_ref(ref: str) -> tuple[str, str, int] | None:
    """``(path, split, index)`` of an npz item reference, or None when ``ref`` is a plain path."""
    parts = str(ref).split(NPZ_SEP)
    if len(parts) != 3:
        return None
    try:
        return parts[0], parts[1], int(parts[2])
    except ValueError as e:
        raise InputError(f"bad npz item reference {ref!r}: expected FILE.npz::SPLIT::INDEX") from e


@dataclass
class ImageRecord:
    """One source image of an index manifest.

    ``spacing`` is model order ``(thickness, in-plane H, in-plane W)`` in mm and ``shape`` is model order
    ``(C, D, H, W)``, both *after* moving ``depth_axis`` (a numpy axis of the SimpleITK array: 0 = z,
    1 = y, 2 = x) first. 2D images have ``planar`` true, ``D = 1`` and thickness
    :data:`~pumit.spacing.PLANAR_THICKNESS`.
    """

    image: str
    modality: str
    spacing: Spacing
    shape: tuple[int, int, int, int]
    depth_axis: int
    planar: bool
    split: str
    dataset: str
    label: str | None = None
    #: ``official`` (user/dataset description), ``metadata`` (NIfTI dim_info, DICOM slices), ``spacing``, ``planar``
    depth_axis_source: str = "spacing"
    #: DICOM SeriesInstanceUID when ``image`` is a folder holding several series
    series: str | None = None
    #: index along the non-spatial axis: the 4th axis of a 4D image, or the frame of a multi-frame 2D file
    frame: int | None = None
    #: declared label values (e.g. MSD ``labels``); None = not declared, values not checked
    label_values: list[int] | None = None
    #: names of the declared label values (``{"0": "background", "1": "anterior"}``), when the source has them
    label_names: dict[str, str] | None = None
    #: classification target(s) (e.g. MedMNIST labels)
    target: list[int] | None = None
    #: intensity scheme overriding the modality default (``ct``, ``zscore``, ``percentile``, ``photo``)
    intensity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, base: Path | None = None) -> ImageRecord:
        d = _known(cls, d)
        d["spacing"] = as_spacing(d["spacing"], name=f"spacing of {d.get('image')}")
        d["shape"] = tuple(int(v) for v in d["shape"])
        if base is not None:
            d["image"] = resolve_ref(d["image"], base)
            if d.get("label"):
                d["label"] = resolve_ref(d["label"], base)
        return cls(**d)


@dataclass
class ProcessedRecord:
    """One pre-processed item: ``image`` is a float16 ``(C, D, H, W)`` ``.npy`` already normalized to
    ``[-1, 1]`` with ``intensity`` (a :class:`pumit.intensity.IntensitySpec` dict) and per-image
    ``stats`` (``offset``, ``scale``: raw = x * scale + offset, inside the clipping range); ``label`` a
    ``(D, H, W)`` integer ``.npy``. ``spacing`` (mm, model order) and ``shape`` are those of the stored
    arrays; ``da`` is :func:`pumit.spacing.degree_of_anisotropy` of ``spacing``. ``source`` keeps where the
    item came from: the source reference, label, depth axis, axis permutation, source spacing/shape and
    the foreground crop box (model order, ``[start, end)`` before resizing)."""

    id: str
    image: str
    modality: str
    spacing: Spacing
    shape: tuple[int, int, int, int]
    planar: bool
    da: int
    split: str
    dataset: str
    intensity: dict[str, Any]
    stats: dict[str, float]
    label: str | None = None
    label_values: list[int] | None = None
    label_names: dict[str, str] | None = None
    target: list[int] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, base: Path | None = None) -> ProcessedRecord:
        d = _known(cls, d)
        d["spacing"] = as_spacing(d["spacing"], name=f"spacing of {d.get('image')}")
        d["shape"] = tuple(int(v) for v in d["shape"])
        if base is not None:
            d["image"] = str(base / d["image"])
            if d.get("label"):
                d["label"] = str(base / d["label"])
        return cls(**d)


R = TypeVar("R", ImageRecord, ProcessedRecord)


def resolve_ref(ref: str, base: Path) -> str:
    """Make a path or npz item reference absolute, relative paths being relative to ``base``."""
    parsed = parse_npz_ref(ref)
    if parsed is not None:
        return npz_ref(str(base / parsed[0]), parsed[1], parsed[2])
    return str(base / ref)


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - d.keys())
    if missing:
        raise InputError(f"manifest record lacks {', '.join(missing)}: {json.dumps(d)[:200]}")
    return {k: v for k, v in d.items() if k in names}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v is not None}


def write_manifest(path: str | os.PathLike, records: Iterable[ImageRecord | ProcessedRecord]) -> Path:
    """Write records as JSON Lines, atomically (a failure never leaves a partial manifest)."""
    lines = [json.dumps(r.to_dict(), sort_keys=False) for r in records]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl_rows(path: str | os.PathLike, *, require: str | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """The JSON objects of a JSON Lines file (blank and ``#`` lines skipped) and its resolved folder.
    Raises :class:`~pumit.errors.InputError` naming ``file:line`` for a malformed line or one without ``require``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"manifest not found: {p}")
    out = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{p}:{n}: not a JSON object ({e.msg})") from e
            if not isinstance(d, dict) or (require is not None and require not in d):
                what = f" with an '{require}' path" if require is not None else ""
                raise InputError(f"{p}:{n}: each line must be a JSON object{what}")
            out.append(d)
    return p.resolve().parent, out


def read_manifest(path: str | os.PathLike) -> list[ImageRecord]:
    """Read an index manifest; relative paths are resolved against the manifest's folder."""
    base, rows = read_jsonl_rows(path)
    return [ImageRecord.from_dict(d, base=base) for d in rows]


def read_processed_manifest(path: str | os.PathLike) -> list[ProcessedRecord]:
    """Read a processed manifest (``OUTDIR/manifest.jsonl``); ``.npy`` paths become absolute."""
    base, rows = read_jsonl_rows(path)
    if rows and "stats" not in rows[0]:
        raise InputError(f"{path} is an index manifest, not a processed one: run `pumit data preprocess` on it first")
    return [ProcessedRecord.from_dict(d, base=base) for d in rows]


def select(records: Sequence[R], *, split: str | Sequence[str] | None = None,
           datasets: Sequence[str] | None = None) -> list[R]:
    """Records of the given split(s) and dataset name(s) (None = all)."""
    splits = {split} if isinstance(split, str) else (set(split) if split is not None else None)
    return [r for r in records
            if (splits is None or r.split in splits) and (datasets is None or r.dataset in datasets)]
