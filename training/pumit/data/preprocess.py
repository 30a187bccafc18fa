"""Pre-processing of indexed images into memory-mappable ``.npy`` arrays (``pumit data preprocess``).

Per item, as in the PUMIT paper:

1. read in model layout: depth (slice) axis first, ``(C, D, H, W)`` (:mod:`pumit.data.load`); the label
   map is checked against its image (geometry, declared values);
2. crop to the foreground (:func:`foreground_box`): voxels ``> 0`` in any channel for 8-bit photos, else
   voxels ``>=`` the 0.5th percentile of the voxels above the image minimum;
3. normalize intensities to ``[-1, 1]`` with the record's :class:`pumit.intensity.IntensitySpec`
   (statistics of the whole cropped image, stored in the manifest);
4. shrink the shorter in-plane side to ``max_side`` (default 512) with area interpolation when it is
   larger, updating the in-plane spacing (:func:`shrink_in_plane`); depth is never resampled;
5. store the image as float16 ``(C, D, H, W)`` and the label as ``(D, H, W)`` in its integer dtype.

Output folder: ``manifest.jsonl`` (:class:`~pumit.data.ProcessedRecord` per line, paths relative to
the folder), ``images/<dataset>/<id>.npy``, ``labels/<dataset>/<id>.npy``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Resize
from monai.transforms.utils import generate_spatial_bounding_box
from tqdm.auto import tqdm

from pumit.data.load import load_record
from pumit.data.manifest import (ImageRecord, ProcessedRecord, parse_npz_ref, read_manifest,
                                 read_processed_manifest, write_manifest)
from pumit.modality import default_intensity
from pumit.data.report import Report
from pumit.data.validate import LabelError, validate
from pumit.errors import InputError, ResourceError
from pumit.atomic import temp_file
from pumit.imageio import CANONICAL_ORIENTATION, full_suffix
from pumit.intensity import IntensitySpec, normalize
from pumit.spacing import Spacing, degree_of_anisotropy

#: Default limit of the shorter in-plane side (pixels), as in the paper.
DEFAULT_MAX_SIDE = 512

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def foreground_box(image: np.ndarray, *, photo: bool) -> Box:
    """``[start, end)`` per model axis ``(D, H, W)`` of the foreground of a ``(C, D, H, W)`` image.

    Foreground: ``> 0`` in any channel for photos; otherwise ``>=`` the 0.5th percentile of the voxels
    above the image minimum (``>=`` so that a binary mask keeps its foreground). An image with no
    foreground keeps its full extent.
    """
    full: Box = tuple((0, int(n)) for n in image.shape[1:])  # type: ignore[assignment]
    if photo:
        select = (lambda x: x > 0)
    else:
        above = image[image > image.min()]
        if above.size == 0:
            return full
        threshold = float(np.percentile(above, 0.5))
        select = (lambda x: x >= threshold)
    start, end = generate_spatial_bounding_box(image, select_fn=select)
    if all(e == 0 for e in end):
        return full
    return tuple((int(s), int(e)) for s, e in zip(start, end))  # type: ignore[return-value]


def shrink_in_plane(image: np.ndarray, label: np.ndarray | None, spacing: Spacing, max_side: int
                    ) -> tuple[np.ndarray, np.ndarray | None, Spacing]:
    """Resize a ``(C, D, H, W)`` image (area interpolation) and its ``(D, H, W)`` label (nearest) so that the
    shorter in-plane side is ``max_side``, when it is larger. Depth is unchanged. Returns the new arrays
    and spacing ``(thickness, H * h / h', W * w / w')``."""
    if max_side < 1:
        raise InputError(f"max side must be >= 1, got {max_side}")
    c, d, h, w = image.shape
    short = min(h, w)
    if short <= max_side:
        return image, label, spacing
    new_h = max_side if h == short else max(int(round(h * max_side / short)), 1)
    new_w = max_side if w == short else max(int(round(w * max_side / short)), 1)
    size = (d, new_h, new_w)
    out = np.asarray(Resize(size, mode="area")(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))))
    lab = None
    if label is not None:
        lab_t = torch.from_numpy(label[None].astype(np.float32))
        lab = np.asarray(Resize(size, mode="nearest-exact")(lab_t))[0].round().astype(label.dtype)
    new_spacing = (spacing[0], spacing[1] * h / new_h, spacing[2] * w / new_w)
    return out, lab, new_spacing


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "item"


def item_id(record: ImageRecord) -> str:
    """Stable file-name id: a readable stem plus a hash of the source reference, series and frame."""
    npz = parse_npz_ref(record.image)
    if npz is not None:
        stem = f"{Path(npz[0]).name[:-len('.npz')]}_{npz[1]}_{npz[2]:05d}"
    else:
        p = Path(record.image)
        stem = p.name[: len(p.name) - len(full_suffix(p))] if full_suffix(p) else p.name
    if record.frame is not None:
        stem += f"_f{record.frame}"
    digest = hashlib.sha1(f"{record.image}|{record.series}|{record.frame}".encode()).hexdigest()[:10]
    return f"{_safe(stem)}-{digest}"


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def preprocess_record(record: ImageRecord, out_dir: str | os.PathLike, *, max_side: int = DEFAULT_MAX_SIDE,
                      crop_foreground: bool = True) -> ProcessedRecord:
    """Pre-process one record into ``out_dir`` (see the module docstring); paths in the result are
    relative to ``out_dir``. Raises :class:`~pumit.errors.InputError` for an unreadable input and
    :class:`~pumit.data.validate.LabelError` for a label that does not fit its image."""
    out = Path(out_dir)
    item = load_record(record)
    image, label = item.image, item.label
    source_shape = image.shape
    spec = (IntensitySpec(scheme=record.intensity) if record.intensity
            else default_intensity(record.modality, image.shape[0], item.dtype))
    box = foreground_box(image, photo=spec.scheme == "photo") if crop_foreground else \
        tuple((0, n) for n in image.shape[1:])
    slices = tuple(slice(s, e) for s, e in box)
    image = image[(slice(None),) + slices]
    if label is not None:
        label = label[slices]
    image, stats = normalize(image, spec)
    image, label, spacing = shrink_in_plane(image, label, record.spacing, max_side)
    rid = item_id(record)
    ds = _safe(record.dataset)
    image_rel = f"images/{ds}/{rid}.npy"
    save_npy(out / image_rel, image.astype(np.float16))
    label_rel = None
    if label is not None:
        label_rel = f"labels/{ds}/{rid}.npy"
        save_npy(out / label_rel, np.ascontiguousarray(label))
    return ProcessedRecord(
        id=rid, image=image_rel, modality=record.modality, spacing=spacing,
        shape=tuple(image.shape),  # type: ignore[arg-type]
        planar=record.planar, da=degree_of_anisotropy(spacing), split=record.split, dataset=record.dataset,
        intensity=spec.to_dict(), stats={"offset": stats.offset, "scale": stats.scale}, label=label_rel,
        label_values=record.label_values, label_names=record.label_names, target=record.target,
        source={"image": record.image, "label": record.label, "series": record.series, "frame": record.frame,
                "depth_axis": record.depth_axis, "perm": list(item.perm), "orientation": CANONICAL_ORIENTATION,
                "spacing": list(record.spacing),
                "shape": list(source_shape), "crop": [list(b) for b in box], "dtype": item.dtype},
    )


def clean_stale_preparations(work_dir: Path, keep: str) -> list[Path]:
    """Remove what failed or killed training runs left in a run's ``data/`` folder: ``.prepared-*.lock`` files
    nobody holds and ``prepared-*`` folders without their ``prepared.json`` marker (half-prepared), except
    those of the preparation ``keep`` (the caller's, handled under its lock). Returns the removed paths."""
    import shutil

    from pumit.store.locking import FileLock

    removed: list[Path] = []
    if not work_dir.is_dir():
        return removed
    for lock_path in sorted(work_dir.glob(".prepared-*.lock")):
        digest = lock_path.name[len(".prepared-"):-len(".lock")]
        if digest == keep:
            continue
        lock = FileLock(lock_path, timeout=0.0)
        try:
            lock.acquire()
        except ResourceError:  # held by a live run: leave it
            continue
        try:
            folder = work_dir / f"prepared-{digest}"
            if folder.is_dir() and not (folder / "prepared.json").is_file():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            lock_path.unlink(missing_ok=True)
            removed.append(lock_path)
        finally:
            lock.release()
    return removed


def has_foreground(records: Sequence[ProcessedRecord]) -> bool:
    """Whether any stored label map of ``records`` has a voxel other than background (0). Stops at the first
    one found, so a normal dataset costs one label read."""
    for r in records:
        if r.label and np.any(np.load(r.label, mmap_mode="r")):
            return True
    return False


def _process_one(args: tuple[ImageRecord, str, int, bool]) -> ProcessedRecord | tuple[str, str]:
    record, out_dir, max_side, crop = args
    try:
        return preprocess_record(record, out_dir, max_side=max_side, crop_foreground=crop)
    except LabelError:
        raise
    except (InputError, OSError, RuntimeError, ValueError, EOFError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return (record.image, msg)


def _init_worker() -> None:
    torch.set_num_threads(1)


def preprocess_manifest(
    manifest: str | os.PathLike | Sequence[ImageRecord],
    out_dir: str | os.PathLike,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    crop_foreground: bool = True,
    workers: int = 0,
    progress: bool = False,
) -> tuple[list[ProcessedRecord], Report]:
    """Pre-process every record of an index manifest into ``out_dir``; write ``out_dir/manifest.jsonl``.

    Label geometry is validated from the headers before any work (:func:`~pumit.data.validate`, raising
    :class:`~pumit.data.validate.LabelError`); label values are checked while processing. Unreadable
    inputs are skipped and reported. ``workers`` > 1 uses that many processes. Returns the processed
    records (absolute paths, as :func:`~pumit.data.read_processed_manifest` reads them) and the report.
    """
    records = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
    if max_side < 1:
        raise InputError(f"--max-side must be >= 1, got {max_side}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    validate(records, check_values=False)
    report = Report(step="preprocess")
    jobs = [(r, str(out), max_side, crop_foreground) for r in records]
    results: list[ProcessedRecord | tuple[str, str]] = []
    if workers > 1:
        # fork (where available) avoids re-importing torch/MONAI in every worker; map() submits all jobs,
        # which starts the workers, before the progress bar exists, so no extra thread is forked
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                                 initializer=_init_worker) as ex:
            try:
                it = ex.map(_process_one, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
                results.extend(tqdm(it, total=len(jobs), desc="preprocess", unit="item", disable=not progress))
            except BaseException:
                ex.shutdown(wait=False, cancel_futures=True)
                raise
    else:
        results.extend(_process_one(job) for job in tqdm(jobs, desc="preprocess", unit="item", disable=not progress))
    done: list[ProcessedRecord] = []
    for res in results:
        if isinstance(res, ProcessedRecord):
            done.append(res)
        else:
            report.skip(*res)
    report.done = len(done)
    path = write_manifest(out / "manifest.jsonl", done)
    return read_processed_manifest(path), report
