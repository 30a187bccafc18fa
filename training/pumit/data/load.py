"""Reading the voxels of an index record in model layout: image ``(C, D, H, W)`` float32 and label ``(D, H, W)``.

Files and DICOM series go through SimpleITK and :func:`pumit.imageio.to_model_layout` (depth axis first);
MedMNIST items come from their ``.npz`` (cached per process, since an ``.npz`` member is decompressed
whole). The label map's geometry is checked against its image before anything else
(:func:`pumit.data.validate.check_label_geometry`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from pumit.data.manifest import ImageRecord, parse_npz_ref
from pumit.data.probe import dicom_series_files, info_of
from pumit.data.validate import check_label_geometry, check_label_values, label_storage_dtype
from pumit.errors import InputError
from pumit.imageio import read_image, to_model_layout


@dataclass
class LoadedItem:
    """Voxels of one record in model layout. ``image`` ``(C, D, H, W)`` float32 in raw units, ``label``
    ``(D, H, W)`` integer or None, ``perm`` the source numpy axes moved to ``(D, H, W)``, ``dtype`` the
    source pixel type."""

    image: np.ndarray
    label: np.ndarray | None
    perm: tuple[int, int, int]
    dtype: str


def read_source(ref: str, *, series: str | None = None, frame: int | None = None, planar: bool = False) -> sitk.Image:
    """Read a file or DICOM series folder, then extract ``frame`` (4th axis of a 4D image, or the frame of a
    multi-frame 2D file when ``planar``). Raises :class:`~pumit.errors.InputError` with the path."""
    if series is not None:
        reader = sitk.ImageSeriesReader()
        try:
            reader.SetFileNames(dicom_series_files(ref, series))
            image = reader.Execute()
        except RuntimeError as e:
            reason = str(e).strip().splitlines()[-1][:160]
            raise InputError(f"cannot read DICOM series {series} in {ref}: {reason}") from e
    else:
        image = read_image(ref)
    size = list(image.GetSize())
    if frame is not None:
        axis = 3 if image.GetDimension() == 4 else (2 if planar and image.GetDimension() == 3 else None)
        if axis is None:
            raise InputError(f"frame {frame} given for {ref} but the image is {image.GetDimension()}D {tuple(size)}")
        if not 0 <= frame < size[axis]:
            raise InputError(f"frame {frame} out of range for {ref} ({size[axis]} frames)")
        index = [0] * len(size)
        index[axis] = frame
        size[axis] = 0
        image = sitk.Extract(image, size, index)
    elif image.GetDimension() == 4:
        raise InputError(f"{ref} is a 4D image {tuple(size)}: index it with `pumit data index` to split its frames")
    return image


@functools.lru_cache(maxsize=2)
def _npz_array(path: str, key: str) -> np.ndarray:
    with np.load(path) as z:
        if key not in z.files:
            raise InputError(f"{path} has no array {key!r} (arrays: {', '.join(z.files)})")
        return z[key]


def load_record(record: ImageRecord) -> LoadedItem:
    """Voxels of ``record`` in model layout (depth axis ``record.depth_axis`` moved first).

    Raises :class:`~pumit.errors.InputError` naming the path for unreadable files, and (as
    :class:`~pumit.data.validate.LabelError`) for a label map whose geometry differs from its image or
    whose values are not integers / not among ``record.label_values``.
    """
    npz = parse_npz_ref(record.image)
    if npz is not None:
        path, split, index = npz
        arr = _npz_array(path, f"{split}_images")
        if not 0 <= index < len(arr):
            raise InputError(f"{record.image}: index out of range ({len(arr)} items)")
        item = np.asarray(arr[index])
        if item.ndim == 3:  # (D, H, W) grey
            image = item[None]
        elif item.ndim == 4:  # (D, H, W, C) colour
            image = np.moveaxis(item, -1, 0)
        else:  # 2D MedMNIST: (H, W[, C])
            image = (item[None, None] if item.ndim == 2 else np.moveaxis(item, -1, 0)[:, None])
        return LoadedItem(np.ascontiguousarray(image, dtype=np.float32), None, (0, 1, 2), str(item.dtype))

    sitk_image = read_source(record.image, series=record.series, frame=record.frame, planar=record.planar)
    dtype = str(sitk.GetArrayViewFromImage(sitk_image).dtype)
    depth_axis = 0 if record.planar else record.depth_axis
    image, layout = to_model_layout(sitk_image, depth_axis=depth_axis)
    label = None
    if record.label:
        sitk_label = read_image(record.label)
        check_label_geometry(info_of(sitk_image), info_of(sitk_label), image_ref=record.image, label_ref=record.label)
        if sitk_label.GetNumberOfComponentsPerPixel() != 1:
            n = sitk_label.GetNumberOfComponentsPerPixel()
            raise InputError(f"label map {record.label} has {n} components per voxel; expected 1")
        lab, _ = to_model_layout(sitk_label, depth_axis=depth_axis)
        lab = lab[0]
        check_label_values(lab, record.label_values, label_ref=record.label)
        label = lab.astype(label_storage_dtype(lab, str(sitk.GetArrayViewFromImage(sitk_label).dtype)))
    return LoadedItem(image, label, layout.perm, dtype)
