"""End to end with the real ``pumit`` CLI: small untrained models made here with ``pumit.models``,
a private model store (``PUMIT_HOME``), real tptbox volumes, CPU only.

The models are random, so the tests check what the extension owns: geometry, names/colors, the
scene, progress, cancel and the model store, not segmentation quality.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from pumitslicer_testing import (
    PUMIT_CLI,
    alive,
    cliMissing,
    ijkToRAS,
    rasCentroid,
    rotation,
    twoAnnotatedCases,
)
from PUMITSlicerLib import TaskState

pytestmark = pytest.mark.skipif(bool(cliMissing()), reason=cliMissing() or "pumit CLI available")

LABELS = {"0": "background", "1": "vertebral body", "2": "posterior elements"}
COLORS = {"1": [241, 214, 145], "2": [216, 101, 79]}


def tinySegmenter(folder, *, depth: int, **inputMeta):
    """Save a random 3-class CT segmenter (tiny ViT + decoder) named after ``folder``; ``inputMeta`` extends
    its ``meta.input``. Returns the model folder."""
    from pumit.models import build_model, save_pretrained
    from pumit.models.segmentation import SegmenterConfig
    from pumit.models.vit import ViTConfig

    config = SegmenterConfig(vit=ViTConfig(patch_size=8, embed_dim=32, depth=depth, num_heads=2, abs_pos_grid=None),
                             num_classes=3, adapter_channels=(8, 8, 8, 8), stem_channels=(8,))
    return save_pretrained(build_model("segmentation", config.to_dict()), folder, meta={
        "name": folder.name, "version": "1.0.0", "labels": LABELS, "colors": COLORS,
        "input": {"modality": "CT", "roi": [48, 48, 48], **inputMeta}})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny segmentation model (3 classes) and a tiny tokenizer, as model folders."""
    torch = pytest.importorskip("torch")
    from pumit.models import build_model, save_pretrained
    from pumit.models.tokenizer import TokenizerConfig

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    segmenter = tinySegmenter(root / "tiny-seg", depth=4)
    tokenizer = save_pretrained(build_model("tokenizer", TokenizerConfig.preset("tiny", num_blocks=1).to_dict()),
                                root / "tiny-tok", meta={"name": "tiny-tok", "version": "1.0.0",
                                                         "input": {"modality": "CT", "roi": [48, 48, 48]}})
    return {"segmentation": str(segmenter), "tokenizer": str(tokenizer)}


@pytest.fixture
def cli(logic):
    logic.pumitCommand = list(PUMIT_CLI)
    return logic


def finished(task, timeout: float = 300):
    assert task.wait(timeout=timeout) == TaskState.SUCCEEDED, task.errorMessage
    return task.result


def labelArray(segmentation, volume) -> np.ndarray:
    """The segmentation as a label array on ``volume``'s grid, by segment name."""
    s = segmentation.GetSegmentation()
    out = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
    for i in range(s.GetNumberOfSegments()):
        value = {v: int(k) for k, v in LABELS.items()}[s.GetNthSegment(i).GetName()]
        out[slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, s.GetNthSegmentID(i), volume) > 0] = value
    return out


def test_segment_real_ct_and_its_rotated_copy(session, cli, models, ctVolume):
    import PUMITSlicer

    R = rotation(30, (0.3, 1, 0.2))
    R[:3, 3] = [15, -20, 8]
    oblique = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(ctVolume).copy(), ijkToRAS=R @ ijkToRAS(ctVolume), name="oblique")
    other = PUMITSlicer.PUMITSlicerLogic()  # a second logic: both runs at once, to save time
    other.pumitCommand = cli.pumitCommand
    events = []
    task = cli.startSegmentation(ctVolume, models["segmentation"], device="CPU", overlap=0.25)
    task.progressCallbacks.append(events.append)
    rotatedTask = other.startSegmentation(oblique, models["segmentation"], device="CPU", overlap=0.25)
    straight, rotated = finished(task), finished(rotatedTask)
    assert events[-1].fraction == 1.0 and any(e.stage == "inference" for e in events)
    from PUMITSlicerLib.results import deviceFromMessages, runSummary

    assert deviceFromMessages(task.progressMessages) == "cpu", "the device pumit reports is found in its messages"
    assert runSummary(task.name, task.elapsedSeconds, "cpu").endswith(" s on CPU.")

    segments = straight.GetSegmentation()
    names = {segments.GetNthSegment(i).GetName(): segments.GetNthSegment(i).GetColor() for i in range(segments.GetNumberOfSegments())}
    assert set(names) <= {"vertebral body", "posterior elements"} and names
    for name, color in names.items():
        value = next(k for k, v in LABELS.items() if v == name)
        assert np.allclose(color, np.array(COLORS[value]) / 255)
    assert straight.GetAttribute("PUMIT.ModelId")

    a, b = labelArray(straight, ctVolume), labelArray(rotated, oblique)
    assert 0 < np.count_nonzero(a) < a.size, "a non-trivial result"
    assert np.array_equal(a, b), "the same voxels get the same labels whatever the orientation"
    for value in np.unique(a[a > 0]):
        c0, c1 = rasCentroid(a == value, ijkToRAS(ctVolume)), rasCentroid(b == value, ijkToRAS(oblique))
        assert np.allclose(R[:3, :3] @ c0 + R[:3, 3], c1, atol=1e-3), "the segment moved with the anatomy"


def test_cancel_real_segmentation_mid_run(session, cli, models, ctVolume):
    params = cli.getParameterNode()
    params.inputVolume, params.modelId, params.device = ctVolume, models["segmentation"], "CPU"
    ids = session.nodeIds()
    task = cli.segment(params)
    events = []
    task.progressCallbacks.append(events.append)
    while task.poll() and not any(e.stage == "inference" for e in events):
        pass
    assert task.running, "cancel while the model runs"
    task.cancel()
    assert task.wait(timeout=60) == TaskState.CANCELLED
    assert session.nodeIds() == ids and params.outputSegmentation is None
    assert not alive(task.process.pid) and not task.workDir.exists()


def test_reconstruction_real_cli(session, cli, models, ctVolume):
    oblique = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(ctVolume).copy(),
                                             ijkToRAS=rotation(-20, (1, 0, 0)) @ ijkToRAS(ctVolume), name="obl")
    task = cli.startReconstruction(oblique, models["tokenizer"], device="CPU")
    reconstruction, error = finished(task)
    for node in (reconstruction, error):
        assert np.allclose(ijkToRAS(node), ijkToRAS(oblique))
        assert node.GetImageData().GetDimensions() == oblique.GetImageData().GetDimensions()
    original = slicer.util.arrayFromVolume(oblique).astype(np.float32)
    assert np.allclose(slicer.util.arrayFromVolume(error), np.abs(original - slicer.util.arrayFromVolume(reconstruction)), atol=1e-2)
    metrics = task.details["metrics"]  # the sidecar's "metrics" when this pumit writes them (issue 10)
    if metrics:
        from PUMITSlicerLib.results import formatReconstructionMetrics

        recon = slicer.util.arrayFromVolume(reconstruction).astype(np.float64)
        assert metrics["pearson"] == pytest.approx(np.corrcoef(original.ravel(), recon.ravel())[0, 1], abs=2e-3)
        assert "over a constant image" in formatReconstructionMetrics(metrics)


def test_fine_tune_two_annotated_volumes_registers_a_new_version(session, cli, models):
    """Pairs added one by one as the Add pair button does (through Slicer's ObservedList semantics), and
    pumit run as in Slicer's Python, where TensorBoard is not installed (``without_tensorboard.py``)."""
    import sys

    from pumitslicer_testing import HERE
    from PUMITSlicerLib.pairs import addPair

    if PUMIT_CLI[1:3] == ["-m", "pumit.cli.main"]:
        cli.pumitCommand = [sys.executable, str(HERE / "without_tensorboard.py")]
    cases = twoAnnotatedCases(session)
    params = cli.getParameterNode()
    for volume, segmentation in cases:
        addPair(params, volume, segmentation)
    params.modelId, params.fineTuneName, params.fineTuneEpochs, params.device = models["segmentation"], "e2e-spine", 1, "CPU"
    ids = session.nodeIds()
    task = cli.fineTune(params)
    events = []
    task.progressCallbacks.append(events.append)
    modelId = finished(task, timeout=600)
    assert modelId.startswith("e2e-spine-v") and params.modelId == modelId, "the new version is selected"
    assert any(e.data.get("dice") is not None for e in events), "validation Dice is reported"
    assert session.nodeIds() == ids
    store = cli.listModels("segmentation")
    assert modelId in [m["id"] for m in store]
    entry = next(m for m in store if m["id"] == modelId)
    assert set(entry["labels"].values()) >= {"vertebral body", "posterior elements"}


def test_real_cli_failing_leaves_scene_unchanged(session, cli, ctVolume):
    """The real pumit refuses an unknown model (exit code 3): one clear message, nothing added."""
    ids = session.nodeIds()
    task = cli.startSegmentation(ctVolume, "no-such-model-v9.9.9")
    assert task.wait(timeout=300) == TaskState.FAILED
    assert "no-such-model-v9.9.9" in task.errorMessage and "(exit code 3)" in task.errorMessage
    assert session.nodeIds() == ids and not task.workDir.exists()


def test_real_cli_killed_mid_run_leaves_scene_unchanged(session, cli, models, ctVolume):
    """The real pumit process dies (SIGKILL from outside, e.g. the out-of-memory killer) while the model runs."""
    import os
    import signal

    ids = session.nodeIds()
    task = cli.startSegmentation(ctVolume, models["segmentation"], device="CPU")
    events = []
    task.progressCallbacks.append(events.append)
    while task.poll() and not any(e.stage == "inference" for e in events):
        pass
    assert task.running, "kill while the model runs"
    os.kill(task.process.pid, signal.SIGKILL)
    assert task.wait(timeout=60) == TaskState.FAILED
    assert "(exit code -9)" in task.errorMessage
    assert session.nodeIds() == ids and not task.workDir.exists()


def test_reconstruction_uses_the_selected_modality(session, cli, ctVolume):
    """The exported NRRD cannot say its modality: the module passes it, so the shipped multi-modality
    tokenizer normalizes an MRI as MRI was normalized in training (z-score), not as CT (HU window).
    (pumit itself now guesses MRI for a file without a modality and no Hounsfield values, so 'other',
    which sends no --modality, is not compared here.)"""
    from pumitslicer_testing import DATA

    mri = session.loadVolume(DATA / "sub-mri_label-6_T2w.nii.gz", "mri")
    as_mri, _ = finished(cli.startReconstruction(mri, "pumit-ref-tokenizer", device="CPU", errorMap=False, modality="MRI"))
    as_ct, _ = finished(cli.startReconstruction(mri, "pumit-ref-tokenizer", device="CPU", errorMap=False, modality="CT"))
    a, b = slicer.util.arrayFromVolume(as_mri), slicer.util.arrayFromVolume(as_ct)
    assert a.shape == b.shape == slicer.util.arrayFromVolume(mri).shape
    assert not np.allclose(a, b)


def test_import_published_checkpoint_from_the_module(cli, tmp_path):
    """The model section's "Import PUMIT .ckpt..." runs the real `pumit models import-pumit`: a published-layout
    Lightning checkpoint is installed and listed; a pickle that would run code is refused, and runs nothing."""
    torch = pytest.importorskip("torch")
    import lightning
    from PUMITSlicerLib import PUMITSlicerError
    from pumit.models.published import published_vit_config, vit_state_to_published
    from pumit.models.vit import SpadViTMIM

    torch.manual_seed(0)
    state = vit_state_to_published(SpadViTMIM(published_vit_config(
        embed_dim=64, depth=2, num_heads=2, mlp_hidden=96, codebook_size=32)).state_dict())
    ckpt = tmp_path / "pumit-b.ckpt"
    torch.save({"epoch": 3, "global_step": 1200, "pytorch-lightning_version": lightning.__version__,
                "state_dict": state, "hyper_parameters": {"mask_ratio": 0.55}}, ckpt)
    entry = cli.importPublishedCheckpoint(str(ckpt))
    assert entry["id"] == "pumit-vit-b-v1.0.0" and entry["model_type"] == "mim"
    assert entry["id"] in [m["id"] for m in cli.listModels("mim")]

    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "global_step": 0, "hook": Payload()}, evil)
    with pytest.raises(PUMITSlicerError, match="refusing to load"):
        cli.importPublishedCheckpoint(str(evil))
    assert not marker.exists(), "the checkpoint's pickled code ran"
    assert [m["id"] for m in cli.listModels("mim")] == [entry["id"]], "nothing else was installed"


def test_input_notes_of_the_real_cli_reach_the_status(session, cli, tmp_path, ctVolume):
    """A volume much smaller than the model's intended field of view is segmented, and pumit's note about it
    (sidecar ``input_notes``) comes back with the result for the status line."""
    torch = pytest.importorskip("torch")
    from PUMITSlicerLib import results

    torch.manual_seed(0)
    model = tinySegmenter(tmp_path / "whole-body", depth=2, min_field_of_view_mm=[2000, 2000, 2000])
    task = cli.startSegmentation(ctVolume, str(model), device="CPU")
    finished(task)
    notes = task.details["input_notes"]
    assert "field_of_view" in notes, notes
    status = results.formatInputNotes(notes)
    assert status.startswith("Note: ") and notes["field_of_view"] in status
    assert results.formatInputNotes({}) == ""
