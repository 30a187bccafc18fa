"""Issue 15 item 1: the model sees one canonical anatomical orientation, whatever the stored voxel order.

Real files: the shipped hippocampus model and demo case (MSD Task04, RAS-stored NIfTI), re-stored by
SimpleITK in all 48 axis orders/flips (``PermuteAxes`` + ``Flip`` keep every voxel at its place in world
space), and a TPTBox MRI (anisotropic) for the layout alone.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pumit.imageio import CANONICAL_ORIENTATION, from_model_layout, read_image, to_model_layout
from pumit.inference import segment_image
from pumit.inference.modelinfo import load_model, parse_input_requirements

from inference_helpers import MRI, REPO

DEMO = REPO / "training" / "pumit" / "assets" / "demo"
HIPPO = DEMO / "hippocampus_004.nii.gz"
HIPPO_LABEL = DEMO / "hippocampus_004_label.nii.gz"
HIPPO_MODEL = "pumit-ref-hippocampus-seg-v0.1.0"


def all_orientations(image: sitk.Image):
    """The 48 axis orders and flips of ``image``, each identical to it in world space."""
    for order in itertools.permutations(range(3)):
        permuted = sitk.PermuteAxes(image, list(order))
        for flips in itertools.product((False, True), repeat=3):
            yield order, flips, sitk.Flip(permuted, list(flips), flipAboutOrigin=False)


def to_reference_grid(image: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """``image`` (same world-space grid as ``reference``, another voxel order) as ``reference``'s array."""
    return sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def dice(a: np.ndarray, b: np.ndarray, k: int) -> float:
    a, b = a == k, b == k
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def test_ras_stored_hippocampus_keeps_the_layout_the_shipped_model_was_trained_on():
    image = read_image(HIPPO)
    arr, layout = to_model_layout(image)
    assert layout.perm == (0, 1, 2) and layout.flip == (False, False, False)
    np.testing.assert_array_equal(arr[0], sitk.GetArrayFromImage(image).astype(np.float32))
    assert layout.orientation == CANONICAL_ORIENTATION


def test_models_without_an_orientation_field_are_canonical_and_voxel_is_honoured():
    assert parse_input_requirements({}, 1).orientation == CANONICAL_ORIENTATION
    assert parse_input_requirements({"input": {"orientation": "voxel"}}, 1).orientation == "voxel"
    from pumit.errors import ModelError
    with pytest.raises(ModelError, match="orientation"):
        parse_input_requirements({"input": {"orientation": "LPI"}}, 1)


@pytest.mark.parametrize("shrink", [(1, 1, 1), (3, 1, 1), (1, 1, 3)], ids=["isotropic", "thick-x", "thick-z"])
def test_all_48_orders_of_an_mri_give_one_model_tensor_and_round_trip(shrink):
    image = sitk.Shrink(read_image(MRI), list(shrink))  # thick slices along one stored axis, same world space
    ref, ref_layout = to_model_layout(image)
    thick = max(image.GetSpacing())
    assert ref_layout.spacing[0] == thick  # the thick axis (if any) is the depth axis, wherever it is stored
    seen = 0
    for _, _, im in all_orientations(image):
        arr, layout = to_model_layout(im)
        np.testing.assert_array_equal(arr, ref)
        assert layout.spacing == ref_layout.spacing
        back = from_model_layout(arr[0], layout, im)  # the input's exact grid on output
        assert back.GetSize() == im.GetSize() and back.GetDirection() == im.GetDirection()
        assert back.GetOrigin() == im.GetOrigin()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(im).astype(np.float32))
        seen += 1
    assert seen == 48


def test_voxel_orientation_keeps_the_stored_order():
    image = sitk.Flip(read_image(HIPPO), [True, True, False], flipAboutOrigin=False)  # LPS-stored
    arr, layout = to_model_layout(image, orientation="voxel")
    assert layout.flip == (False, False, False)
    np.testing.assert_array_equal(arr[0], sitk.GetArrayFromImage(image).astype(np.float32))


def test_shipped_hippocampus_model_gives_the_same_labels_in_world_space_for_all_48_orders():
    model = load_model(HIPPO_MODEL, "segment")
    image = read_image(HIPPO)
    truth = sitk.GetArrayFromImage(read_image(HIPPO_LABEL))
    # a crop around the hippocampus keeps the 48 runs fast (world geometry is kept by the crop)
    crop = sitk.RegionOfInterest(image, [32, 48, 32], [2, 2, 3])
    crop_truth = sitk.GetArrayFromImage(sitk.RegionOfInterest(read_image(HIPPO_LABEL), [32, 48, 32], [2, 2, 3]))
    assert (crop_truth > 0).sum() == (truth > 0).sum()
    reference = sitk.GetArrayFromImage(segment_image(crop, model).labels)
    assert dice(reference, crop_truth, 1) > 0.8 and dice(reference, crop_truth, 2) > 0.8
    for order, flips, im in all_orientations(crop):
        labels = segment_image(im, model).labels
        assert labels.GetDirection() == im.GetDirection() and labels.GetOrigin() == im.GetOrigin()
        np.testing.assert_array_equal(to_reference_grid(labels, crop), reference, err_msg=f"order {order} flips {flips}")


def test_lps_stored_full_case_keeps_the_expert_dice(tmp_path: Path):
    """The issue's case: the demo scan saved in LPS voxel order (a real NIfTI file) segments as well as RAS."""
    model = load_model(HIPPO_MODEL, "segment")
    image = read_image(HIPPO)
    lps_file = tmp_path / "hippocampus_004_lps.nii.gz"
    sitk.WriteImage(sitk.Flip(image, [True, True, False], flipAboutOrigin=False), str(lps_file))
    lps = read_image(lps_file)
    assert lps.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    truth = sitk.GetArrayFromImage(read_image(HIPPO_LABEL))
    ras_labels = sitk.GetArrayFromImage(segment_image(image, model).labels)
    lps_labels = to_reference_grid(segment_image(lps, model).labels, image)
    np.testing.assert_array_equal(lps_labels, ras_labels)
    assert dice(lps_labels, truth, 1) > 0.85 and dice(lps_labels, truth, 2) > 0.8
