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
