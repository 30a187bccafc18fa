"""Indexing heterogeneous image collections into :class:`~pumit.data.ImageRecord` lists (``pumit data index``).

Sources (each argument of :func:`index_sources`):

* an **MSD folder** (holding ``dataset.json``) or that ``dataset.json``: the ``training`` list (image +
  label, split into ``train``/``val`` by :func:`~pumit.data.splits.hash_split`) and the ``test`` list
  (split ``test``); modality from ``modality`` (4D multi-modal images give one record per channel),
  declared label values from ``labels``;
* a **MedMNIST** ``.npz``: every item of the official ``train``/``val``/``test`` arrays, referenced as
  ``FILE.npz::SPLIT::INDEX``, with its class label(s) as ``target``;
* a **folder**, searched recursively: NIfTI/NRRD/MetaImage/PNG/JPEG/BMP/TIFF files, DICOM series (one
  record per series; a single-file DICOM is one image, a multi-frame 2D DICOM one record per frame),
  ``.npz`` files and MSD sub-folders. Files whose name marks a label map (``_seg``, ``_msk``, ``_mask``,
  ``_dseg``, ``_label``) are not indexed as images;
* a single image file or DICOM series folder;
* a **JSON Lines manifest** (``.jsonl``) written by hand: rows need ``image`` (and may give ``label``,
  ``modality``, ``split``, ``dataset``, ``depth_axis``, ``label_values``, ``target``, ``intensity``); the
  rest is filled in from the image header.

Unreadable inputs are skipped and reported (:class:`~pumit.data.Report`), never fatal.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm.auto import tqdm

from pumit.data.manifest import SPLITS, ImageRecord, npz_ref, parse_npz_ref, read_jsonl_rows
from pumit.modality import canonical_modality
from pumit.data.probe import ImageInfo, model_geometry, probe, probe_npz
from pumit.data.report import Report
from pumit.data.splits import DEFAULT_VAL_FRACTION, hash_split
from pumit.errors import InputError
from pumit.imageio import full_suffix
from pumit.intensity import SCHEMES
from pumit.spacing import as_spacing, planar_spacing

logger = logging.getLogger("pumit.data")

#: File suffixes indexed as images when found in a folder (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg",
                                   ".bmp", ".tif", ".tiff")
#: Suffixes of 8-bit photos: their default modality is ``photo``.
PHOTO_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Name parts that mark a label map in a plain folder (BIDS/nnU-Net habits).
LABEL_HINTS: tuple[str, ...] = ("_seg", "_msk", "_mask", "_dseg", "_label")

#: Physical field of view (mm) of the MedMNIST 3D sets whose crop size is documented: AdrenalMNIST3D is
#: a 64 mm cube (28³ → 2.29 mm, 64³ → 1 mm). Other MedMNIST sets are 1 mm isotropic by convention.
MEDMNIST_FOV_MM: dict[str, float] = {"adrenalmnist3d": 64.0}
#: Source modality of MedMNIST sets (name without the size suffix).
MEDMNIST_MODALITY: dict[str, str] = {
    "adrenalmnist3d": "ct", "organmnist3d": "ct", "nodulemnist3d": "ct", "fracturemnist3d": "ct",
    "vesselmnist3d": "mri", "synapsemnist3d": "other", "chestmnist": "xray", "pneumoniamnist": "xray",
    "breastmnist": "us", "dermamnist": "photo", "retinamnist": "photo", "bloodmnist": "photo",
    "pathmnist": "photo", "octmnist": "other", "tissuemnist": "other", "organamnist": "ct",
    "organcmnist": "ct", "organsmnist": "ct",
}


@dataclass(frozen=True)
class IndexOptions:
    """Options of :func:`index_sources`; see its docstring."""

    modality: str | None = None
    intensity: str | None = None
    depth_axis: int | None = None
    val_fraction: float = DEFAULT_VAL_FRACTION
    seed: int = 0
    dataset: str | None = None
    medmnist_spacing: float | None = None


def index_sources(
    sources: Sequence[str | os.PathLike],
    *,
    modality: str | None = None,
    intensity: str | None = None,
    depth_axis: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    dataset: str | None = None,
    medmnist_spacing: float | None = None,
    progress: bool = False,
) -> tuple[list[ImageRecord], Report]:
    """Index ``sources`` (see the module docstring) into records, with a :class:`~pumit.data.Report`.

    ``modality`` overrides every source's modality (a name of :data:`~pumit.modality.MODALITIES` or
    an alias); ``intensity`` sets the normalization scheme of every record; ``depth_axis`` (0 = z, 1 = y,
    2 = x of the SimpleITK array) is the official slice axis of every 3D image; ``val_fraction`` and
    ``seed`` define the hash split of sources without an official validation split; ``dataset`` names
    the dataset of every record (default: the MSD name, npz stem or folder name); ``medmnist_spacing``
    (mm) overrides the MedMNIST voxel size. Raises :class:`~pumit.errors.InputError` for a missing
    source or a bad option; unreadable images are skipped and counted in the report.
    """
    if intensity is not None and intensity not in SCHEMES:
        raise InputError(f"unknown intensity scheme {intensity!r}; choose one of {', '.join(SCHEMES)}")
    if modality is not None and canonical_modality(modality) == "other" and modality.lower() not in ("other", "ot"):
        logger.warning("unknown modality %r: recorded as 'other' (known: ct, mri, pet, xray, us, photo)", modality)
    if not 0.0 <= val_fraction <= 1.0:
        raise InputError(f"--val-fraction must be in [0, 1], got {val_fraction}")
    opts = IndexOptions(modality, intensity, depth_axis, val_fraction, seed, dataset, medmnist_spacing)
    report = Report(step="index")
    units: list[tuple[str, Path, Path, str | None]] = []  # (kind, path, root, series)
    for src in sources:
        p = Path(src).expanduser()
        if not p.exists():
            raise InputError(f"source not found: {p}")
        units.extend(_discover(p.resolve(), report))
    records: list[ImageRecord] = []
    for kind, path, root, series in tqdm(units, desc="index", unit="source", disable=not progress):
        if kind == "msd":
            records.extend(_index_msd(path, opts, report))
        elif kind == "npz":
            records.extend(_index_npz(path, opts, report))
        elif kind == "jsonl":
            records.extend(_index_jsonl(path, opts, report))
        else:
            name = opts.dataset or root.name
            rel = path.relative_to(root).as_posix() if path != root else path.name
            key = f"{name}/{rel}" + (f"#{series}" if series else "")
            records.extend(_image_records(path, key=key, dataset=name, opts=opts, report=report, series=series))
    report.done = len(records)
    logger.info("%s", report.summary())
    return records, report


def _is_label_name(path: Path) -> bool:
    stem = path.name[: len(path.name) - len(full_suffix(path))].lower()
    return any(stem.endswith(h) or f"{h}_" in stem or f"{h}-" in stem for h in LABEL_HINTS)


def _discover(p: Path, report: Report) -> list[tuple[str, Path, Path, str | None]]:
    """Units to index under ``p``: ``(kind, path, root, series)`` with kind msd/npz/jsonl/image."""
    if p.is_file():
        if p.name == "dataset.json":
            return [("msd", p.parent, p.parent, None)]
        suffix = full_suffix(p).lower()
        if suffix == ".npz":
            return [("npz", p, p.parent, None)]
        if suffix == ".jsonl":
            return [("jsonl", p, p.parent, None)]
        return [("image", p, p.parent, None)]
    if (p / "dataset.json").is_file():
        return [("msd", p, p, None)]
    units: list[tuple[str, Path, Path, str | None]] = []
    ignored = 0
    for dirpath, dirnames, filenames in os.walk(p):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if here != p and "dataset.json" in filenames:
            units.append(("msd", here, here, None))
            dirnames[:] = []
            continue
        dicom_like = []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            f = here / name
            suffix = full_suffix(f).lower()
            if suffix == ".npz":
                units.append(("npz", f, p, None))
            elif suffix in IMAGE_SUFFIXES:
                if _is_label_name(f):
                    ignored += 1
                else:
                    units.append(("image", f, p, None))
            elif suffix in (".dcm", ".ima", "") or suffix[1:].isdigit():
                dicom_like.append(f)
        if dicom_like:
            units.extend(_discover_dicom(here, p, dicom_like, report))
    if ignored:
        logger.info("%d files named like label maps (%s) were not indexed as images under %s",
                    ignored, ", ".join(LABEL_HINTS), p)
    return units


def _discover_dicom(folder: Path, root: Path, candidates: list[Path], report: Report
                    ) -> list[tuple[str, Path, Path, str | None]]:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    units: list[tuple[str, Path, Path, str | None]] = []
    seen: set[str] = set()
    for uid in series_ids:
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        seen.update(os.path.realpath(f) for f in files)
        if len(files) == 1:
            units.append(("image", Path(files[0]), root, None))
        else:
            units.append(("image", folder, root, uid if len(series_ids) > 1 else None))
    for f in candidates:  # .dcm files GDCM could not parse are unreadable; suffix-less non-DICOM files are ignored
        if full_suffix(f).lower() in (".dcm", ".ima") and os.path.realpath(f) not in seen:
            report.skip(str(f), "not a readable DICOM file")
    return units


def _guess_modality(path: Path, info: ImageInfo) -> str:
    """Modality from the DICOM tag, a photo suffix, or a BIDS-like name suffix (``_ct``, ``_T1w``, ...)."""
    if info.meta.get("modality"):
        return canonical_modality(info.meta["modality"])
    if full_suffix(path).lower() in PHOTO_SUFFIXES:
        return "photo"
    stem = path.name[: len(path.name) - len(full_suffix(path))]
    for token in reversed(stem.replace("-", "_").split("_")):
        if canonical_modality(token) != "other":
            return canonical_modality(token)
    return "other"


def _image_records(
    path: Path,
    *,
    key: str,
    dataset: str,
    opts: IndexOptions,
    report: Report,
    series: str | None = None,
    label: Path | None = None,
    split: str | None = None,
    modality: str | None = None,
    frame_modalities: Sequence[str] | None = None,
    label_values: list[int] | None = None,
    label_names: dict[str, str] | None = None,
    target: list[int] | None = None,
    depth_axis: int | None = None,
    intensity: str | None = None,
) -> list[ImageRecord]:
    """Records of one image (several for a 4D image or a multi-frame 2D file); [] if it is unreadable."""
    try:
        info = probe(path, series=series)
        if len(info.size) > 4 or len(info.size) < 2:
            raise InputError(f"unsupported {len(info.size)}D image {info.size}")
    except InputError as e:
        report.skip(str(path), str(e))
        return []
    if label is not None and not label.is_file():
        report.skip(str(label), f"label map of {path} not found")
        return []
    if len(info.size) == 4:
        frames: list[int | None] = list(range(info.size[3]))
    elif info.frame_split:
        frames = list(range(info.size[2]))
    else:
        frames = [None]
    split = split or hash_split(key, val_fraction=opts.val_fraction, seed=opts.seed)
    axis = depth_axis if depth_axis is not None else opts.depth_axis
    out = []
    for f in frames:
        geo = model_geometry(info, frame=f, depth_axis=axis)
        try:  # e.g. a DICOM whose slice spacing reads as negative: report it, never index a wrong geometry
            as_spacing(geo.spacing, name=f"spacing of {path}")
        except InputError as e:
            report.skip(str(path), str(e))
            return []
        if frame_modalities and f is not None and f < len(frame_modalities):
            mod = frame_modalities[f]
        else:
            mod = modality
        mod = canonical_modality(opts.modality or mod or _guess_modality(path, info))
        out.append(ImageRecord(
            image=str(path), modality=mod, spacing=geo.spacing, shape=geo.shape, depth_axis=geo.depth_axis,
            planar=geo.planar, split=split, dataset=dataset, label=str(label) if label else None,
            depth_axis_source=geo.depth_axis_source, series=series, frame=f, label_values=label_values,
            label_names=label_names, target=target, intensity=opts.intensity or intensity,
        ))
    return out


def _declared_labels(labels: object) -> list[int] | None:
    """Label values declared by an MSD (``{"0": "background"}``) or nnU-Net v2 (``{"background": 0}``) map."""
    if not isinstance(labels, dict) or not labels:
        return None
    if all(str(k).strip().lstrip("-").isdigit() for k in labels):
        return sorted(int(k) for k in labels)
    values: set[int] = set()
    for v in labels.values():
        values.update(int(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
    return sorted(values)


def _label_names(labels: object) -> dict[str, str] | None:
    """Names of the declared label values (``{"0": "background", "1": "anterior"}``), from an MSD or nnU-Net v2 map."""
    if not isinstance(labels, dict) or not labels:
        return None
    if all(str(k).strip().lstrip("-").isdigit() for k in labels):
        return {str(int(k)): str(v) for k, v in labels.items()}
    return {str(int(v)): str(k) for k, v in labels.items() if not isinstance(v, (list, tuple))} or None


def _index_msd(root: Path, opts: IndexOptions, report: Report) -> list[ImageRecord]:
    meta_path = root / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read MSD description {meta_path}: {e}") from e
    name = opts.dataset or str(meta.get("name") or root.name)
    mods = meta.get("modality") or meta.get("channel_names") or {}
    frame_modalities = [str(mods[k]) for k in sorted(mods, key=lambda k: int(k))] if isinstance(mods, dict) else []
    declared = _declared_labels(meta.get("labels"))
    names = _label_names(meta.get("labels"))
    out: list[ImageRecord] = []
    entries: list[tuple[str, str | None, str | None]] = []
    for item in meta.get("training", []):
        if isinstance(item, dict):
            entries.append((item["image"], item.get("label"), None))
        else:
            entries.append((str(item), None, None))
    for item in meta.get("test", []):
        entries.append((item["image"] if isinstance(item, dict) else str(item), None, "test"))
    for image_rel, label_rel, split in entries:
        image = (root / image_rel).resolve()
        label = (root / label_rel).resolve() if label_rel else None
        key = f"{name}/{Path(image_rel).as_posix().lstrip('./')}"
        if not image.exists():
            report.skip(str(image), f"listed in {meta_path} but not found")
            continue
        out.extend(_image_records(
            image, key=key, dataset=name, opts=opts, report=report, label=label, split=split,
            modality=frame_modalities[0] if len(frame_modalities) == 1 else None,
            frame_modalities=frame_modalities if len(frame_modalities) > 1 else None,
            label_values=declared if label else None, label_names=names if label else None,
        ))
    return out


def _medmnist_name(path: Path) -> str:
    stem = path.name[: -len(".npz")].lower()
    return stem.split("_")[0]


def _index_npz(path: Path, opts: IndexOptions, report: Report) -> list[ImageRecord]:
    try:
        arrays = probe_npz(path)
    except InputError as e:
        report.skip(str(path), str(e))
        return []
    splits = [s for s in SPLITS if f"{s}_images" in arrays]
    if not splits:
        report.skip(str(path), "not a MedMNIST npz (no train_images/val_images/test_images arrays)")
        return []
    name = _medmnist_name(path)
    dataset = opts.dataset or path.name[: -len(".npz")]
    out: list[ImageRecord] = []
    try:
        with np.load(path) as z:
            targets = {s: z[f"{s}_labels"] for s in splits if f"{s}_labels" in z.files}
    except (OSError, ValueError) as e:
        report.skip(str(path), f"cannot read labels: {e}")
        return []
    for s in splits:
        shape, dtype = arrays[f"{s}_images"]
        n = shape[0]
        is3d = "3d" in name or (len(shape) == 4 and shape[-1] not in (1, 3)) or len(shape) == 5
        if is3d:
            d, h, w = shape[1:4]
            c = shape[4] if len(shape) == 5 else 1
            side = opts.medmnist_spacing or MEDMNIST_FOV_MM.get(name, float(w)) / float(w)
            spacing, planar, model_shape = (side, side, side), False, (c, d, h, w)
        else:
            h, w = shape[1:3]
            c = shape[3] if len(shape) == 4 else 1
            px = opts.medmnist_spacing or 1.0
            spacing, planar, model_shape = planar_spacing(px), True, (c, 1, h, w)
        mod = canonical_modality(opts.modality or MEDMNIST_MODALITY.get(name, "other"))
        lab = targets.get(s)
        for i in range(n):
            out.append(ImageRecord(
                image=npz_ref(str(path), s, i), modality=mod, spacing=spacing, shape=model_shape, depth_axis=0,
                planar=planar, split=s, dataset=dataset, depth_axis_source="official" if not planar else "planar",
                target=[int(v) for v in np.atleast_1d(lab[i])] if lab is not None else None,
                intensity=opts.intensity or ("photo" if dtype == "uint8" else None),
            ))
    return out


def _index_jsonl(path: Path, opts: IndexOptions, report: Report) -> list[ImageRecord]:
    base, rows = read_jsonl_rows(path, require="image")
    out: list[ImageRecord] = []
    for row in rows:
        if parse_npz_ref(row["image"]) is not None:
            raise InputError(f"{path}: npz items cannot be listed by hand; index the .npz file itself")
        image = (base / row["image"]).resolve()
        label = (base / row["label"]).resolve() if row.get("label") else None
        if not image.exists():
            report.skip(str(image), f"listed in {path} but not found")
            continue
        if row.get("split") is not None and row["split"] not in SPLITS:
            raise InputError(f"{path}: split must be one of {', '.join(SPLITS)}, got {row['split']!r}")
        dataset = opts.dataset or row.get("dataset") or path.stem
        out.extend(_image_records(
            image, key=f"{dataset}/{row['image']}", dataset=dataset, opts=opts, report=report,
            series=row.get("series"), label=label, split=row.get("split"), modality=row.get("modality"),
            label_values=row.get("label_values"), target=row.get("target"), depth_axis=row.get("depth_axis"),
            intensity=row.get("intensity"),
        ))
    return out
