"""Checks that label maps fit their images, run before any training starts.

A label map must have its image's geometry (size, spacing, origin, direction) and integer values among
the declared ones (e.g. the ``labels`` of an MSD ``dataset.json``). Problems raise
:class:`LabelError` (an :class:`~pumit.errors.InputError`, exit code 2) naming the label path.

Tolerances: spacing relative 1e-4; origin 1e-3 x the smallest spacing; direction cosines 1e-4.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm.auto import tqdm

from pumit.data.manifest import ImageRecord, ProcessedRecord, read_manifest, read_processed_manifest
from pumit.data.probe import ImageInfo, probe
from pumit.errors import InputError

logger = logging.getLogger("pumit.data")

#: How many problems one :class:`LabelError` message lists (all are logged).
MAX_LISTED = 5


class LabelError(InputError):
    """A label map that does not fit its image (geometry) or holds undeclared / non-integer values."""


def check_label_geometry(image: ImageInfo, label: ImageInfo, *, image_ref: str, label_ref: str) -> None:
    """Raise :class:`LabelError` when two :class:`~pumit.data.probe.ImageInfo` differ in size, spacing,
    origin or direction (first three axes; a 4D image is compared through its frame geometry)."""
    isz, isp, ior, idr = image.geometry3()
    lsz, lsp, lor, ldr = label.geometry3()

    def fmt(a: np.ndarray) -> str:
        return "(" + ", ".join(f"{v:g}" for v in np.asarray(a).ravel()) + ")"

    if not np.array_equal(isz, lsz):
        what = f"size {fmt(lsz)} != image size {fmt(isz)}"
    elif not np.allclose(lsp, isp, rtol=1e-4, atol=0):
        what = f"spacing {fmt(lsp)} != image spacing {fmt(isp)} mm"
    elif not np.allclose(lor, ior, rtol=0, atol=1e-3 * float(isp.min())):
        what = f"origin {fmt(lor)} != image origin {fmt(ior)} mm"
    elif not np.allclose(ldr, idr, rtol=0, atol=1e-4):
        what = f"direction {fmt(ldr)} != image direction {fmt(idr)}"
    else:
        return
    raise LabelError(f"label map {label_ref} does not match its image {image_ref}: {what}")


def check_label_values(values: np.ndarray, declared: Sequence[int] | None, *, label_ref: str) -> None:
    """Raise :class:`LabelError` when ``values`` (a label array or its unique values) holds non-integer or
    negative values, or values not in ``declared`` (None: not checked)."""
    uniq = np.unique(np.asarray(values))
    if uniq.dtype.kind == "f" and not np.array_equal(uniq, np.round(uniq)):
        bad = uniq[uniq != np.round(uniq)][:5]
        raise LabelError(f"label map {label_ref} has non-integer values {bad.tolist()}")
    if uniq.size and uniq.min() < 0:
        raise LabelError(f"label map {label_ref} has negative values {uniq[uniq < 0][:5].tolist()}")
    if declared is not None:
        extra = sorted(set(int(v) for v in uniq) - set(int(v) for v in declared))
        if extra:
            raise LabelError(
                f"label map {label_ref} has values {extra} not declared in the dataset's labels "
                f"({', '.join(str(int(v)) for v in sorted(declared))})"
            )


def label_storage_dtype(values: np.ndarray, native: str) -> np.dtype:
    """dtype to store a label map in: its native integer dtype, or the smallest unsigned integer type
    (at least uint8) holding its values when it was stored as floats."""
    if np.dtype(native).kind in "iub":
        return np.dtype(native)
    top = int(np.max(values)) if np.size(values) else 0
    return np.result_type(np.min_scalar_type(top), np.uint8)


def validate(records: str | os.PathLike | Sequence[ImageRecord | ProcessedRecord], *, check_values: bool = True,
             progress: bool = False) -> None:
    """Check every label map of a manifest before training; raise one :class:`LabelError` listing the problems.

    ``records``: a manifest path (index or processed) or a sequence of :class:`~pumit.data.ImageRecord` /
    :class:`~pumit.data.ProcessedRecord`. Index records: label geometry is checked from the headers and,
    with ``check_values``, the label voxels against the declared values. Processed records: the ``.npy``
    files must open memory-mapped, the label shape must equal the image's ``(D, H, W)`` and values must be
    declared. Unreadable *images* are not label problems: they are logged and left to the index/preprocess
    report.
    """
    if isinstance(records, (str, os.PathLike)):
        try:
            records = read_processed_manifest(records)
        except InputError as e:
            if "index manifest" not in str(e):
                raise
            records = read_manifest(records)
    problems: list[str] = []
    for rec in tqdm(records, desc="validate", unit="item", disable=not progress):
        if not rec.label:
            continue
        try:
            if isinstance(rec, ProcessedRecord):
                _validate_processed(rec, check_values)
            else:
                _validate_index(rec, check_values)
        except LabelError as e:
            problems.append(str(e))
            logger.error("%s", e)
    if problems:
        listed = "; ".join(problems[:MAX_LISTED])
        more = f" (+{len(problems) - MAX_LISTED} more, see the log)" if len(problems) > MAX_LISTED else ""
        raise LabelError(f"{len(problems)} label problem{'s' if len(problems) > 1 else ''}: {listed}{more}")


def _validate_index(rec: ImageRecord, check_values: bool) -> None:
    try:
        image = probe(rec.image, series=rec.series)
    except InputError as e:
        logger.warning("cannot check the label of unreadable image %s: %s", rec.image, e)
        return
    try:
        label = probe(rec.label)
    except InputError as e:
        raise LabelError(f"label map {rec.label} of {rec.image} is unreadable: {e}") from e
    check_label_geometry(image, label, image_ref=rec.image, label_ref=rec.label)
    if check_values:
        try:
            arr = sitk.GetArrayFromImage(sitk.ReadImage(rec.label))
        except RuntimeError as e:
            raise LabelError(f"label map {rec.label} is unreadable: {str(e).strip().splitlines()[-1][:160]}") from e
        check_label_values(arr, rec.label_values, label_ref=rec.label)


def _validate_processed(rec: ProcessedRecord, check_values: bool) -> None:
    try:
        image = np.load(rec.image, mmap_mode="r")
        label = np.load(rec.label, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise LabelError(f"processed item {rec.id} cannot be opened ({Path(rec.label).name}): {e}") from e
    if tuple(label.shape) != tuple(image.shape[1:]):
        raise LabelError(f"label map {rec.label} has shape {tuple(label.shape)} "
                         f"but its image {rec.image} is {tuple(image.shape)}")
    if check_values:
        check_label_values(label, rec.label_values, label_ref=rec.label)
