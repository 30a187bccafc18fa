"""The shipped demo images as Slicer SampleData, so a first-time user can try a model with one click.

The images are the real ones ``pumit demo`` uses (``pumit/assets/demo/`` inside the extension's bundled
``pumit`` copy; provenance and licenses in its ``LICENSE.md``). They are registered with local
``file://`` URIs and their SHA-256, so SampleData copies them into its cache without any download.
To add a case, add one line to :data:`SAMPLES` (file in ``pumit/assets/demo/``, listed in ``SHA256SUMS``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CATEGORY = "PUMIT"
THUMBNAILS = Path(__file__).resolve().parent.parent / "Resources" / "Icons" / "SampleData"


@dataclass(frozen=True)
class Sample:
    """One SampleData entry: ``fileName`` in the demo folder, shown as ``name``, loaded as node ``nodeName``."""

    name: str
    fileName: str
    nodeName: str
    modality: str
    suggestedModel: str  # the shipped model to try on it ("" none)


#: Demo cases, one line each.
SAMPLES: tuple[Sample, ...] = (
    Sample("Hippocampus T1 MRI (MSD)", "hippocampus_004.nii.gz", "hippocampus_004", "MRI", "pumit-ref-hippocampus-seg"),
    Sample("Spine CT (tptbox)", "spine_ct.nii.gz", "spine_ct", "CT", "pumit-ref-tokenizer"),
    Sample("Spine T2w MRI (tptbox)", "spine_t2w_mri.nii.gz", "spine_t2w_mri", "MRI", "pumit-ref-tokenizer"),
    Sample("Whole-head T1 MRI, 2 mm (IXI)", "ixi052_t1_2mm.nii.gz", "ixi052_t1_2mm", "MRI", "pumit-ref-brain-parcellation"),
)


def demoDir(packageDir: Path | None = None) -> Path | None:
    """``pumit/assets/demo`` of the bundled package (see :func:`PUMITSlicerLib.logic.bundledPackageDir`)."""
    if packageDir is None:
        from PUMITSlicerLib.logic import bundledPackageDir

        packageDir = bundledPackageDir()
    folder = Path(packageDir) / "pumit" / "assets" / "demo" if packageDir is not None else None
    return folder if folder is not None and folder.is_dir() else None


def checksums(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` from the demo folder's ``SHA256SUMS`` (``sha256sum`` format)."""
    sums = {}
    for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def sampleDataSources(packageDir: Path | None = None) -> list[dict]:
    """Keyword arguments of ``SampleData.SampleDataLogic.registerCustomSampleDataSource`` for every
    sample whose file is present (none when the demo folder is missing)."""
    folder = demoDir(packageDir)
    if folder is None:
        return []
    sums = checksums(folder)
    sources = []
    for sample in SAMPLES:
        path = folder / sample.fileName
        if not path.is_file() or sample.fileName not in sums:
            logger.warning("Demo image %s is missing or has no checksum; not registered", path)
            continue
        thumbnail = THUMBNAILS / f"{sample.nodeName}.png"
        sources.append({
            "category": CATEGORY,
            "sampleName": sample.name,
            "uris": path.as_uri(),
            "fileNames": sample.fileName,
            "nodeNames": sample.nodeName,
            "checksums": f"SHA256:{sums[sample.fileName]}",
            "thumbnailFileName": str(thumbnail) if thumbnail.is_file() else None,
            "loadFileType": "VolumeFile",
        })
    return sources


def registerSampleData() -> int:
    """Register the demo images with Slicer's SampleData module; returns how many (0 without SampleData)."""
    try:
        import SampleData
    except ImportError:
        return 0
    sources = sampleDataSources()
    for kwargs in sources:
        SampleData.SampleDataLogic.registerCustomSampleDataSource(**kwargs)
    return len(sources)
