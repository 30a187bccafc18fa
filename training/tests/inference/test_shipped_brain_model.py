"""The shipped whole-brain parcellation model (issue 12 item 6) on real IXI T1 heads.

* it reproduces DLMUSE on a real subject it was trained on (a broken export, wrong label mapping or wrong
  orientation fails this), and on the shipped held-out demo head it clearly beats a trivial parcellation;
* its label values and names are those of the MUSE dictionary and the shipped label table;
* a T1 stored in LPS voxel order and an oblique copy give the same labels at the same places in world space,
  on exactly the input's grid.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pumit.cli.demo import assets_dir, find_builtin_model
from pumit.inference import InferenceSettings, load_model, segment_image
from pumit.metrics import dice_scores

REPO = Path(__file__).resolve().parents[3]
IXI = REPO.parent / "shared" / "data" / "ixi_t1_dlmuse"
DEMO = assets_dir() / "demo"
HEAD, HEAD_DLMUSE = DEMO / "ixi052_t1_2mm.nii.gz", DEMO / "ixi052_t1_2mm_dlmuse.nii.gz"
TABLE = REPO / "training" / "pumit" / "assets" / "labels" / "muse_dlmuse_labels.csv"
CPU = InferenceSettings(device="cpu")
#: mean Dice over the ROIs against DLMUSE on a training subject that the shipped model must reach: issue 12's
#: 0.75. v0.5.0 scores 0.783 on IXI012-HH-1211 (v0.4.0 0.776, v0.3.0 0.762, v0.2.0 0.727, v0.1.0 0.630, a trivial parcellation 0.001; a broken
#: export, label mapping or orientation near 0).
HELD_IN_FLOOR = 0.75


@pytest.fixture(scope="module")
def brain():
    return load_model(find_builtin_model("pumit-ref-brain-parcellation"), "segment")


@pytest.fixture(scope="module")
def demo_result(brain):
    return segment_image(sitk.ReadImage(str(HEAD)), brain, settings=CPU)


def mean_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return dice_scores(pred, truth, {int(v): str(v) for v in np.unique(truth) if v})["mean"]


def training_subjects() -> list[str]:
    return (REPO / "experiments" / "data" / "brain_train_100.txt").read_text().split()


@pytest.mark.skipif(not IXI.is_dir(), reason=f"IXI T1 + DLMUSE data not found at {IXI} (../shared/data)")
def test_reproduces_dlmuse_on_a_subject_it_was_trained_on(brain):
    subject = training_subjects()[0]
    assert subject not in (REPO / "experiments" / "data" / "brain_val.txt").read_text().split()
    image = sitk.ReadImage(str(IXI / "t1" / f"{subject}_T1.nii.gz"))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(IXI / "dlmuse_seg" / f"{subject}_T1_DLMUSE.nii.gz")))
    res = segment_image(image, brain, settings=CPU)
    pred = sitk.GetArrayFromImage(res.labels)
    assert pred.shape == truth.shape
    d = mean_dice(pred, truth)
    assert d >= HELD_IN_FLOOR, f"mean Dice vs DLMUSE on held-in {subject}: {d:.3f} < {HELD_IN_FLOOR}"


def test_beats_a_trivial_parcellation_on_the_held_out_demo_head(demo_result):
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(HEAD_DLMUSE)))
    pred = sitk.GetArrayFromImage(demo_result.labels)
    ours = mean_dice(pred, truth)
    # trivial: every brain voxel called the most frequent ROI (what a model without anatomy would score)
    values, counts = np.unique(truth[truth > 0], return_counts=True)
    trivial = mean_dice(np.where(truth > 0, values[np.argmax(counts)], 0), truth)
    assert ours > 100 * trivial and ours > 0.5, (ours, trivial)  # v0.2.0: 0.73 (v0.1.0 0.6), trivial 0.001
    # the brain, as a whole, is where DLMUSE puts it
    assert mean_dice((pred > 0).astype(np.uint8), (truth > 0).astype(np.uint8)) > 0.85


def test_label_values_and_names_are_the_muse_dictionary(brain, demo_result):
    with open(TABLE, newline="") as f:
        table = {int(r["value"]): r["name"] for r in csv.DictReader(f) if int(r["value"])}
    labels = {li.value: li.name for li in brain.labels if li.value}
    assert labels == table and len(labels) == 148
    muse_dict = IXI / "meta" / "muse_dict.csv"
    if muse_dict.is_file():  # the names come from the dictionary, except the two indices it does not name
        with open(muse_dict, newline="") as f:
            names = {int(r["Index"]): r["Name"] for r in csv.DictReader(f)}
        assert {v: n for v, n in labels.items() if v in names} == {v: names[v] for v in labels if v in names}
        assert {v for v in labels if v not in names} == {46, 69}
    written = set(np.unique(sitk.GetArrayFromImage(demo_result.labels)).tolist())
    assert written - {0} and written - {0} <= set(table), "the label map holds MUSE indices, not network classes"
    side = {li["value"]: li for li in demo_result.sidecar()["labels"]}
    assert side[48]["name"] == "Hippocampus_L" and side[48]["terminology"].startswith("SCT^5366008^")  # MUSE 48
    assert side[48]["terminology_modifier"] == "SCT^7771000^Left", "laterality travels to Slicer in the sidecar"


def test_lps_and_oblique_copies_give_the_same_labels_in_world_space(tmp_path, brain, demo_result):
    head = sitk.ReadImage(str(HEAD))
    lps = sitk.DICOMOrient(head, "LPS")  # the same voxels in another stored order
    res_lps = segment_image(lps, brain, settings=CPU)
    back = sitk.Resample(res_lps.labels, head, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(demo_result.labels))
    # oblique: the same voxel array turned 12 degrees about the superior axis, about the volume centre
    oblique = sitk.Image(head)
    centre = np.asarray(head.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in head.GetSize()]))
    a = np.deg2rad(12.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    oblique.SetDirection((rot @ np.asarray(head.GetDirection()).reshape(3, 3)).ravel().tolist())
    oblique.SetOrigin((centre + rot @ (np.asarray(head.GetOrigin()) - centre)).tolist())
    res_obl = segment_image(oblique, brain, settings=CPU)
    assert res_obl.labels.GetDirection() == pytest.approx(oblique.GetDirection())
    assert res_obl.labels.GetOrigin() == pytest.approx(oblique.GetOrigin())
    # each voxel keeps its anatomy, so it keeps its label (the model reads the voxels in the same canonical order)
    agree = np.mean(sitk.GetArrayFromImage(res_obl.labels) == sitk.GetArrayFromImage(demo_result.labels))
    assert agree > 0.99, agree


def test_model_card_states_use_data_licence_and_metrics():
    folder = find_builtin_model("pumit-ref-brain-parcellation")
    card = (folder / "MODEL_CARD.md").read_text()
    for needle in ("Research only", "Not a medical device", "IXI", "DLMUSE", "CC BY-SA 3.0", "PART B", "Dice"):
        assert needle in card, needle
    meta = json.loads((folder / "config.json").read_text())["meta"]
    assert meta["input"]["modality"] == "MRI" and meta["input"]["dimensionality"] == "3d"
    assert "research only" in meta["intended_use"]
