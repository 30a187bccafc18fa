"""The whole-brain parcellation label table (``pumit/assets/labels/muse_dlmuse_labels.csv``, issue 12): values
and names against the MUSE dictionary and against the label values that really occur in the DLMUSE maps;
SNOMED CT codes and laterality of the structures the issue names."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[3]
TABLE = REPO / "training" / "pumit" / "assets" / "labels" / "muse_dlmuse_labels.csv"
DICOM_EXTRACT = REPO / "Testing" / "Data" / "terminology" / "SegmentationCategoryType-DICOM-Master-extract.term.json"
RIGHT, LEFT = "SCT^24028007^Right", "SCT^7771000^Left"
GENERAL = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM = "Segmentation category and type - DICOM master list"


def rows() -> list[dict]:
    with open(TABLE, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def ixi(shared_data: Path) -> Path:
    d = shared_data / "ixi_t1_dlmuse"
    if not (d / "meta" / "muse_dict.csv").is_file() or not (d / "dlmuse_seg").is_dir():
        pytest.skip(f"{d} (IXI T1 + DLMUSE) is absent")
    return d


def test_table_shape_classes_and_values() -> None:
    r = rows()
    classes = [int(x["class"]) for x in r]
    values = [int(x["value"]) for x in r]
    assert classes == list(range(len(r))), "classes are the network outputs 0..K-1"
    assert values == sorted(set(values)) and values[0] == 0 and r[0]["name"] == "background"
    assert len(r) == 149 and max(values) <= 255, "148 MUSE ROIs + background, uint8 label maps"
    for x in r[1:]:
        assert all(0 <= int(x[c]) <= 255 for c in "rgb")
        assert x["name"] and x["muse_code"] == f"MUSE_{x['value']}"


def test_names_match_the_muse_dictionary(ixi: Path) -> None:
    with open(ixi / "meta" / "muse_dict.csv", newline="", encoding="utf-8") as f:
        muse = {int(x["Index"]): x["Name"] for x in csv.DictReader(f)}
    unnamed = []
    for x in rows()[1:]:
        v = int(x["value"])
        if v in muse:
            assert x["name"] == muse[v], f"MUSE {v}"
        else:
            unnamed.append(v)
            assert x["name"] == f"MUSE_{v}" and not x["terminology"], "no invented name or code for an unnamed index"
    assert unnamed == [46, 69]  # SOURCE.md: "Indices 46 and 69 occur in the maps but are not named there"
    assert all(v < 300 for v in (int(x["value"]) for x in rows())), "no composite ROI (601 GM, 701 brain, ...)"


def test_values_are_those_occurring_in_the_dlmuse_maps(ixi: Path) -> None:
    occurring: set[int] = set()
    maps = sorted((ixi / "dlmuse_seg").glob("*_DLMUSE.nii.gz"))
    assert len(maps) == 148
    for p in maps:
        occurring.update(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(p)))).tolist())
    assert {int(x["value"]) for x in rows()} == occurring


# (MUSE name without side, SCT code) of the structures issue 12 names
EXPECTED = {
    "Hippocampus": "5366008", "Amygdala": "4958002", "ThalamusProper": "119406000", "Caudate": "11000004",
    "Putamen": "89278009", "Pallidum": "14738005", "LateralVentricle": "66720007", "3rdVentricle": "49841001",
    "4thVentricle": "35918002", "BrainStem": "119238007", "Cerebellum_WM": "33060004",
    "CerebellumExterior": "25991003", "Frontal_WM": "68523003", "Temporal_WM": "68523003",
    "SuperiorFrontalGyrus": "40146001", "PrecentralGyrus": "40146001", "CerebellarVermalLobules_1to5": "113305005",
}


def test_terminology_codes_and_laterality() -> None:
    by_name = {x["name"]: x for x in rows()}
    for base, code in EXPECTED.items():
        sides = [n for n in (base, f"{base}_R", f"{base}_L") if n in by_name]
        assert sides, base
        for n in sides:
            x = by_name[n]
            scheme, value, meaning = x["terminology"].split("^")
            assert (scheme, value) == ("SCT", code) and meaning, n
            assert x["modifier"] == {"_R": RIGHT, "_L": LEFT}.get(n[-2:], ""), n
            assert x["context"] in (GENERAL, DICOM)
    for x in rows()[1:]:
        if x["terminology"]:
            assert re.fullmatch(r"(SCT|DCM)\^\d+\^[^\^]+", x["terminology"]), x
        if x["name"].endswith(("_R", "_L")) and x["terminology"]:
            assert x["modifier"] in (RIGHT, LEFT)
    coded = [x for x in rows()[1:] if x["terminology"]]
    assert len(coded) >= 130  # every cortical region, ventricle, nucleus and white-matter region has one


def test_codes_agree_with_the_slicer_dictionary_extract() -> None:
    """Where the repository's extract of Slicer's DICOM master list has a code, the table uses its meaning."""
    extract = json.loads(DICOM_EXTRACT.read_text())
    types = {t["CodeValue"]: t["CodeMeaning"] for c in extract["SegmentationCodes"]["Category"] for t in c["Type"]}
    used = {x["terminology"].split("^")[1]: x for x in rows() if x["terminology"]}
    shared = set(types) & set(used)
    assert "5366008" in shared
    for code in shared:
        assert used[code]["terminology"].split("^")[2] == types[code]
        assert used[code]["context"] == extract["SegmentationCategoryTypeContextName"]
