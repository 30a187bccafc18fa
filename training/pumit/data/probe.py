"""Header-only inspection of source images (no voxels read) and the choice of the depth (slice) axis.

:func:`probe` reads the geometry of a file, a DICOM series folder or a MedMNIST ``.npz`` without loading
voxels, and :func:`model_geometry` predicts what :func:`pumit.imageio.to_model_layout` will produce: the
model-order spacing ``(thickness, H, W)`` and shape ``(C, D, H, W)`` once the depth axis is moved first.

The depth axis (a numpy axis of the SimpleITK array: 0 = z, 1 = y, 2 = x) is chosen in this order:

1. ``official``: given by the user / dataset description (``--depth-axis``, a ``depth_axis`` field in a
   hand-written manifest);
2. ``metadata``: the NIfTI header's ``dim_info`` slice dimension, or the slice (frame) axis of DICOM data;
3. ``spacing``: the axis with clearly the largest spacing (:func:`pumit.imageio.plan_layout`),
   else the axis closest to Superior-Inferior (canonical orientation).
"""

from __future__ import annotations

import functools
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pumit.modality import canonical_modality
from pumit.errors import InputError
from pumit.imageio import plan_layout
from pumit.spacing import PLANAR_THICKNESS, Spacing

#: DICOM tags copied into :attr:`ImageInfo.meta` when present.
_DICOM_TAGS = {"0008|0060": "modality", "0028|0008": "frames", "0020|000e": "series_uid"}


@dataclass(frozen=True)
class ImageInfo:
    """Geometry of a source image in SimpleITK order (``x, y[, z[, t]]``), without voxels."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    channels: int
    dtype: str
    #: ``dicom`` (bool as "1"), ``modality`` (DICOM Modality), ``frames``, ``dim_info`` (NIfTI), ``files``
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def is_dicom(self) -> bool:
        return self.meta.get("dicom") == "1"

    @property
    def frame_split(self) -> bool:
        """True for a multi-frame 2D DICOM file (cine ultrasound, X-ray sequence, multi-frame capture):
        each frame is a separate 2D image rather than a slice of a volume."""
        return (self.is_dicom and self.meta.get("files", "1") == "1" and len(self.size) == 3 and self.size[2] > 1
                and canonical_modality(self.meta.get("modality")) not in ("ct", "mri", "pet"))

    def geometry3(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(size, spacing, origin, direction 3x3)`` of the first three axes; 2D images get z = 1."""
        dim = len(self.size)
        k = min(dim, 3)
        size = np.ones(3, dtype=np.int64)
        spacing = np.ones(3)
        origin = np.zeros(3)
        direction = np.eye(3)
        size[:k] = self.size[:k]
        spacing[:k] = self.spacing[:k]
        origin[:k] = self.origin[:k]
        direction[:k, :k] = np.asarray(self.direction, dtype=float).reshape(dim, dim)[:k, :k]
        return size, spacing, origin, direction


@functools.lru_cache(maxsize=64)
def _numpy_dtype(pixel_id: int, channels: int) -> str:
    probe_image = sitk.Image([1, 1], pixel_id, channels) if channels > 1 else sitk.Image([1, 1], pixel_id)
    return str(sitk.GetArrayViewFromImage(probe_image).dtype)


def info_of(image: sitk.Image, meta: dict[str, str] | None = None) -> ImageInfo:
    """:class:`ImageInfo` of an image already in memory."""
    return ImageInfo(
        size=tuple(int(v) for v in image.GetSize()),
        spacing=tuple(float(v) for v in image.GetSpacing()),
        origin=tuple(float(v) for v in image.GetOrigin()),
        direction=tuple(float(v) for v in image.GetDirection()),
        channels=int(image.GetNumberOfComponentsPerPixel()),
        dtype=str(sitk.GetArrayViewFromImage(image).dtype),
        meta=dict(meta or {}),
    )


def _header(path: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return reader


def _meta(reader: sitk.ImageFileReader) -> dict[str, str]:
    keys = set(reader.GetMetaDataKeys())
    meta = {name: reader.GetMetaData(tag).strip() for tag, name in _DICOM_TAGS.items() if tag in keys}
    if "0008|0016" in keys or "0020|000d" in keys or "modality" in meta:
        meta["dicom"] = "1"
    if "dim_info" in keys:
        meta["dim_info"] = reader.GetMetaData("dim_info").strip()
    return meta


def dicom_series_files(folder: str | os.PathLike, series: str | None = None) -> list[str]:
    """Sorted files of DICOM series ``series`` in ``folder`` (default: the series with most files)."""
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise InputError(f"no DICOM series found in folder {folder}")
    if series is not None:
        if series not in ids:
            raise InputError(f"DICOM series {series} not found in folder {folder}")
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series))
    return list(max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), s) for s in ids), key=len))


def probe(path: str | os.PathLike, *, series: str | None = None) -> ImageInfo:
    """Geometry of an image file or DICOM series folder from its header(s) only.

    Raises :class:`~pumit.errors.InputError` naming the path when it cannot be read.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}")
    try:
        if p.is_dir():
            return _probe_series(p, series)
        if p.stat().st_size == 0:
            raise InputError(f"input file is empty: {p}")
        reader = _header(str(p))
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        raise InputError(f"cannot read image header {p}: corrupt, truncated or unsupported ({first[:160]})") from e
    channels = int(reader.GetNumberOfComponents())
    info = ImageInfo(
        size=tuple(int(v) for v in reader.GetSize()),
        spacing=tuple(float(v) for v in reader.GetSpacing()),
        origin=tuple(float(v) for v in reader.GetOrigin()),
        direction=tuple(float(v) for v in reader.GetDirection()),
        channels=channels,
        dtype=_numpy_dtype(reader.GetPixelID(), channels),
        meta=_meta(reader),
    )
    if min(info.size) == 0:
        raise InputError(f"image has no voxels: {p}")
    return info


def _probe_series(folder: Path, series: str | None) -> ImageInfo:
    files = dicom_series_files(folder, series)
    first = _header(files[0])
    meta = _meta(first)
    meta["dicom"] = "1"
    meta["files"] = str(len(files))
    size = list(first.GetSize())
    spacing = list(first.GetSpacing())
    if len(files) > 1:
        # mean slice spacing from the first and last (sorted) slice positions, as the series reader does
        last = _header(files[-1])
        step = float(np.linalg.norm(np.subtract(last.GetOrigin(), first.GetOrigin()))) / (len(files) - 1)
        size = [size[0], size[1], len(files)]
        spacing = [spacing[0], spacing[1], step if step > 0 else spacing[2]]
    channels = int(first.GetNumberOfComponents())
    return ImageInfo(
        size=tuple(int(v) for v in size),
        spacing=tuple(float(v) for v in spacing),
        origin=tuple(float(v) for v in first.GetOrigin()),
        direction=tuple(float(v) for v in first.GetDirection()),
        channels=channels,
        dtype=_numpy_dtype(first.GetPixelID(), channels),
        meta=meta,
    )


def metadata_depth_axis(info: ImageInfo) -> int | None:
    """Slice axis (numpy axis of the SimpleITK array) stated by the file's metadata, or None.

    NIfTI ``dim_info`` bits 4-5 hold the 1-based slice dimension (i, j, k = SimpleITK x, y, z = numpy
    axes 2, 1, 0); DICOM volumes are stacks of slices along numpy axis 0.
    """
    if "dim_info" in info.meta:
        try:
            slice_dim = (int(info.meta["dim_info"]) >> 4) & 3
        except ValueError:
            slice_dim = 0
        if slice_dim in (1, 2, 3):
            return 3 - slice_dim
    if info.is_dicom and len(info.size) >= 3 and info.size[2] > 1:
        return 0
    return None


@dataclass(frozen=True)
class ModelGeometry:
    """Model-order geometry of a source image: ``spacing`` ``(thickness, H, W)`` mm, ``shape`` ``(C, D, H, W)``."""

    spacing: Spacing
    shape: tuple[int, int, int, int]
    depth_axis: int
    depth_axis_source: str
    planar: bool


def model_geometry(info: ImageInfo, *, frame: int | None = None, depth_axis: int | None = None) -> ModelGeometry:
    """What :func:`pumit.imageio.to_model_layout` will give for this image (after frame extraction).

    ``depth_axis`` is the official choice (or None to use metadata, then spacing). A 2D image, a single
    slice, or a frame of a multi-frame 2D file is planar: ``D = 1`` with thickness
    :data:`~pumit.spacing.PLANAR_THICKNESS`.
    """
    size, spacing, _, direction = info.geometry3()
    planar = len(info.size) == 2 or int(size[2]) == 1 or (frame is not None and info.frame_split)
    if planar:
        spacing_zyx = (PLANAR_THICKNESS, float(spacing[1]), float(spacing[0]))
        shape_zyx = (1, int(size[1]), int(size[0]))
        axis, source = 0, "planar"
    else:
        spacing_zyx = (float(spacing[2]), float(spacing[1]), float(spacing[0]))
        shape_zyx = (int(size[2]), int(size[1]), int(size[0]))
        meta_axis = metadata_depth_axis(info)
        if depth_axis is not None:
            if depth_axis not in (0, 1, 2):
                raise InputError(f"depth axis must be 0 (z), 1 (y) or 2 (x), got {depth_axis}")
            axis, source = depth_axis, "official"
        elif meta_axis is not None:
            axis, source = meta_axis, "metadata"
        else:
            axis, source = None, "spacing"
    perm = plan_layout(direction.ravel(), spacing_zyx, depth_axis=axis, planar=planar)[0]
    axis = perm[0]
    return ModelGeometry(
        spacing=tuple(spacing_zyx[a] for a in perm),  # type: ignore[arg-type]
        shape=(info.channels,) + tuple(shape_zyx[a] for a in perm),  # type: ignore[arg-type]
        depth_axis=axis,
        depth_axis_source=source,
        planar=planar,
    )


def probe_npz(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shapes and dtypes of the arrays in an ``.npz`` from the ``.npy`` headers (nothing decompressed)."""
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not name.endswith(".npy"):
                    continue
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                out[name[:-4]] = (tuple(int(v) for v in shape), str(dtype))
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise InputError(f"cannot read npz file {path}: {e}") from e
    return out
