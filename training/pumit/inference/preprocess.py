"""From an image (file, DICOM folder or :class:`SimpleITK.Image`) to the model's normalized array, and back.

Layout: :func:`pumit.imageio.to_model_layout` transposes the voxel array to ``(C, D, H, W)`` with the
slice axis first (chosen from the spacing, see :func:`pumit.imageio.choose_depth_axis`) and reverses axes
to the model's orientation (``meta.input.orientation``, canonical by default) — no
resampling, so the model sees the image's own voxels at their native spacing (SAC layers adapt to it).

Resampling happens only when the model's metadata declares a supported spacing range
(``meta.input.spacing_range_mm``) and the image lies outside it on some axis: that axis is resampled
(trilinear, voxel corners of the first and last voxel kept aligned) to the nearest bound, and
predictions are mapped back to the exact native grid: segmentation logits trilinearly before the argmax
(:func:`upsampled_argmax`), label maps by nearest neighbour (:func:`labels_to_native`).
The geometry (origin, direction: LPS as ITK defines it) is never touched; outputs copy it from the
input image.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from pumit.errors import InputError
from pumit.imageio import CANONICAL_ORIENTATION, ModelLayout, plan_layout, read_image, to_model_layout
from pumit.inference.constants import DEPTH_AXES
from pumit.headers import header_spacing_problem
from pumit.inference.modelinfo import InputRequirements
from pumit.inference.progress import Progress
from pumit.intensity import IntensitySpec, IntensityStats, denormalize, normalize
from pumit.spacing import PLANAR_THICKNESS, Spacing, as_spacing

#: Relative tolerance before a spacing counts as outside the model's range.
SPACING_TOLERANCE = 0.02



def read_input(path: str | os.PathLike, *, spacing_override: bool = False, progress: Progress | None = None) -> sitk.Image:
    """Read an image file or DICOM series folder, refusing zero or missing spacing in the header, and
    truncated or NaN/Inf NIfTI data (which ITK would silently fill with zeros).

    A volume whose header has no spacing (ITK would assume 1 mm) is refused with a hint to pass
    ``--spacing``; a single 2D picture without one gets a note and 1 mm pixels. With
    ``spacing_override`` the header check is skipped (the caller supplies the spacing).
    """
    p = Path(path)
    try:
        image = read_image(p)
    except InputError as e:
        if "spacing" in str(e.__cause__ or "").lower():
            raise InputError(f"{p}: zero or invalid voxel spacing in the image header; fix the header or pass "
                             "--spacing X Y Z (mm)") from None
        raise
    if spacing_override:
        return image
    problem = header_spacing_problem(p)
    if problem is not None:
        single_2d = image.GetDimension() == 2 or (image.GetDimension() == 3 and image.GetSize()[2] == 1)
        if problem.kind == "missing" and single_2d:
            if progress is not None:
                progress.note(f"note: {p.name}: {problem.detail}; assuming 1 mm pixels (pass --spacing to set them)")
        else:
            what = "has no voxel spacing" if problem.kind == "missing" else "has a zero or invalid voxel spacing"
            raise InputError(f"{p} {what} in its header ({problem.detail}); the model needs the real spacing: "
                             "fix the header or pass --spacing X Y Z (mm)")
    return image




@dataclass
class PreparedInput:
    """An image ready for a model.

    ``array`` ``(C, D, H, W)`` float32, normalized to ``[-1, 1]``, on the *model grid* (native voxels,
    or resampled when ``resampled``); ``spacing`` is the model grid's spacing (model order, mm).
    ``native_shape``/``native_spacing`` describe the image's own grid in model layout. ``stats`` has
    one :class:`~pumit.intensity.IntensityStats` per channel. ``raw`` is the native ``(C, D, H, W)``
    array in the image's units when requested (reconstruction).
    """

    image: sitk.Image
    layout: ModelLayout
    array: np.ndarray
    spacing: Spacing
    native_shape: tuple[int, int, int]
    native_spacing: Spacing
    resampled: bool
    stats: list[IntensityStats]
    raw: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    normalization: IntensitySpec | None = None
    modality: str | None = None
    normalization_reason: str = ""

    def normalization_record(self) -> dict:
        """JSON-ready record of the normalization used and why (for sidecars): ``scheme``, ``modality``,
        ``reason`` and the full ``spec``."""
        spec = self.normalization or IntensitySpec()
        return {"scheme": spec.scheme, "modality": self.modality, "reason": self.normalization_reason,
                "spec": spec.to_dict()}

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape[1:])  # type: ignore[return-value]


def parse_depth_axis(value: str | int | None) -> int | None:
    """``auto``/``None`` → automatic; ``z``/``y``/``x`` (or 0/1/2, numpy axes of SimpleITK's array)."""
    if value is None or isinstance(value, int):
        if value is not None and value not in (0, 1, 2):
            raise InputError(f"depth axis must be z, y or x (0, 1, 2), got {value}")
        return value
    v = str(value).strip().lower()
    if v in DEPTH_AXES:
        return DEPTH_AXES[v]
    if v in ("0", "1", "2"):
        return int(v)
    raise InputError(f"depth axis must be auto, z, y or x, got {value!r}")


def model_layout(
    image: sitk.Image,
    *,
    depth_axis: int | None = None,
    spacing: tuple[float, ...] | None = None,
    orientation: str = CANONICAL_ORIENTATION,
) -> tuple[np.ndarray, ModelLayout]:
    """:func:`~pumit.imageio.to_model_layout` with an optional spacing override ``spacing`` in the
    image's axis order ``(x, y[, z])`` mm. The override changes only what the model is told, never the
    output geometry."""
    if spacing is None:
        arr, layout = to_model_layout(image, depth_axis=depth_axis, orientation=orientation)
    else:
        vals = [float(v) for v in spacing]
        dim = image.GetDimension()
        if len(vals) not in (2, 3) or (dim == 3 and len(vals) != 3 and image.GetSize()[2] != 1):
            raise InputError(f"--spacing needs {dim} values (x, y{', z' if dim == 3 else ''}) in mm, got {vals}")
        as_spacing(vals + [1.0] * (3 - len(vals)), name="--spacing")
        planar = dim == 2 or image.GetSize()[2] == 1
        zyx = (PLANAR_THICKNESS if planar else vals[2], vals[1], vals[0])
        if depth_axis is None and not planar:
            depth_axis = plan_layout(image.GetDirection(), zyx, orientation=orientation)[0][0]
        arr, layout = to_model_layout(image, depth_axis=depth_axis, orientation=orientation)
        model_sp = tuple(zyx[a] for a in layout.perm)
        layout = dataclasses.replace(layout, spacing=model_sp)
    as_spacing(layout.spacing, name="image spacing")
    return arr, layout


def resample_target(spacing: Spacing, spacing_range, planar: bool) -> Spacing | None:
    """The spacing to resample to (nearest bound of the model's range on each offending axis), or
    ``None`` when ``spacing`` is inside the range (within :data:`SPACING_TOLERANCE`)."""
    if spacing_range is None:
        return None
    target = list(spacing)
    for i, (lo, hi) in enumerate(spacing_range):
        if i == 0 and planar:
            continue
        if spacing[i] < lo * (1 - SPACING_TOLERANCE):
            target[i] = lo
        elif spacing[i] > hi * (1 + SPACING_TOLERANCE):
            target[i] = hi
    return None if tuple(target) == tuple(spacing) else (target[0], target[1], target[2])


def resampled_grid(shape: tuple[int, int, int], spacing: Spacing, target: Spacing) -> tuple[tuple[int, int, int], Spacing]:
    """Shape and exact spacing of a grid covering the same extent (voxel corners aligned) as
    ``shape``×``spacing`` with a spacing close to ``target``."""
    new_shape = tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target))
    new_spacing = tuple(n * s / m for n, s, m in zip(shape, spacing, new_shape))
    return new_shape, new_spacing  # type: ignore[return-value]


def resample_array(array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Trilinear resampling of ``(C, D, H, W)`` to spatial ``shape`` (corner-aligned, ``align_corners=False``)."""
    if tuple(array.shape[1:]) == tuple(shape):
        return array
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    out = F.interpolate(t, size=tuple(int(v) for v in shape), mode="trilinear", align_corners=False)
    return out[0].numpy()


#: cap on the elements of one class chunk in :func:`upsampled_argmax` (float32: 256 MB)
ARGMAX_CHUNK_ELEMENTS = 1 << 26


def upsampled_argmax(logits: torch.Tensor, shape: tuple[int, int, int],
                     max_elements: int = ARGMAX_CHUNK_ELEMENTS) -> torch.Tensor:
    """Class index ``(D, H, W)`` of the logits ``(C, D', H', W')`` resampled trilinearly to spatial ``shape``.

    The same geometry as :func:`resample_array` (corner-aligned, ``align_corners=False``), but the ``C × D × H
    × W`` resampled logits are never held at once: classes are resampled in chunks of at most
    ``max_elements`` values and a running maximum keeps the winner (ties: the lower class index, as
    ``argmax``). Resampling the scores before the argmax (as nnU-Net does with its softmax) keeps boundaries
    that a nearest-neighbour copy of the coarse label map would turn into blocks. Runs on ``logits``' device.
    """
    shape = tuple(int(v) for v in shape)
    if tuple(logits.shape[1:]) == shape:
        return logits.argmax(0)
    n = int(np.prod(shape))
    k = max(1, min(int(logits.shape[0]), max_elements // max(n, 1)))
    best: torch.Tensor | None = None
    arg: torch.Tensor | None = None
    for c0 in range(0, int(logits.shape[0]), k):
        up = F.interpolate(logits[None, c0:c0 + k].float(), size=shape, mode="trilinear", align_corners=False)[0]
        value, index = up.max(0)
        del up
        if best is None or arg is None:
            best, arg = value, index
        else:
            better = value > best
            best = torch.where(better, value, best)
            arg = torch.where(better, index + c0, arg)
    assert arg is not None
    return arg


def nearest_indices(n_native: int, n_model: int) -> np.ndarray:
    """For each native voxel ``i`` the model-grid voxel containing its centre: ``floor((i + ½)·m/n)``."""
    idx = np.floor((np.arange(n_native) + 0.5) * (n_model / n_native)).astype(np.int64)
    return np.clip(idx, 0, n_model - 1)


def labels_to_native(labels: np.ndarray, native_shape: tuple[int, int, int]) -> np.ndarray:
    """Nearest-neighbour mapping of a label map ``(D', H', W')`` on the model grid back to ``native_shape``."""
    if tuple(labels.shape) == tuple(native_shape):
        return labels
    i, j, k = (nearest_indices(n, m) for n, m in zip(native_shape, labels.shape))
    return labels[np.ix_(i, j, k)]


def image_modality(image: sitk.Image) -> str | None:
    """The DICOM Modality tag (0008,0060) of an image read from DICOM, else ``None`` (NIfTI/NRRD do not say)."""
    key = "0008|0060"
    return image.GetMetaData(key).strip() or None if image.HasMetaDataKey(key) else None


def choose_normalization(
    raw: np.ndarray,
    image: sitk.Image,
    requirements: InputRequirements,
    *,
    normalization: IntensitySpec | None = None,
    modality: str | None = None,
) -> tuple[IntensitySpec, str | None, str]:
    """The intensity normalization for ``raw`` ``(C, D, H, W)`` (input units): ``(spec, modality, reason)``.

    Precedence: an explicit ``normalization``; the ``modality`` the caller gives (``--modality``); the DICOM
    Modality tag; an 8-bit 2D picture (PNG, JPEG) is ``photo`` as in ``pumit data index``; otherwise (NIfTI,
    NRRD, MHA do not say) :func:`pumit.modality.detect_modality` on the intensities (CT from Hounsfield
    units, else the documented default ``mri``). The modality then picks the
    model's per-modality normalization (``input.normalization_by_modality``), else the model's default.
    """
    from pumit.modality import canonical_modality, detect_modality

    if normalization is not None:
        return normalization, modality, "normalization given by the caller"
    if modality:
        used, why = modality, f"modality {modality!r} given (--modality)"
    elif image_modality(image):
        used = image_modality(image)
        why = f"DICOM Modality tag {used!r}"
    elif image.GetDimension() == 2 and image.GetPixelID() in (sitk.sitkUInt8, sitk.sitkVectorUInt8):
        used, why = "photo", "an 8-bit 2D picture (PNG/JPEG-like) names no modality: photo, as the data pipeline treats it"
    else:
        used, why = detect_modality(raw[0] if raw.ndim == 4 else raw)
        why = f"the file names no modality; detected {used!r}: {why}"
    key = canonical_modality(used)
    if key in requirements.normalization_by_modality:
        spec = requirements.normalization_by_modality[key]
        return spec, key, f"{why}; the model's {key} normalization ({spec.scheme})"
    spec = requirements.normalization
    return spec, key, f"{why}; the model's default normalization ({spec.scheme})"


def prepare_input(
    image: sitk.Image,
    requirements: InputRequirements,
    *,
    depth_axis: int | None = None,
    spacing: tuple[float, ...] | None = None,
    normalization: IntensitySpec | None = None,
    modality: str | None = None,
    keep_raw: bool = False,
    progress: Progress | None = None,
) -> PreparedInput:
    """Layout, channel check, per-channel normalization and (only if needed) resampling.

    Raises :class:`~pumit.errors.InputError` for 4D images, NaN/Inf voxels, invalid spacing, and a
    channel count other than the model's.
    """
    raw, layout = model_layout(image, depth_axis=depth_axis, spacing=spacing, orientation=requirements.orientation)
    if layout.channels != requirements.channels:
        kind = "a multi-channel (vector/RGB)" if layout.channels > 1 else "a single-channel"
        raise InputError(f"the model expects {requirements.channels} channel(s) per voxel but the input is {kind} image "
                         f"with {layout.channels} component(s); convert it first")
    spec, used_modality, reason = choose_normalization(raw, image, requirements, normalization=normalization,
                                                       modality=modality)
    norm = np.empty_like(raw)
    stats: list[IntensityStats] = []
    for c in range(raw.shape[0]):
        norm[c], st = normalize(raw[c], spec)
        stats.append(st)
    native_shape: tuple[int, int, int] = tuple(raw.shape[1:])  # type: ignore[assignment]
    native_spacing = layout.spacing
    target = resample_target(native_spacing, requirements.spacing_range, layout.planar)
    notes: list[str] = []
    model_spacing = native_spacing
    if target is not None:
        new_shape, model_spacing = resampled_grid(native_shape, native_spacing, target)
        if all(lo == hi for lo, hi in requirements.spacing_range):  # a model of one grid: resampling is the plan
            msg = (f"the model works on a {_fmt(tuple(lo for lo, _ in requirements.spacing_range))} mm grid: resampling "
                   f"{native_shape} voxels at {_fmt(native_spacing)} mm → {new_shape} at {_fmt(model_spacing)} mm "
                   "(thickness, H, W); predictions are mapped back to the input grid")
        else:
            msg = (f"warning: spacing {_fmt(native_spacing)} mm (thickness, H, W) is outside the model's supported range "
                   f"{_fmt_range(requirements.spacing_range)}; resampling {native_shape} → {new_shape} voxels at "
                   f"{_fmt(model_spacing)} mm; predictions are mapped back to the input grid")
        notes.append(msg)
        if progress is not None:
            progress.note(msg)
        norm = resample_array(norm, new_shape)
    return PreparedInput(
        image=image, layout=layout, array=norm, spacing=model_spacing, native_shape=native_shape,
        native_spacing=native_spacing, resampled=target is not None, stats=stats,
        raw=raw if keep_raw else None, notes=notes, normalization=spec, modality=used_modality,
        normalization_reason=reason,
    )


def denormalize_channels(array: np.ndarray, stats: list[IntensityStats]) -> np.ndarray:
    """Inverse per-channel normalization of ``(C, D, H, W)`` back to the image's units (float32)."""
    out = np.empty(array.shape, dtype=np.float32)
    for c, st in enumerate(stats):
        out[c] = denormalize(array[c], st)
    return out


def pad_to_multiple(array: np.ndarray, divisor: tuple[int, int, int], mode: str = "edge", value: float = 0.0) -> np.ndarray:
    """Pad ``(C, D, H, W)`` at the high end of each axis to a multiple of ``divisor`` (for a crop back
    with ``[:, :D, :H, :W]``, the first voxel stays at index 0)."""
    pads = [(0, 0)] + [(0, (-n) % k) for n, k in zip(array.shape[1:], divisor)]
    if not any(p[1] for p in pads):
        return array
    if mode == "constant":
        return np.pad(array, pads, mode="constant", constant_values=value)
    return np.pad(array, pads, mode=mode)  # type: ignore[call-overload]


def _fmt(s) -> str:
    return "(" + ", ".join("2D" if v >= 1e4 else f"{v:.3g}" for v in s) + ")"


def _fmt_range(r) -> str:
    return "[" + ", ".join(f"{lo:g}–{hi:g}" for lo, hi in r) + "]"
