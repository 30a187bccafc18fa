"""Checks of what a file really holds, where ITK silently papers over problems.

* Spacing: ITK replaces a zero or absent spacing by 1 mm for several formats (a NIfTI ``pixdim`` of 0,
  a NRRD without ``spacings``/``space directions``, a MetaImage without ``ElementSpacing``, a DICOM
  without ``PixelSpacing``). A spacing-aware model must not guess, so :func:`header_spacing_problem`
  reads the header itself and reports what is wrong.
* NIfTI data: ITK reads a truncated ``.nii``/``.nii.gz`` without an error (the missing voxels become
  0) and turns NaN/Inf voxels into 0. :func:`nifti_data_problem` checks the data size (the gzip
  trailer first, a full decompression only when it disagrees) and scans floating-point data for
  non-finite values.
* Writes: ITK's NIfTI writer does not raise on a full disk (it prints ``** ERROR: NWAD``) and leaves a
  truncated file; :func:`written_image_problem` checks every image pumit writes before it is committed.

The caller turns a problem into a one-line :class:`~pumit.errors.InputError`.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from pumit.errors import CancelledError

#: 2D picture formats that never carry a physical pixel size.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class SpacingProblem:
    """``kind`` is ``"missing"`` (header has none: ITK assumed 1 mm) or ``"zero"`` (zero/negative/NaN)."""

    kind: str
    detail: str


def header_spacing_problem(path: str | Path) -> SpacingProblem | None:
    """What is wrong with the voxel spacing recorded in ``path``'s header, or ``None`` when it is fine
    (or the format is not checked). ``path`` may be a DICOM series folder."""
    p = Path(path)
    try:
        if p.is_dir():
            return _dicom_folder(p)
        name = p.name.lower()
        if name.endswith((".nii", ".nii.gz", ".hdr", ".img", ".img.gz")):
            return _nifti(p)
        if name.endswith((".nrrd", ".nhdr")):
            return _nrrd(p)
        if name.endswith((".mha", ".mhd")):
            return _metaimage(p)
        if name.endswith(PICTURE_SUFFIXES):
            return SpacingProblem("missing", f"{p.suffix} pictures carry no pixel size")
        if name.endswith((".dcm", ".dicom")) or _is_dicom(p):
            return _dicom_file(p)
    except CancelledError:
        raise
    except Exception:  # noqa: BLE001 - advisory check: unreadable headers are reported by the image reader
        return None
    return None


def _bad(values: list[float]) -> bool:
    return any((not math.isfinite(v)) or v <= 0 for v in values)


def _nifti(p: Path) -> SpacingProblem | None:
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    with opener(p, "rb") as f:  # type: ignore[operator]
        head = f.read(540)
    if len(head) < 348:
        return None
    for endian in ("<", ">"):
        size = struct.unpack_from(endian + "i", head, 0)[0]
        if size == 348:
            ndim = struct.unpack_from(endian + "h", head, 40)[0]
            pixdim = list(struct.unpack_from(endian + "8f", head, 76))
            break
        if size == 540 and len(head) >= 540:
            ndim = struct.unpack_from(endian + "q", head, 16)[0]
            pixdim = list(struct.unpack_from(endian + "8d", head, 104))
            break
    else:
        return None
    n = max(1, min(int(ndim), 3))
    if _bad(pixdim[1 : n + 1]):
        return SpacingProblem("zero", f"NIfTI pixdim[1:{n + 1}] = {pixdim[1:n + 1]}")
    return None


def _text_header(p: Path, limit: int = 65536) -> str:
    with open(p, "rb") as f:
        data = f.read(limit)
    end = data.find(b"\n\n")
    if p.suffix.lower() in (".mha", ".mhd"):
        m = re.search(rb"ElementDataFile\s*=.*\n", data)
        end = m.end() if m else end
    return data[: end if end >= 0 else len(data)].decode("latin-1", errors="replace")


def _numbers(text: str) -> list[float]:
    out = []
    for tok in re.findall(r"[-+]?(?:nan|inf|\d*\.?\d+(?:[eE][-+]?\d+)?)", text, flags=re.IGNORECASE):
        try:
            out.append(float(tok))
        except ValueError:
            pass
    return out


def _nrrd(p: Path) -> SpacingProblem | None:
    fields = {}
    for line in _text_header(p).splitlines()[1:]:
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip().lstrip("=").strip()
    kinds = fields.get("kinds", "").lower().split()
    if "space directions" in fields:
        vecs = re.findall(r"\(([^)]*)\)", fields["space directions"])
        norms = [math.sqrt(sum(c * c for c in _numbers(v))) for v in vecs]
        if vecs and _bad(norms):
            return SpacingProblem("zero", f"NRRD space directions {fields['space directions']}")
        return None
    if "spacings" in fields:
        non_spatial = ("vector", "list", "rgb-color", "rgba-color", "3-color")
        vals = [v for v, k in zip(_numbers(fields["spacings"]), kinds or ["domain"] * 8) if k not in non_spatial]
        if _bad(vals):
            return SpacingProblem("zero", f"NRRD spacings {fields['spacings']}")
        return None
    return SpacingProblem("missing", "NRRD header has neither 'spacings' nor 'space directions'")


def _metaimage(p: Path) -> SpacingProblem | None:
    fields = {}
    for line in _text_header(p).splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            fields[k.strip().lower()] = v.strip()
    for key in ("elementspacing", "elementsize"):
        if key in fields:
            vals = _numbers(fields[key])
            if _bad(vals):
                return SpacingProblem("zero", f"MetaImage {key} = {fields[key]}")
            return None
    return SpacingProblem("missing", "MetaImage header has no ElementSpacing")


def _is_dicom(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_file(p: Path) -> SpacingProblem | None:
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom is a dependency
        return None
    ds = pydicom.dcmread(str(p), stop_before_pixels=True, force=True)
    for kw in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        v = ds.get(kw)
        if v is not None:
            vals = [float(x) for x in v]
            return SpacingProblem("zero", f"DICOM {kw} = {vals}") if _bad(vals) else None
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(seq)
        if groups:
            pm = groups[0].get("PixelMeasuresSequence")
            if pm and pm[0].get("PixelSpacing") is not None:
                vals = [float(x) for x in pm[0].PixelSpacing]
                return SpacingProblem("zero", f"DICOM PixelSpacing = {vals}") if _bad(vals) else None
    return SpacingProblem("missing", "DICOM has no PixelSpacing")


def _dicom_folder(folder: Path) -> SpacingProblem | None:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        return None
    files = max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len)
    return _dicom_file(Path(files[0])) if files else None


#: NIfTI datatype codes of floating-point data (float32, float64, float128, complex64/128/256, float16).
_NIFTI_FLOAT_TYPES = {16, 32, 64, 1536, 1792, 2048}


def _nifti_layout(head: bytes) -> tuple[str, int, list[int], int, float] | None:
    """``(endian, datatype, dims, bitpix, vox_offset)`` of a NIfTI-1/2 header, or ``None``."""
    for endian in ("<", ">"):
        size = struct.unpack_from(endian + "i", head, 0)[0]
        if size == 348:
            dim = list(struct.unpack_from(endian + "8h", head, 40))
            datatype, bitpix = struct.unpack_from(endian + "2h", head, 70)
            vox_offset = struct.unpack_from(endian + "f", head, 108)[0]
            break
        if size == 540 and len(head) >= 540:
            datatype, bitpix = struct.unpack_from(endian + "2h", head, 12)
            dim = list(struct.unpack_from(endian + "8q", head, 16))
            vox_offset = float(struct.unpack_from(endian + "q", head, 168)[0])
            break
    else:
        return None
    n = int(dim[0])
    if not 1 <= n <= 7:
        return None
    return endian, int(datatype), [max(int(d), 1) for d in dim[1 : n + 1]], int(bitpix), float(vox_offset)


def nifti_data_problem(path: str | Path) -> str | None:
    """A description of truncated or non-finite NIfTI voxel data in ``path``, else ``None``.

    Only single-file NIfTI (``.nii``, ``.nii.gz``) is checked; other files return ``None``.
    """
    p = Path(path)
    name = p.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    gz = name.endswith(".gz")
    try:
        opener = gzip.open if gz else open
        with opener(p, "rb") as f:  # type: ignore[operator]
            head = f.read(540)
        layout = _nifti_layout(head)
        if layout is None:
            return None
        _, datatype, dims, bitpix, vox_offset = layout
        nvox = 1
        for d in dims:
            nvox *= d
        expected = int(vox_offset) + nvox * bitpix // 8
        if gz:
            if _gzip_size(p, expected) < expected:
                return "the file is truncated (fewer voxel bytes than its header declares)"
        elif p.stat().st_size < expected:
            return "the file is truncated (fewer voxel bytes than its header declares)"
    except (OSError, EOFError, zlib.error, struct.error):
        return "the file is truncated or corrupt (cannot decompress it)"
    if datatype in _NIFTI_FLOAT_TYPES:
        return _nifti_nonfinite(p)
    return None


def _gzip_size(p: Path, expected: int) -> int:
    """Uncompressed size of a gzip file: ``expected`` when the trailer's ISIZE (size mod 2³²) agrees
    with it — a truncated file's last bytes match by chance with probability 2⁻³² — else by
    decompressing the whole stream (raises ``EOFError`` for a stream that ends early)."""
    with open(p, "rb") as f:
        f.seek(0, 2)
        total = f.tell()
        if total >= 18:
            f.seek(-4, 2)
            isize = struct.unpack("<I", f.read(4))[0]
        else:
            isize = -1
    if isize == expected % (1 << 32):
        return expected
    size = 0
    with open(p, "rb") as f:
        d = zlib.decompressobj(wbits=47)
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            size += len(d.decompress(chunk))
            while d.eof and d.unused_data:  # concatenated gzip members
                rest = d.unused_data
                d = zlib.decompressobj(wbits=47)
                size += len(d.decompress(rest))
        if not d.eof:
            raise EOFError("gzip stream ends early")
    return size


def _nifti_nonfinite(p: Path) -> str | None:
    try:
        import nibabel as nib
    except ImportError:  # pragma: no cover - nibabel is a dependency
        return None
    import numpy as np

    import logging

    nib_log = logging.getLogger("nibabel.global")  # "pixdim[1,2,3] should be non-zero": header_spacing_problem's job
    level = nib_log.level
    nib_log.setLevel(logging.ERROR)
    try:
        img = nib.load(str(p))
        data = np.asanyarray(img.dataobj.get_unscaled() if hasattr(img.dataobj, "get_unscaled") else img.dataobj)
    except CancelledError:
        raise
    except Exception:  # noqa: BLE001 - nibabel raises many types for broken files
        return "the file is truncated or corrupt (cannot read its voxel data)"
    finally:
        nib_log.setLevel(level)
    if data.dtype.kind in "fc" and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        return f"{bad} voxel(s) are NaN or infinite"
    return None


def written_image_problem(path: str | Path, image: sitk.Image) -> str | None:
    """What is wrong with an image file just written from ``image``, or ``None`` when it is complete.

    ITK's writers can fail without raising (the NIfTI writer only prints ``** ERROR: NWAD ...`` on a
    full disk and leaves a truncated file), so every written image is checked: NIfTI by its header's
    size and the voxel bytes present (:func:`nifti_data_problem`'s size check, no voxel scan); other
    formats by reading the file back (size, components, every voxel decoded).
    """
    p = Path(path)
    name = p.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            gz = name.endswith(".gz")
            with (gzip.open if gz else open)(p, "rb") as f:  # type: ignore[operator]
                head = f.read(540)
            layout = _nifti_layout(head)
            if layout is None:
                return "the file has no complete NIfTI header"
            _, _, dims, bitpix, vox_offset = layout
            nvox = 1
            for d in dims:
                nvox *= d
            expected = int(vox_offset) + nvox * bitpix // 8
            present = _gzip_size(p, expected) if gz else p.stat().st_size
            if present < expected:
                return f"the file is truncated ({present} of {expected} bytes)"
            if nvox != image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel():
                return f"the file holds {nvox} values, expected {image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel()}"
            return None
        back = sitk.ReadImage(str(p))
    except (OSError, EOFError, zlib.error, struct.error):
        return "the file is truncated or corrupt"
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        return f"the file cannot be read back ({lines[-1][:120] if lines else 'unknown reason'})"
    if back.GetSize() != image.GetSize() or back.GetNumberOfComponentsPerPixel() != image.GetNumberOfComponentsPerPixel():
        return f"the file holds a {back.GetSize()} image, expected {image.GetSize()}"
    return None
