"""Write experiments/data/pretrain_sources.jsonl: every real image reachable offline on this machine.

Run from the repository root with the project's virtual environment:
    .venv/bin/python experiments/data/make_pretrain_list.py

Only *real* acquisitions are listed (synthetic test patterns, label maps, re-encodings of the same pixels
and deliberately broken files are left out). Paths are written relative to this folder so the list works
in any checkout that has ../shared next to the repository and the .venv of `make install`.
Hippocampus and AdrenalMNIST3D are added by the pipeline itself (see run_all.sh) and filtered to their
training splits by filter_pretrain_index.py.
"""
from __future__ import annotations

import json
import os
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE = Path(sysconfig.get_paths()["purelib"])
ITK = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")
REPO = HERE.parent.parent

ITEMS: list[tuple[Path, str, str]] = [  # (path, modality, dataset)
    # tptbox (Apache-2.0): spine CT 1.5 mm and T2w MRI (label maps *_msk are not listed)
    (REPO / "Testing/Data/tptbox/sub-ct_label-22_ct.nii.gz", "ct", "tptbox"),
    (REPO / "Testing/Data/tptbox/sub-mri_label-6_T2w.nii.gz", "mri", "tptbox"),
    # pydicom test files (MIT): real acquisitions only, one encoding of each
    (SITE / "pydicom/data/test_files/CT_small.dcm", "ct", "pydicom"),
    (SITE / "pydicom/data/test_files/MR_small.dcm", "mri", "pydicom"),
    (SITE / "pydicom/data/test_files/examples_overlay.dcm", "mri", "pydicom"),
    (SITE / "pydicom/data/test_files/examples_rgb_color.dcm", "us", "pydicom"),
    (SITE / "pydicom/data/test_files/examples_palette.dcm", "us", "pydicom"),
    (SITE / "pydicom/data/test_files/JPEG2000.dcm", "other", "pydicom"),  # NM whole body
    # pydicom-data (MIT): real acquisitions, uncompressed encodings
    (SITE / "data_store/data/693_UNCI.dcm", "ct", "pydicom-data"),
    (SITE / "data_store/data/MR2_UNCI.dcm", "mri", "pydicom-data"),
    (SITE / "data_store/data/emri_small.dcm", "mri", "pydicom-data"),
    (SITE / "data_store/data/RG1_UNCI.dcm", "xray", "pydicom-data"),
    (SITE / "data_store/data/RG3_UNCI.dcm", "xray", "pydicom-data"),
    (SITE / "data_store/data/US1_UNCI.dcm", "us", "pydicom-data"),
    (SITE / "data_store/data/OBXXXX1A.dcm", "us", "pydicom-data"),
    (SITE / "data_store/data/gdcm-US-ALOKA-16.dcm", "us", "pydicom-data"),
    (SITE / "data_store/data/JPGLosslessP14SV1_1s_1f_8b.dcm", "us", "pydicom-data"),
    (SITE / "data_store/data/color-px.dcm", "us", "pydicom-data"),
    # nibabel test data (MIT): real MRI (standard.nii.gz is synthetic: left out)
    (SITE / "nibabel/tests/data/anatomical.nii", "mri", "nibabel"),
    (SITE / "nibabel/tests/data/functional.nii", "mri", "nibabel"),
    (SITE / "nibabel/tests/data/example4d.nii.gz", "mri", "nibabel"),
    # Debian insighttoolkit5-examples (Apache-2.0): real MRI / CT / photos (synthetic shapes left out)
    (ITK / "KmeansTest_T1UCharRaw.nii.gz", "mri", "itk-examples"),
    (ITK / "BrainProtonDensity3Slices.mha", "mri", "itk-examples"),
    (ITK / "BrainT1Slice.png", "mri", "itk-examples"),
    (ITK / "BrainProtonDensitySlice.png", "mri", "itk-examples"),
    (ITK / "BrainMidSagittalSlice.png", "mri", "itk-examples"),
    (ITK / "FatMRISlice.png", "mri", "itk-examples"),
    (ITK / "RatLungSlice1.mha", "other", "itk-examples"),
    (ITK / "RatLungSlice2.mha", "other", "itk-examples"),
    (ITK / "VisibleWomanEyeSlice.png", "photo", "itk-examples"),
    (ITK / "VisibleWomanHeadSlice.png", "photo", "itk-examples"),
]


def main() -> None:
    out = HERE / "pretrain_sources.jsonl"
    rows = []
    for path, modality, dataset in ITEMS:
        if not path.exists():
            print(f"missing (skipped): {path}")
            continue
        rows.append({"image": os.path.relpath(path, HERE), "modality": modality, "dataset": dataset, "split": "train"})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} images -> {out}")


if __name__ == "__main__":
    main()
