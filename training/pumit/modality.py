"""The modality vocabulary of the data pipeline: canonical names, integer ids, and default intensity schemes.

Every record carries a canonical modality name from :data:`MODALITIES`; its position in that tuple is the
integer id a dataset returns (``sample["modality"]``). Raw names from ``dataset.json`` files, DICOM tags or
the command line are mapped with :func:`canonical_modality` (``"MRI"``, ``"MR"``, ``"T1w"``, ``"FLAIR"`` →
``"mri"``; ``"CR"``, ``"DX"`` → ``"xray"``; ...). Unknown names become ``"other"``.
"""

from __future__ import annotations

import numpy as np

from pumit.intensity import IntensitySpec

#: Canonical modality names; the index is the modality id. Append only (ids are stored with models).
MODALITIES: tuple[str, ...] = ("other", "ct", "mri", "pet", "xray", "us", "photo")

_ALIASES: dict[str, str] = {
    "ct": "ct", "cta": "ct", "cect": "ct", "nect": "ct", "cbct": "ct",
    "mri": "mri", "mr": "mri", "mra": "mri", "t1": "mri", "t1w": "mri", "t1gd": "mri", "t1ce": "mri",
    "t2": "mri", "t2w": "mri", "flair": "mri", "pd": "mri", "pdw": "mri", "dwi": "mri", "adc": "mri",
    "t2star": "mri", "bold": "mri", "swi": "mri", "mprage": "mri", "nmr": "mri",
    "pet": "pet", "pt": "pet", "spect": "pet", "nm": "pet",
    "xray": "xray", "x-ray": "xray", "cr": "xray", "dx": "xray", "mg": "xray", "xa": "xray", "rf": "xray",
    "io": "xray", "px": "xray", "radiograph": "xray", "mammography": "xray",
    "us": "us", "ultrasound": "us", "ivus": "us",
    "photo": "photo", "rgb": "photo", "fundus": "photo", "op": "photo", "xc": "photo", "es": "photo",
    "gm": "photo", "sm": "photo", "dermoscopy": "photo", "endoscopy": "photo", "microscopy": "photo",
    "other": "other", "ot": "other", "sc": "other",
}


def canonical_modality(name: str | None) -> str:
    """Map a raw modality name (case-insensitive; DICOM code, MSD name, BIDS suffix) to :data:`MODALITIES`."""
    key = (name or "").strip().lower().replace(" ", "").replace("_", "")
    return _ALIASES.get(key, "other")


def modality_id(name: str) -> int:
    """Integer id of a modality (canonicalized first)."""
    return MODALITIES.index(canonical_modality(name))


def is_photo_like(modality: str, channels: int, dtype: np.dtype | str) -> bool:
    """True for 8-bit photos, RGB or grey: modality ``photo``, or an 8-bit RGB image of any modality
    (an ultrasound screen capture, a secondary-capture DICOM)."""
    kind8 = np.dtype(dtype) == np.uint8
    return canonical_modality(modality) == "photo" or (channels >= 3 and kind8)


def default_intensity(modality: str, channels: int, dtype: np.dtype | str) -> IntensitySpec:
    """Intensity spec used when a record does not name one: ``photo`` (``x / 255``) for photo-like images,
    else :meth:`pumit.intensity.IntensitySpec.for_modality` of the canonical modality."""
    if is_photo_like(modality, channels, dtype):
        return IntensitySpec(scheme="photo")
    return IntensitySpec.for_modality(canonical_modality(modality))


#: Modality assumed for an image whose file does not name one and whose intensities are not CT-like.
#: ``mri`` (z-score normalization) is what most 3D training images used (IXI T1, MSD hippocampus, tptbox T2w).
DEFAULT_MODALITY = "mri"

#: Voxels at or below this value are treated as out-of-field padding (-1024, -2000, -3024, ...), not air.
_CT_PADDING_HU = -1100.0


def detect_modality(array: np.ndarray) -> tuple[str, str]:
    """Guess the modality of an image whose file does not say (NIfTI, NRRD, MHA) from its intensities.

    ``array`` is any voxel array in the file's units (shape irrelevant; a trailing RGB axis of an 8-bit
    image is recognised). Returns ``(modality, reason)``: ``modality`` from :data:`MODALITIES`, ``reason``
    a short human sentence for logs and sidecars.

    CT is recognised from Hounsfield units: after ignoring out-of-field padding (≤ -1100), the image
    reaches at least -500 (air, lung), at least 0.5 % of voxels are below -200 HU (air, lung, bowel gas,
    the air around the body), at least 20 % lie in the soft-tissue/bone range [-200, 1500] HU, and the
    99.5th percentile is below 4000 HU. MRI, PET and ultrasound have no such negative values.
    8-bit RGB images are ``photo``; everything else gets :data:`DEFAULT_MODALITY`.
    """
    a = np.asarray(array)
    if a.size == 0:
        return DEFAULT_MODALITY, "empty image; using the default modality"
    if a.dtype == np.uint8 and a.ndim >= 3 and a.shape[-1] in (3, 4):
        return "photo", "8-bit RGB image: treated as a photo"
    v = a.astype(np.float32, copy=False).ravel()
    v = v[np.isfinite(v)]
    if v.size > 2_000_000:  # a fixed stride subsample keeps this fast and deterministic
        v = v[:: v.size // 1_000_000]
    body = v[v > _CT_PADDING_HU]
    if body.size == 0:
        return DEFAULT_MODALITY, f"all values ≤ {_CT_PADDING_HU:g}; not Hounsfield units, using the default ({DEFAULT_MODALITY})"
    low = float(np.mean(body < -200.0))
    tissue = float(np.mean((body >= -200.0) & (body <= 1500.0)))
    top = float(np.percentile(body, 99.5))
    lowest = float(body.min())
    if lowest <= -500.0 and low >= 0.005 and tissue >= 0.2 and top < 4000.0:
        return "ct", (f"intensities look like CT Hounsfield units ({100 * low:.1f}% of voxels below -200 HU, "
                      f"{100 * tissue:.0f}% in the soft-tissue/bone range, minimum {lowest:.0f})")
    why = "no values below -500" if lowest > -500.0 else (
        f"only {100 * low:.2f}% below -200" if low < 0.005 else
        f"only {100 * tissue:.0f}% in [-200, 1500]" if tissue < 0.2 else f"99.5th percentile {top:.0f}")
    return DEFAULT_MODALITY, f"intensities are not CT Hounsfield units ({why}); using the default ({DEFAULT_MODALITY}, z-score)"
