"""One spacing per batch: same (clipped) degree of anisotropy required, 2D pixel sizes may differ."""

import pytest
import torch
from pumit.data.manifest import ProcessedRecord
from pumit.errors import InputError
from pumit.spacing import PLANAR_THICKNESS
from pumit.training.common import batch_spacing
from pumit.training.datamodules import dataset_labels


def test_2d_images_of_different_pixel_sizes_share_a_batch():
    s = batch_spacing(torch.tensor([[PLANAR_THICKNESS, 0.2, 0.2], [PLANAR_THICKNESS, 0.5, 0.5], [PLANAR_THICKNESS, 0.14, 0.14]], dtype=torch.float64))
    assert s == (PLANAR_THICKNESS, 0.2, 0.2)


def test_mixed_anisotropy_is_refused():
    with pytest.raises(InputError, match="mixes degrees of anisotropy"):
        batch_spacing(torch.tensor([[1.0, 1.0, 1.0], [4.0, 1.0, 1.0]]))


def _record(names):
    return ProcessedRecord(id="a", image="a.npy", modality="mri", spacing=(1.0, 1.0, 1.0), shape=(1, 4, 4, 4), planar=False,
                           da=0, split="train", dataset="d", intensity={}, stats={}, label="l.npy", label_values=[0, 1, 2],
                           label_names=names)


def test_label_names_come_from_the_manifest(tmp_path):
    names = {"0": "background", "1": "Anterior", "2": "Posterior"}
    assert dataset_labels(tmp_path / "manifest.jsonl", [_record(names), _record(names)]) == names
    assert dataset_labels(tmp_path / "manifest.jsonl", [_record(None)]) == {"0": "background", "1": "label_1", "2": "label_2"}


def test_several_modalities_record_one_normalization_each():
    from pumit.training.datamodules import common_intensity, intensity_by_modality

    ct = {"scheme": "ct", "window": [-175.0, 250.0], "percentiles": [0.5, 99.5], "clip": 5.0}
    mri = {"scheme": "zscore", "window": [-175.0, 250.0], "percentiles": [0.5, 99.5], "clip": 5.0}
    recs = [_record(None), _record(None), _record(None)]
    recs[0].modality, recs[0].intensity = "ct", ct
    recs[1].modality, recs[1].intensity = "mri", mri
    recs[2].modality, recs[2].intensity = "mri", mri
    assert intensity_by_modality(recs) == {"ct": ct, "mri": mri}
    assert common_intensity(recs)["scheme"] == "percentile"  # modality-agnostic default, never the first item's
    assert intensity_by_modality(recs[1:]) == {} and common_intensity(recs[1:])["scheme"] == "zscore"
