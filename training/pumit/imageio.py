"""Reading and writing medical images with their full geometry (SimpleITK), and the mapping between
an image's voxel grid and the model's ``(D, H, W)`` layout.

Geometry is never resampled here. :func:`to_model_layout` only *transposes and reverses* array axes so
that the slice axis comes first and the array has one canonical anatomical orientation
(:data:`CANONICAL_ORIENTATION`, from the direction matrix), and :func:`from_model_layout` undoes both and
copies origin, spacing and direction from the reference image, so an output is on exactly the input's
grid (LPS physical space, as ITK defines it; RAS files such as NIfTI are converted by ITK on read and
back on write).

Supported inputs: any file SimpleITK reads (NIfTI ``.nii/.nii.gz``, NRRD ``.nrrd/.nhdr``, MetaImage
``.mha/.mhd``, single DICOM files, PNG/JPEG/BMP/TIFF) and DICOM series folders.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pumit.atomic import atomic_write_bytes, atomic_write_text, default_file_mode, temp_file  # noqa: F401  (re-exported)
from pumit.errors import InputError, ResourceError
from pumit.headers import nifti_data_problem, written_image_problem
from pumit.spacing import PLANAR_THICKNESS, Spacing

#: File name suffixes SimpleITK writes; the temporary name of an atomic write must keep them.
_MULTI_SUFFIXES = (".nii.gz", ".seg.nrrd", ".tar.gz")


def full_suffix(path: str | os.PathLike) -> str:
    """Suffix including double extensions such as ``.nii.gz``."""
    name = Path(path).name.lower()
    for s in _MULTI_SUFFIXES:
        if name.endswith(s):
            return Path(path).name[-len(s):]
    return Path(path).suffix


#: niftilib's notes about zero/negative ``pixdim``: :func:`pumit.headers.header_spacing_problem` reports them.
_COVERED_NIFTI_NOTES = ("pixdim[",)


@contextlib.contextmanager
def native_stderr(covered: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """Capture what C libraries (niftilib, GDCM) print to file descriptor 2 inside the block.

    ITK's NIfTI code prints lines such as ``** ERROR: NWAD ...`` or ``** ERROR (nifti_image_read)``
    itself; pumit reports those failures in one line of its own, so the captured lines are dropped
    when the block raises and written back to stderr otherwise (nothing is hidden on success), except
    lines starting with one of ``covered`` (problems pumit checks and reports itself).
    """
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded interpreter)
        yield lines
        return
    failed = False
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            lines.extend(ln for ln in text.splitlines() if ln.strip())
            shown = [ln for ln in lines if not ln.startswith(covered)] if not failed else []
            if shown:
                sys.stderr.write("\n".join(shown) + "\n")
                sys.stderr.flush()


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read an image file or a DICOM series folder.

    A folder holding several DICOM series is read as its largest series (most files). Raises
    :class:`~pumit.errors.InputError` with the path for a missing, empty, corrupt or truncated input.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}")
    try:
        if p.is_dir():
            return _read_dicom_series(p)
        if p.stat().st_size == 0:
            raise InputError(f"input file is empty: {p}")
        with native_stderr(covered=_COVERED_NIFTI_NOTES):
            image = sitk.ReadImage(str(p))
    except RuntimeError as e:  # SimpleITK reports unreadable/corrupt files as RuntimeError
        raise InputError(f"cannot read image {p}: corrupt, truncated or unsupported file ({itk_reason(str(e))})") from e
    problem = nifti_data_problem(p)  # ITK zero-fills truncated NIfTI data and NaN/Inf voxels silently
    if problem is not None:
        raise InputError(f"cannot use image {p}: {problem}")
    if image.GetNumberOfPixels() == 0:
        raise InputError(f"image has no voxels: {p}")
    return image


_ITK_PREFIX = re.compile(r"^(?:ITK ERROR|itk::ERROR|sitk::ERROR):\s*(?:\w+\(0x[0-9a-fA-F]+\):\s*)?")


def itk_reason(message: str) -> str:
    """The most informative line of an ITK/SimpleITK exception message (not the C++ source location)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Exception thrown", "Reason:")) and not ln.endswith(":")]
    reason = _ITK_PREFIX.sub("", lines[-1]) if lines else "unknown reason"
    return reason[:200]


def _read_dicom_series(folder: Path) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"no DICOM series found in folder {folder}")
    files = max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute()


def write_image(image: sitk.Image, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write atomically: to a temporary name in the same folder, then rename over ``path``.

    A failure (full disk, cancel) never leaves a partial file under ``path``; a file that ITK left
    incomplete without raising (full disk) is detected (:func:`~pumit.headers.written_image_problem`)
    and reported as :class:`~pumit.errors.ResourceError` (exit 4).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = full_suffix(p) or ".nii.gz"
    fd, tmp_p = temp_file(p, suffix)
    os.close(fd)
    tmp = str(tmp_p)
    try:
        with native_stderr():
            try:
                sitk.WriteImage(image, tmp, useCompression=compress)
            except RuntimeError as e:
                raise ResourceError(f"cannot write {p}: {itk_reason(str(e))}") from None
            problem = written_image_problem(tmp, image)
            if problem is not None:
                raise ResourceError(f"cannot write {p}: disk full or write error, {problem}")
        default_file_mode(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


#: The canonical anatomical orientation of the model's ``(D, H, W)`` array (``meta.input.orientation``):
#: with the slice axis at its natural place, ``D`` increases towards the patient's Superior, ``H`` towards
#: Anterior and ``W`` towards Right: NumPy ``(z, y, x)`` of an image stored in RAS voxel order (NIfTI's
#: ``as_closest_canonical``; ITK direction ``diag(-1, -1, 1)`` in LPS).
CANONICAL_ORIENTATION = "RAS"
#: ``meta.input.orientation`` of a model that sees the voxels in their stored order (no canonicalisation).
VOXEL_ORIENTATION = "voxel"
ORIENTATIONS = (CANONICAL_ORIENTATION, VOXEL_ORIENTATION)

#: Physical LPS axes (0 = x L/R, 1 = y P/A, 2 = z I/S) in canonical model order, and the LPS sign each
#: canonical model axis increases along (+S = +z, +A = -y, +R = -x).
_CANONICAL_ORDER = (2, 1, 0)
_CANONICAL_SIGN = {2: 1.0, 1: -1.0, 0: -1.0}


@dataclass(frozen=True)
class ModelLayout:
    """How an image's voxel array maps to the model's ``(D, H, W)`` array.

    ``perm`` gives, for model axes ``(D, H, W)``, the axis of SimpleITK's numpy array ``(z, y, x)``
    it came from; ``flip`` says, per model axis, whether it is reversed after the transpose (to reach
    the canonical orientation, see :data:`CANONICAL_ORIENTATION`). ``spacing`` is the model-order
    spacing in mm; for 2D images the thickness is :data:`~pumit.spacing.PLANAR_THICKNESS`.
    ``channels`` is the number of components per voxel. Axes are only transposed and reversed, never
    resampled.
    """

    perm: tuple[int, int, int]
    spacing: Spacing
    channels: int
    planar: bool
    flip: tuple[bool, bool, bool] = (False, False, False)
    orientation: str = CANONICAL_ORIENTATION


def choose_depth_axis(spacing_zyx: tuple[float, float, float], *, anisotropy_tol: float = 1.1,
                      fallback: int = 0) -> int:
    """Pick the slice axis among numpy axes ``(z, y, x)``: the axis with clearly the largest spacing
    (more than ``anisotropy_tol`` times the others), else ``fallback`` (the image's own slice axis ``z``
    by default; :func:`plan_layout` passes the axis closest to Superior-Inferior)."""
    s = np.asarray(spacing_zyx, dtype=float)
    k = int(np.argmax(s))
    others = np.delete(s, k)
    if s[k] > anisotropy_tol * others.max():
        return k
    return fallback


def anatomical_axes(direction: Sequence[float] | np.ndarray) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """For numpy axes ``(z, y, x)`` of a 3D image with ITK ``direction`` (row-major 3x3, LPS): the
    physical axis each one runs along (0 = L/R, 1 = P/A, 2 = I/S) and its sign in LPS.

    An oblique image gets the assignment of voxel axes to physical axes with the largest total
    ``|cos|`` (a permutation, so two voxel axes never claim the same physical axis)."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)  # column i: physical direction of index axis i
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(d[p[i], i]) for i in range(3)))
    phys = tuple(best[2 - a] for a in range(3))  # numpy axis a is index axis 2 - a
    sign = tuple(1.0 if d[best[2 - a], 2 - a] >= 0 else -1.0 for a in range(3))
    return phys, sign  # type: ignore[return-value]


def plan_layout(
    direction: Sequence[float] | np.ndarray,
    spacing_zyx: tuple[float, float, float],
    *,
    depth_axis: int | None = None,
    orientation: str = CANONICAL_ORIENTATION,
    planar: bool = False,
) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """``(perm, flip)`` of :class:`ModelLayout` for a 3D image (the one place the layout is decided).

    Depth: ``depth_axis`` (numpy axis) if given, else the axis with clearly the largest spacing
    (:func:`choose_depth_axis`), else (near-isotropic) the axis closest to Superior-Inferior for the
    canonical orientation, numpy ``z`` for ``"voxel"``. Canonical: the two other axes follow in the
    order S-I, A-P, R-L and every axis is reversed where needed to run towards S, A, R — so all 48
    axis orders/flips of the same anatomy give the same array. ``"voxel"`` keeps the stored order.
    Planar images (``D = 1``) keep their pixel order.
    """
    if orientation not in ORIENTATIONS:
        raise InputError(f"unknown orientation {orientation!r}; expected one of {', '.join(ORIENTATIONS)}")
    if depth_axis is not None and depth_axis not in (0, 1, 2):
        raise InputError(f"depth_axis must be 0 (z), 1 (y) or 2 (x), got {depth_axis}")
    if planar or orientation == VOXEL_ORIENTATION:
        k = depth_axis if depth_axis is not None else (0 if planar else choose_depth_axis(spacing_zyx))
        return (k,) + tuple(a for a in (0, 1, 2) if a != k), (False, False, False)  # type: ignore[return-value]
    phys, sign = anatomical_axes(direction)
    if depth_axis is None:
        depth_axis = choose_depth_axis(spacing_zyx, fallback=phys.index(2))
    rank = {p: i for i, p in enumerate(_CANONICAL_ORDER)}
    rest = sorted((a for a in (0, 1, 2) if a != depth_axis), key=lambda a: rank[phys[a]])
    perm = (depth_axis, rest[0], rest[1])
    flip = tuple(sign[a] != _CANONICAL_SIGN[phys[a]] for a in perm)
    return perm, flip  # type: ignore[return-value]


def to_model_layout(image: sitk.Image, *, depth_axis: int | None = None,
                    orientation: str = CANONICAL_ORIENTATION) -> tuple[np.ndarray, ModelLayout]:
    """Convert an image to a ``(C, D, H, W)`` float32 array in model layout, and the layout to undo it.

    The axes are transposed (slice axis first) and reversed to the canonical anatomical orientation
    (:func:`plan_layout`; ``orientation="voxel"`` keeps the stored voxel order) — never resampled.
    ``depth_axis`` (numpy axis 0=z, 1=y, 2=x of the image) overrides the automatic choice. 2D images
    become ``D = 1`` with planar thickness. Raises :class:`~pumit.errors.InputError` for 4D images and
    NaN/Inf voxels.
    """
    dim = image.GetDimension()
    if dim not in (2, 3):
        raise InputError(f"expected a 2D or 3D image, got a {dim}D image of size {image.GetSize()}")
    channels = image.GetNumberOfComponentsPerPixel()
    arr = sitk.GetArrayFromImage(image)  # (z, y, x[, c]) or (y, x[, c])
    if channels == 1:
        arr = arr[..., None]
    arr = np.moveaxis(arr, -1, 0)  # (C, [z,] y, x)
    sp = image.GetSpacing()  # (x, y[, z])
    if dim == 2:
        arr = arr[:, None]
        spacing_zyx = (PLANAR_THICKNESS, float(sp[1]), float(sp[0]))
        planar = True
    else:
        spacing_zyx = (float(sp[2]), float(sp[1]), float(sp[0]))
        planar = False
        if image.GetSize()[2] == 1:  # a single slice stored as 3D (e.g. one DICOM CR): treat as 2D
            spacing_zyx = (PLANAR_THICKNESS, spacing_zyx[1], spacing_zyx[2])
            planar = True
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError("image contains NaN or infinite voxel values; clean or mask them first")
    if planar and depth_axis not in (None, 0):
        depth_axis = 0
    direction = image.GetDirection() if dim == 3 else np.eye(3).ravel()
    perm, flip = plan_layout(direction, spacing_zyx, depth_axis=depth_axis, orientation=orientation, planar=planar)
    out = arr.transpose((0,) + tuple(a + 1 for a in perm))
    out = out[(slice(None),) + tuple(slice(None, None, -1) if f else slice(None) for f in flip)]
    out = np.ascontiguousarray(out, dtype=np.float32)
    spacing = tuple(spacing_zyx[a] for a in perm)
    return out, ModelLayout(perm=perm, spacing=spacing, channels=channels, planar=planar,  # type: ignore[arg-type]
                            flip=flip, orientation=orientation)


def from_model_layout(array: np.ndarray, layout: ModelLayout, reference: sitk.Image, *, dtype=None) -> sitk.Image:
    """Inverse of :func:`to_model_layout` for a single-channel ``(D, H, W)`` array (or ``(C, D, H, W)`` as a
    vector image): undo the flips, transpose back and copy origin, spacing and direction from ``reference``
    (the input's exact grid)."""
    a = np.asarray(array)
    vector = a.ndim == 4
    if not vector and a.ndim != 3:
        raise InputError(f"expected a (D, H, W) or (C, D, H, W) array, got shape {a.shape}")
    flips = tuple(slice(None, None, -1) if f else slice(None) for f in layout.flip)
    a = a[((slice(None),) + flips) if vector else flips]
    inv = tuple(int(i) for i in np.argsort(layout.perm))
    a = a.transpose(((0,) + tuple(i + 1 for i in inv)) if vector else inv)
    if reference.GetDimension() == 2:
        a = a[:, 0] if vector else a[0]
    if vector:
        a = np.moveaxis(a, 0, -1)
    if dtype is not None:
        a = a.astype(dtype)
    out = sitk.GetImageFromArray(np.ascontiguousarray(a), isVector=vector)
    if out.GetSize() != reference.GetSize():
        raise InputError(f"array of shape {array.shape} does not match the reference grid {reference.GetSize()}")
    out.CopyInformation(reference)
    return out
