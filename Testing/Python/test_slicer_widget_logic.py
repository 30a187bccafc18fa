"""What the widget decides, run without Qt: fine-tuning pairs through Slicer's ObservedList semantics,
the model browser and its default per volume, the modality Reconstruct sends, Show 3D, subject
hierarchy placement, the reconstruction views and status line, dependency steps and the CPU estimate.

The widget (PUMITSlicer.py) only moves values between these functions and its Qt widgets.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import slicer
from pumitslicer_testing import DATA, REPO, STANDIN, annotatedCase
from PUMITSlicerLib import TaskState
from PUMITSlicerLib.errors import PUMITSlicerError

MODULE_DIR = REPO / "PUMITSlicer"


@pytest.fixture
def params(logic):
    return logic.getParameterNode()


def twoCases(session):
    return [annotatedCase(session, "sub-ct_label-22_ct.nii.gz", "sub-ct_seg-subreg_label-22_msk.nii.gz", "ct",
                          ["vertebral body"]),
            annotatedCase(session, "sub-mri_label-6_T2w.nii.gz", "sub-mri_seg-subreg_label-6_msk.nii.gz", "mri",
                          ["vertebral body"])]


# -- 1. pairs and the ObservedList semantics of Slicer's parameterNodeWrapper ------------------------------

def test_list_parameters_follow_slicers_observed_list(session, params, ctVolume):
    """Slicer's wrapper returns list parameters as ObservedList: `+` raises (what broke Add pair in real
    Slicer), while `+=`, append and assigning a new plain list are saved to the parameter node."""
    with pytest.raises(NotImplementedError, match="Adding an ObservedList is not supported"):
        params.fineTuneVolumes = params.fineTuneVolumes + [ctVolume]  # the old onAddPair code
    with pytest.raises(NotImplementedError):
        [ctVolume] + params.fineTuneVolumes
    params.fineTuneVolumes += [ctVolume]
    assert list(params.fineTuneVolumes) == [ctVolume]
    params.fineTuneVolumes.append(ctVolume)
    assert params.parameterNode.GetNumberOfNodeReferences("fineTuneVolumes") == 2, "append is saved"
    del params.fineTuneVolumes[0]
    params.fineTuneVolumes = [ctVolume, ctVolume]
    assert len(params.fineTuneVolumes) == 2 and params.fineTuneVolumes == [ctVolume, ctVolume]


def test_add_and_remove_pairs(session, params):
    from PUMITSlicerLib.pairs import addPair, pairRows, pairs, removePair

    (ct, ctSeg), (mri, mriSeg) = twoCases(session)
    assert addPair(params, ct, ctSeg) == 1 and addPair(params, mri, mriSeg) == 2
    assert pairs(params) == [(ct, ctSeg), (mri, mriSeg)]
    assert pairRows(params) == [("ct", "ct segmentation"), ("mri", "mri segmentation")]
    again = type(params)(params.parameterNode)  # what the scene keeps
    assert pairs(again) == [(ct, ctSeg), (mri, mriSeg)]
    with pytest.raises(PUMITSlicerError, match="already a training pair"):
        addPair(params, ct, ctSeg)
    with pytest.raises(PUMITSlicerError, match="Select a volume and its segmentation"):
        addPair(params, ct, None)
    with pytest.raises(PUMITSlicerError, match="scalar volume and a segmentation"):
        addPair(params, ctSeg, ct)
    assert removePair(params, 0) and pairs(params) == [(mri, mriSeg)]
    assert not removePair(params, 5) and not removePair(params, -1)
    assert removePair(params, 0) and pairs(params) == [] and pairRows(params) == []


def test_a_deleted_node_never_pairs_the_wrong_cases(session, params, logic):
    """Deleting a volume drops it from its list: the lists are out of step, fine-tuning refuses to start
    (instead of pairing a volume with another case's segmentation) and the row can still be removed."""
    from PUMITSlicerLib.pairs import addPair, pairRows, removePair

    (ct, ctSeg), (mri, mriSeg) = twoCases(session)
    addPair(params, ct, ctSeg)
    addPair(params, mri, mriSeg)
    session.scene.RemoveNode(ct)
    assert len(pairRows(params)) == 2
    params.modelId, params.fineTuneName = "base", "mine"
    logic.pumitCommand = [sys.executable, str(STANDIN)]
    with pytest.raises(PUMITSlicerError, match="exactly one segmentation"):
        logic.fineTune(params)
    removePair(params, 1)
    removePair(params, 0)
    assert pairRows(params) == []


def test_fine_tune_with_pairs_added_one_by_one(session, params, standin):
    from PUMITSlicerLib.pairs import addPair

    for volume, segmentation in twoCases(session):
        addPair(params, volume, segmentation)
    params.modelId, params.fineTuneName, params.fineTuneEpochs = "base-v1.0.0", "my-spine", 2
    task = standin.fineTune(params)
    assert task.wait(timeout=120) == TaskState.SUCCEEDED, task.errorMessage
    assert params.modelId == "my-spine-v1.0.0"


# -- 5. model browser -----------------------------------------------------------------------------------

def test_models_listed_without_torch(logic):
    """`pumit models list` imports no torch, so the browser is filled when the module is entered."""
    import subprocess

    from PUMITSlicerLib.models import listModelInfos

    code = ("import runpy, sys; sys.argv = ['pumit', 'models', 'list', '--json']\n"
            "try:\n    runpy.run_module('pumit.cli.main', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'listing imported torch'\n")
    done = subprocess.run([sys.executable, "-c", code], env=logic.environment(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    models, note = listModelInfos(logic)
    assert note == ""
    byId = {m.id: m for m in models}
    seg = next(m for m in models if m.id.startswith("pumit-ref-hippocampus-seg-v"))
    assert seg.modelType == "segmentation" and seg.modalities == ("MRI",) and "hippocampus" in seg.task
    assert seg.sizeBytes > 1_000_000 and seg.sizeText.endswith("MB") and seg.description
    assert seg.row() == (seg.id, seg.task, "MRI", seg.sizeText)
    tokenizer = next(m for m in models if m.modelType == "tokenizer")
    assert {"CT", "MRI"} <= set(tokenizer.modalities)
    assert set(byId) >= {m.id for m in listModelInfos(logic, "segmentation")[0]}


def test_built_in_models_are_listed_even_when_the_cli_cannot_run(logic):
    """Before the first dependency install the store CLI may not start in Slicer's Python: the browser
    still lists the built-in models, read from their config.json, with the same fields."""
    from PUMITSlicerLib.models import builtinModels, listModelInfos
    from PUMITSlicerLib.logic import bundledPackageDir

    viaCli = {m.id: m for m in listModelInfos(logic)[0] if m.builtin or m.id.startswith("pumit-ref-")}
    logic.pumitCommand = [sys.executable, "-c", "import sys; print('pumit: error: no safetensors', file=sys.stderr); sys.exit(1)"]
    models, note = listModelInfos(logic)
    assert "Built-in models only" in note
    assert [m.id for m in models] == [m.id for m in builtinModels(bundledPackageDir())]
    for model in models:
        cli = viaCli[model.id]
        assert (model.modelType, model.task, model.modalities, model.sizeBytes, model.spacing, model.minFieldOfViewMm) == \
            (cli.modelType, cli.task, cli.modalities, cli.sizeBytes, cli.spacing, cli.minFieldOfViewMm)


def test_default_model_per_loaded_volume(session, params, logic):
    from PUMITSlicerLib.models import chooseDefaultModels, listModelInfos

    models = listModelInfos(logic)[0]
    segmenters = [m for m in models if m.modelType == "segmentation"]
    tokenizers = [m for m in models if m.modelType == "tokenizer"]
    mri = session.loadVolume(REPO / "training" / "pumit" / "assets" / "demo" / "hippocampus_004.nii.gz", "hippo")
    params.inputVolume = mri
    auto = chooseDefaultModels(params, segmenters, tokenizers, {})
    assert params.modelId.startswith("pumit-ref-hippocampus-seg-v") and params.tokenizerId.startswith("pumit-ref-tokenizer-v")
    assert auto == {"modelId": params.modelId, "tokenizerId": params.tokenizerId}
    params.tokenizerId = "my-own-tokenizer"  # the user's choice is kept when the volume changes
    params.inputVolume = session.loadVolume(DATA / "sub-ct_label-22_ct.nii.gz", "ct")
    auto = chooseDefaultModels(params, segmenters, tokenizers, auto)
    assert params.tokenizerId == "my-own-tokenizer" and "tokenizerId" not in auto
    if not any("CT" in m.modalities or not m.modalities for m in segmenters):  # the shipped store: MRI only
        assert params.modelId == "" and "modelId" not in auto, "no MRI model preselected for a CT"
    # a whole-head T1 gets the whole-brain model, the hippocampus crop again the crop model
    params.inputVolume = session.loadVolume(REPO / "training" / "pumit" / "assets" / "demo" / "ixi052_t1_2mm.nii.gz", "head")
    auto = chooseDefaultModels(params, segmenters, tokenizers, auto)
    assert params.modelId.startswith("pumit-ref-brain-parcellation-v"), params.modelId
    params.inputVolume = mri
    chooseDefaultModels(params, segmenters, tokenizers, auto)
    assert params.modelId.startswith("pumit-ref-hippocampus-seg-v"), params.modelId


def test_default_model_prefers_the_volume_modality_and_newest_version():
    from PUMITSlicerLib.models import ModelInfo, defaultModel

    def model(id_, modalities):
        return ModelInfo(id_, "segmentation", "t", modalities, "", 1)

    candidates = [model("knee-v1.0.0", ("MRI",)), model("knee-v1.10.0", ("MRI",)), model("knee-v1.2.0", ("MRI",)),
                  model("bones-v2.0.0", ("CT",)), model("any-v1.0.0", ())]
    assert defaultModel(candidates, "MRI").id == "knee-v1.10.0", "semantic, not string, version order"
    assert defaultModel(candidates, "CT").id == "bones-v2.0.0"
    assert defaultModel(candidates, "US").id == "any-v1.0.0", "a model for any modality before a wrong one"
    assert defaultModel([], "CT") is None
    specific = [m for m in candidates if m.modalities]
    assert defaultModel(specific, "US") is None, "never a model made for another modality"
    assert defaultModel(specific, None).id == "bones-v2.0.0", "unknown modality: the newest"


def test_default_model_prefers_a_model_whose_field_of_view_the_volume_covers():
    from PUMITSlicerLib.models import ModelInfo, defaultModel

    crop = ModelInfo("crop-v0.1.0", "segmentation", "t", ("MRI",), "", 1)
    head = ModelInfo("head-v0.1.0", "segmentation", "t", ("MRI",), "", 1, minFieldOfViewMm=(110.0, 150.0, 120.0))
    old = ModelInfo("crop-v9.0.0", "segmentation", "t", ("MRI",), "", 1)
    assert defaultModel([crop, head], "MRI", (240.0, 240.0, 180.0)).id == "head-v0.1.0", "whole head: head model"
    assert defaultModel([crop, head, old], "MRI", (240.0, 180.0, 240.0)).id == "head-v0.1.0", "axis order is free"
    assert defaultModel([crop, head], "MRI", (36.0, 50.0, 35.0)).id == "crop-v0.1.0", "a crop: not the head model"
    assert defaultModel([head], "MRI", (36.0, 50.0, 35.0)).id == "head-v0.1.0", "the only model is still offered"
    assert head.fits(None) and not head.fits((100.0, 200.0, 200.0)) and crop.fits((1.0, 1.0, 1.0))


# -- 3. modality of Reconstruct, error map shown --------------------------------------------------------

def dicomSeries(session, volume, modality: str):
    """Put ``volume`` in a patient/study/series hierarchy as Slicer's DICOM import does."""
    C = slicer.vtkMRMLSubjectHierarchyConstants
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(session.scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Anonymous")
    study = sh.CreateStudyItem(patient, "Study 1")
    item = sh.GetItemByDataNode(volume) or sh.CreateItem(study, volume)
    sh.SetItemParent(item, study)
    sh.SetItemAttribute(item, C.GetDICOMSeriesModalityAttributeName(), modality)
    return sh, study


def test_volume_modality_from_dicom_or_hounsfield_units(session, ctVolume):
    from PUMITSlicerLib.results import reconstructionModality, volumeModality

    mri = session.loadVolume(DATA / "sub-mri_label-6_T2w.nii.gz", "mri")
    assert volumeModality(ctVolume) == ("CT", "Hounsfield units")
    assert volumeModality(mri) == (None, "unknown")
    with pytest.raises(PUMITSlicerError, match="choose it in Reconstruct > Modality"):
        reconstructionModality("auto", mri)
    assert reconstructionModality("MRI", mri) == "MRI"
    dicomSeries(session, mri, "MR")
    assert volumeModality(mri) == ("MRI", "DICOM") and reconstructionModality("auto", mri) == "MRI"


def test_reconstruct_sends_its_own_modality_not_the_fine_tune_one(session, params, standin):
    """Bug: Reconstruct sent the (collapsed) Fine-tune modality, default CT, so an MRI was normalized as CT."""
    mri = session.loadVolume(DATA / "sub-mri_label-6_T2w.nii.gz", "mri")
    dicomSeries(session, mri, "MR")
    params.inputVolume, params.tokenizerId, params.modality = mri, "tok", "CT"
    task = standin.reconstruct(params)
    args = task.process.args
    assert args[args.index("--modality") + 1] == "mri"
    assert task.wait(timeout=120) == TaskState.SUCCEEDED, task.errorMessage
    params.reconstructModality = "PET"
    task = standin.reconstruct(params)
    assert task.process.args[task.process.args.index("--modality") + 1] == "pet"
    task.wait(timeout=120)


def test_reconstruction_modality_input_is_in_the_reconstruct_section():
    ui = ET.parse(MODULE_DIR / "Resources" / "UI" / "PUMITSlicer.ui").getroot()
    sections = {w.get("name"): w for w in ui.iter("widget") if w.get("class") == "ctkCollapsibleButton"}
    bound = {p.find("string").text: w.get("name") for s in sections.values() for w in s.iter("widget")
             for p in w.findall("property") if p.get("name") == "SlicerParameterName"}
    inReconstruct = {w.get("name") for w in sections["reconstructCollapsibleButton"].iter("widget")}
    assert bound["reconstructModality"] in inReconstruct and "reconstructButton" in inReconstruct
    assert bound["show3D"] in {w.get("name") for w in sections["segmentCollapsibleButton"].iter("widget")}


def test_reconstruction_error_map_shown_and_metrics_in_the_status(session, params, standin, ctVolume):
    from PUMITSlicerLib.results import formatReconstructionMetrics, reconstructionViews

    params.inputVolume, params.tokenizerId = ctVolume, "tok"
    task = standin.reconstruct(params)
    assert task.wait(timeout=120) == TaskState.SUCCEEDED, task.errorMessage
    reconstruction, errorMap = task.result
    views = reconstructionViews(ctVolume, reconstruction, errorMap)
    assert views["Red"]["background"] == ctVolume.GetID()
    assert views["Yellow"] == {"background": reconstruction.GetID(), "foreground": errorMap.GetID(), "opacity": 0.5}
    assert reconstructionViews(ctVolume, reconstruction, None)["Yellow"]["foreground"] is None
    metrics = task.details["metrics"]  # from the .recon.json sidecar the (stand-in) CLI wrote
    variance = float(slicer.util.arrayFromVolume(ctVolume).astype(np.float64).var())
    assert metrics["pearson"] == 1.0 and metrics["psnr_gain_db"] == pytest.approx(10 * np.log10(variance), rel=1e-6)
    status = formatReconstructionMetrics(metrics)
    assert status.startswith("Pearson 1.000, std ratio 1.00, PSNR +") and "over a constant image" in status


def test_status_never_shows_psnr_alone(tmp_path):
    from PUMITSlicerLib.results import formatReconstructionMetrics, reconstructionMetrics

    assert formatReconstructionMetrics({"psnr_db": 31.0}) == "no quality metrics reported by this pumit version"
    assert formatReconstructionMetrics({"psnr_db": 31.0, "psnr_constant_db": 30.5}) == "PSNR +0.5 dB over a constant image"
    full = {"pearson": 0.9712, "ssim": 0.9, "std_ratio": 0.951, "psnr_db": 30.0, "psnr_constant_db": 24.0, "psnr_gain_db": 6.0}
    assert formatReconstructionMetrics(full) == "Pearson 0.971, SSIM 0.900, std ratio 0.95, PSNR +6.0 dB over a constant image"
    output = tmp_path / "reconstruction.nrrd"
    assert reconstructionMetrics(None, output) == {}, "an old pumit writes no sidecar"
    (tmp_path / "reconstruction.recon.json").write_text(json.dumps({"metrics": {**full, "psnr_db": None}}))
    assert reconstructionMetrics(None, output) == {k: v for k, v in full.items() if k != "psnr_db"}
    assert reconstructionMetrics({"metrics": {"pearson": 0.5}}, output) == {"pearson": 0.5}


# -- 8. Show 3D and the subject hierarchy ---------------------------------------------------------------

def test_show_3d_toggle(session, params, standin, ctVolume):
    from PUMITSlicerLib.results import applyShow3D

    closedSurface = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    params.inputVolume, params.modelId = ctVolume, "m"
    task = standin.segment(params)
    assert task.wait(timeout=120) == TaskState.SUCCEEDED, task.errorMessage
    segmentation = params.outputSegmentation
    assert not segmentation.GetSegmentation().ContainsRepresentation(closedSurface), "no surfaces unless asked"
    assert not segmentation.GetDisplayNode().GetVisibility3D()
    applyShow3D(segmentation, True)
    assert segmentation.GetSegmentation().ContainsRepresentation(closedSurface)
    assert segmentation.GetDisplayNode().GetVisibility3D()
    applyShow3D(segmentation, False)
    assert not segmentation.GetSegmentation().ContainsRepresentation(closedSurface)
    params.show3D, params.outputSegmentation = True, None
    task = standin.segment(params)
    assert task.wait(timeout=120) == TaskState.SUCCEEDED
    assert params.outputSegmentation.GetSegmentation().ContainsRepresentation(closedSurface)


def test_results_are_placed_under_the_input_study(session, params, standin, ctVolume):
    sh, study = dicomSeries(session, ctVolume, "CT")
    params.inputVolume, params.modelId, params.tokenizerId = ctVolume, "m", "tok"
    task = standin.segment(params)
    assert task.wait(timeout=120) == TaskState.SUCCEEDED, task.errorMessage
    assert sh.GetItemParent(sh.GetItemByDataNode(params.outputSegmentation)) == study
    task = standin.reconstruct(params)
    assert task.wait(timeout=120) == TaskState.SUCCEEDED, task.errorMessage
    for node in task.result:
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study


def test_a_volume_outside_any_study_is_left_alone(session, standin, ctVolume):
    from PUMITSlicerLib.results import placeNextToInput

    task = standin.startSegmentation(ctVolume, "m")
    assert task.wait(timeout=120) == TaskState.SUCCEEDED
    assert placeNextToInput(ctVolume, task.result) == 0


def test_run_summary_names_the_device_and_time():
    from PUMITSlicerLib.results import deviceFromMessages, runSummary

    assert runSummary("Segmentation", 12.4, "cpu") == "Segmentation done in 12 s on CPU."
    assert runSummary("Reconstruction", 3.0, "cuda:1") == "Reconstruction done in 3 s on GPU (cuda:1)."
    assert runSummary("Fine-tuning", 61.0, None) == "Fine-tuning done in 61 s."
    assert deviceFromMessages(["loading", "8 window(s) (everything on cuda, fp16)", "retry on cpu"]) == "cpu", "the last"
    assert deviceFromMessages(["no device here"]) is None


# -- 7. dependencies and the CPU estimate ----------------------------------------------------------------

def test_dependency_steps_and_consent(monkeypatch, tmp_path):
    from PUMITSlicerLib import dependencies

    assert dependencies.installSteps() == [] or dependencies.TORCH_REQUIREMENT in dependencies.missingDependencies()
    (tmp_path / "requirements.txt").write_text("no-such-package-for-pumitslicer>=1\nnumpy>=1\n")
    monkeypatch.setattr(dependencies, "RESOURCES", tmp_path)
    steps = dependencies.installSteps()
    assert steps[-1] == "Python packages: no-such-package-for-pumitslicer>=1"
    calls = []
    assert dependencies.ensureDependencies(lambda message: calls.append(message) or False,
                                           progress=lambda *a: calls.append(a)) is False
    assert len(calls) == 1 and "no-such-package-for-pumitslicer" in calls[0], "asked once, nothing installed"


@pytest.mark.parametrize("hidden", [True, False])
def test_training_logs_without_tensorboard(tmp_path, logic, hidden):
    """Slicer's fine-tuning requirements have no TensorBoard: the trainer's loggers are then CSV only
    (Lightning's TensorBoardLogger raised ModuleNotFoundError there); with it, both."""
    import subprocess

    pytest.importorskip("lightning")
    from pumitslicer_testing import HERE

    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import without_tensorboard\n"
            + ("without_tensorboard.hide()\n" if hidden else "")
            + "from pumit.training.loggers import build_loggers\n"
            f"print(' '.join(type(x).__name__ for x in build_loggers(__import__('pathlib').Path({str(tmp_path)!r}))))\n")
    done = subprocess.run([sys.executable, "-c", code], env=logic.environment(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    names = done.stdout.split()
    try:
        import tensorboard  # noqa: F401
        installed = True
    except ImportError:
        installed = False
    assert names == (["CSVLogger"] if hidden or not installed else ["CSVLogger", "TensorBoardLogger"])


def test_cpu_estimate_scales_with_resampled_volume_and_model():
    from PUMITSlicerLib import runtime

    assert isinstance(runtime.gpuAvailable(), bool)
    native = runtime.modelMegavoxels((100, 100, 50), (1.0, 1.0, 2.0))
    assert native == pytest.approx(0.5)
    assert runtime.modelMegavoxels((100, 100, 50), (1.0, 1.0, 2.0), (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    mb4 = 4 * 2**20
    small = runtime.estimateCpuSeconds("segment", 0.1, mb4)
    assert runtime.estimateCpuSeconds("segment", 1.0, mb4) > small > runtime.STARTUP_SECONDS["segment"]
    assert runtime.estimateCpuSeconds("segment", 1.0, 2 * mb4) > runtime.estimateCpuSeconds("segment", 1.0, mb4)
    one = runtime.estimateCpuSeconds("finetune", 0.0, mb4, epochs=1, cases=2)
    assert runtime.estimateCpuSeconds("finetune", 0.0, mb4, epochs=20, cases=2) > one
    assert runtime.estimateCpuSeconds("finetune", 0.0, mb4, epochs=1, cases=4) > one
    assert [runtime.formatDuration(s) for s in (5, 600, 7200)] == ["5 s", "10 min", "2.0 h"]
    assert runtime.cpuWarning(600).startswith("No GPU found: running on the CPU, which takes about 10 min")
    assert runtime.cpuWarning(30, gpuFound=True).startswith("Running on the CPU, which takes about 30 s")


def test_cpu_estimate_is_the_right_order_of_magnitude_for_a_real_run(session, logic):
    """The estimate for the shipped hippocampus model on the shipped MRI case against the real pumit
    process on this machine's CPU (a loose bound, 1/4 to 5 times: the machine's speed and load vary)."""
    import time

    from pumitslicer_testing import cliMissing
    from PUMITSlicerLib import runtime
    from PUMITSlicerLib.models import listModelInfos

    if cliMissing():
        pytest.skip(cliMissing())
    model = next(m for m in listModelInfos(logic)[0] if m.id.startswith("pumit-ref-hippocampus-seg-v"))
    volume = session.loadVolume(REPO / "training" / "pumit" / "assets" / "demo" / "hippocampus_004.nii.gz", "hippo")
    dims = volume.GetImageData().GetDimensions()
    estimate = runtime.estimateCpuSeconds("segment", runtime.modelMegavoxels(dims, volume.GetSpacing(), model.spacing),
                                          model.sizeBytes)
    start = time.monotonic()
    task = logic.startSegmentation(volume, model.id, device="CPU")
    assert task.wait(timeout=300) == TaskState.SUCCEEDED, task.errorMessage
    measured = time.monotonic() - start
    assert estimate / 4 < measured < estimate * 5, (estimate, measured)


# -- 6. SampleData -----------------------------------------------------------------------------------------

#: Keyword parameters of SampleData.SampleDataLogic.registerCustomSampleDataSource (Slicer 5.8+,
#: Modules/Scripted/SampleData/SampleData.py).
SAMPLEDATA_PARAMETERS = {"category", "sampleName", "uris", "fileNames", "nodeNames", "customDownloader",
                         "thumbnailFileName", "loadFileTypes", "loadFiles", "loadFileProperties", "checksums",
                         "loadFileType"}


def test_demo_images_are_registered_as_sample_data(session):
    from PUMITSlicerLib.sampledata import SAMPLES, sampleDataSources

    sources = sampleDataSources()
    assert [s["sampleName"] for s in sources] == [s.name for s in SAMPLES] and len(sources) >= 3
    for source in sources:
        assert set(source) <= SAMPLEDATA_PARAMETERS
        path = Path(unquote(urlparse(source["uris"]).path))
        assert source["uris"] == path.as_uri(), "a local file URI: SampleData copies it, nothing is downloaded"
        assert path.is_file() and path.name == source["fileNames"]
        algorithm, digest = source["checksums"].split(":")
        assert algorithm == "SHA256" and hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert source["thumbnailFileName"] and Path(source["thumbnailFileName"]).read_bytes()[:4] == b"\x89PNG"
        node = session.loadVolume(path, source["nodeNames"])
        assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetImageData().GetDimensions()[2] > 1
    assert len({s["nodeNames"] for s in sources}) == len(sources)


def test_no_sample_data_without_the_demo_folder(tmp_path):
    from PUMITSlicerLib.sampledata import sampleDataSources

    assert sampleDataSources(tmp_path) == []


# -- the widget uses these functions ------------------------------------------------------------------------

def test_widget_delegates_to_the_tested_functions():
    source = (MODULE_DIR / "PUMITSlicer.py").read_text()
    widget = source[source.index("class PUMITSlicerWidget"):source.index("class PUMITSlicerLogic")]
    assert not re.search(r"fineTune\w+\s*=\s*[^\n]*\bfineTune\w+\s*\+", widget), "no ObservedList + in the widget"
    for call in ("addPair(", "removePair(", "pairRows(", "listModelInfos(", "chooseDefaultModels(",
                 "applyShow3D(", "reconstructionViews(", "formatReconstructionMetrics(", "deviceFromMessages(",
                 "estimateCpuSeconds(", "installSteps("):
        assert call in source, call
    assert "CreateClosedSurfaceRepresentation" not in widget, "surfaces only through the Show 3D toggle"
