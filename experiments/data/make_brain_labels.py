"""The label table of the whole-brain T1 parcellation model (issue 12):
``training/pumit/assets/labels/muse_dlmuse_labels.csv``, one row per output label.

    python experiments/data/make_brain_labels.py ../shared/data/ixi_t1_dlmuse

Rows: every MUSE ROI index that occurs in at least one of the DLMUSE maps of ``dlmuse_seg/`` (0 =
background first), in increasing index order. Columns:

* ``class``: the network's output channel (contiguous ``0..K-1``; what ``pumit train segment`` needs);
* ``value``: the MUSE ROI index (the value written into the output label map, comparable with DLMUSE);
* ``name``: ``meta/muse_dict.csv`` ``Name`` (indices missing there, 46 and 69, are ``MUSE_<index>``,
  never an invented anatomical name); ``muse_code``: its ``Code`` column;
* ``r, g, b``: display colour (0-255): the terminology entry's recommended colour where one is listed
  below, else :func:`pumit.inference.modelinfo.default_color` of the MUSE index;
* ``terminology``: the SNOMED CT (``SCT``) or DICOM (``DCM``) type code ``SCHEME^VALUE^MEANING`` (empty
  where no code is assigned); ``modifier``: the laterality type modifier (``SCT^24028007^Right`` /
  ``SCT^7771000^Left``), as Slicer's terminology dictionaries attach left/right to these types;
  ``context``: the Slicer terminology context listing the type.

Codes: the types and their meanings as in 3D Slicer's "3D Slicer General Anatomy list"
(``SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json``) where that list has them; the others
(hippocampus, third ventricle, brain stem, cerebellum, cerebellar cortex, nucleus accumbens, entorhinal
cortex, inferior horn of the lateral ventricle, ventral diencephalon) from DICOM PS3.16 CID 7153 "CNS
Segmentation Type" / CID 7140 "Brain Structure for Volumetric Measurement", the lists behind Slicer's
"DICOM master list". Cortical gyri carry the cerebral cortex type (Slicer: "Cerebral Grey Matter"), lobar
white matter the cerebral white matter type; the specific region stays in ``name``.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "training" / "pumit" / "assets" / "labels" / "muse_dlmuse_labels.csv"
GENERAL = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM = "Segmentation category and type - DICOM master list"
RIGHT, LEFT = "SCT^24028007^Right", "SCT^7771000^Left"

# (code, context, recommended colour or None)
T = {
    "amygdala": ("SCT^4958002^Amygdala", GENERAL, (98, 153, 112)),
    "caudate": ("SCT^11000004^Caudate nucleus", GENERAL, (30, 111, 85)),
    "pallidum": ("SCT^14738005^Globus pallidus", GENERAL, (48, 129, 126)),
    "putamen": ("SCT^89278009^Putamen", GENERAL, (210, 157, 166)),
    "thalamus": ("SCT^119406000^Thalamus", GENERAL, (122, 101, 38)),
    "lateral_ventricle": ("SCT^66720007^Lateral ventricle", GENERAL, (88, 106, 215)),
    "fourth_ventricle": ("SCT^35918002^Fourth ventricle", GENERAL, (88, 106, 215)),
    "cerebral_wm": ("SCT^68523003^Cerebral White Matter", GENERAL, (250, 250, 225)),
    "cortex": ("SCT^40146001^Cerebral Grey Matter", GENERAL, None),
    "corpus_callosum": ("SCT^88442005^Corpus callosum", GENERAL, (97, 113, 158)),
    "fornix": ("SCT^87463005^Cerebral fornix", GENERAL, (64, 123, 147)),
    "cerebellar_wm": ("SCT^33060004^Cerebellar white matter", GENERAL, (194, 195, 164)),
    "insula": ("SCT^36169008^Insula", GENERAL, (188, 135, 166)),
    "hippocampus": ("SCT^5366008^Hippocampus", DICOM, (212, 188, 102)),
    "third_ventricle": ("SCT^49841001^Third ventricle", DICOM, (88, 106, 215)),
    "brain_stem": ("SCT^119238007^Brain stem", DICOM, None),
    "cerebellum": ("SCT^113305005^Cerebellum", DICOM, None),
    "cerebellar_cortex": ("SCT^25991003^Cerebellar cortex", DICOM, None),
    "accumbens": ("SCT^427667007^Nucleus accumbens", DICOM, None),
    "entorhinal": ("SCT^3937002^Entorhinal cortex", DICOM, None),
    "inf_lat_ventricle": ("SCT^53118009^Inferior horn of lateral ventricle", DICOM, (88, 106, 215)),
    "ventral_dc": ("DCM^110700^Ventral Diencephalon", DICOM, None),
}
# MUSE name (without the _R/_L suffix) -> key of T
BY_NAME = {
    "Amygdala": "amygdala", "Caudate": "caudate", "Pallidum": "pallidum", "Putamen": "putamen",
    "ThalamusProper": "thalamus", "LateralVentricle": "lateral_ventricle", "4thVentricle": "fourth_ventricle",
    "3rdVentricle": "third_ventricle", "Hippocampus": "hippocampus", "BrainStem": "brain_stem",
    "CerebellumExterior": "cerebellar_cortex", "Cerebellum_WM": "cerebellar_wm", "AccumbensArea": "accumbens",
    "InfLatVentricle": "inf_lat_ventricle", "VentralDC": "ventral_dc", "CorpCall": "corpus_callosum",
    "Fornix": "fornix", "EntorhinalArea": "entorhinal", "AnteriorInsula": "insula", "PosteriorInsula": "insula",
    "CerebellarVermalLobules_1to5": "cerebellum", "CerebellarVermalLobules_6to7": "cerebellum",
    "CerebellarVermalLobules_8to10": "cerebellum",
    "Frontal_WM": "cerebral_wm", "Occipital_WM": "cerebral_wm", "Parietal_WM": "cerebral_wm",
    "Temporal_WM": "cerebral_wm",
}
#: MUSE indices of cortical regions (gyri, 100-207) get the cerebral cortex type unless named above.
CORTEX = range(100, 208)
FIELDS = ("class", "value", "name", "muse_code", "r", "g", "b", "terminology", "modifier", "context")


def occurring_values(seg_dir: Path) -> list[int]:
    """Sorted label values (incl. 0) occurring in any ``*_DLMUSE.nii.gz`` of ``seg_dir``."""
    values: set[int] = set()
    for p in sorted(seg_dir.glob("*_DLMUSE.nii.gz")):
        values.update(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(p)))).tolist())
    return sorted(int(v) for v in values)


def row_for(value: int, name: str, code: str) -> dict:
    """One table row (without ``class``) for MUSE index ``value``."""
    from pumit.inference.modelinfo import default_color

    base, side = name, ""
    if name.endswith(("_R", "_L")):
        base, side = name[:-2], name[-1]
    key = BY_NAME.get(base) or ("cortex" if value in CORTEX else None)
    term, context, color = T[key] if key else ("", "", None)
    rgb = color or default_color(value)
    modifier = {"R": RIGHT, "L": LEFT}.get(side, "") if term else ""
    return {"value": value, "name": name, "muse_code": code, "r": rgb[0], "g": rgb[1], "b": rgb[2],
            "terminology": term, "modifier": modifier, "context": context}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="../shared/data/ixi_t1_dlmuse")
    ap.add_argument("-o", "--output", default=str(OUT))
    a = ap.parse_args(argv)
    src = Path(a.source)
    with open(src / "meta" / "muse_dict.csv", newline="", encoding="utf-8") as f:
        muse = {int(r["Index"]): (r["Name"], r["Code"]) for r in csv.DictReader(f)}
    values = occurring_values(src / "dlmuse_seg")
    rows = []
    for cls, v in enumerate(values):
        if v == 0:
            rows.append({"value": 0, "name": "background", "muse_code": "", "r": 0, "g": 0, "b": 0,
                         "terminology": "", "modifier": "", "context": ""})
        else:
            name, code = muse.get(v, (f"MUSE_{v}", f"MUSE_{v}"))
            rows.append(row_for(v, name, code))
        rows[-1]["class"] = cls
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    coded = sum(1 for r in rows if r["terminology"])
    print(f"{len(rows)} labels ({len(rows) - 1} foreground, {coded} with a terminology code) -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
