"""PUMITSlicer: segment, reconstruct and fine-tune with spacing-aware PUMIT / SPAD-Net models.

Kept thin on purpose: the module description, the typed parameter node, the widget (binds the GUI
to the parameters and shows progress), the logic entry points, and the self-test. All GUI-free code
is in ``PUMITSlicerLib``; all model work runs in a separate ``pumit`` process.
"""

import contextlib
import logging
import tempfile
import time
import traceback
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import qt
import slicer
import vtk
from PUMITSlicerLib import PUMITLogic, PUMITSlicerError, Task, TaskState, formatProgress
from PUMITSlicerLib import models as modelBrowser
from PUMITSlicerLib import results, runtime
from PUMITSlicerLib.logic import pythonExecutable
from PUMITSlicerLib.pairs import addPair, pairRows, removePair
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

logger = logging.getLogger(__name__)

#
# PUMITSlicer
#


class PUMITSlicer(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PUMIT Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []  # PyTorchUtils (PyTorch extension) is used only when installing torch
        self.parent.contributors = ["PUMITSlicer developers"]
        self.parent.helpText = _(
            "Segment a volume, view its tokenizer reconstruction, or fine-tune a model on your own segmentations "
            "with spacing-aware PUMIT / SPAD-Net models. Models run in a separate process on the GPU or CPU; "
            "Apply turns into Cancel while running. See the "
            '<a href="https://github.com/PUMITSlicer/SlicerPUMIT/blob/main/docs/slicer.md">user guide</a>.')
        self.parent.acknowledgementText = _(
            "Based on PUMIT / SPAD-Nets by Luo et al.: 'Pre-trained Universal Medical Image Transformer' (AAAI 2024) "
            "and 'Building Universal Foundation Models for Medical Image Analysis with Spatially Adaptive Networks' "
            "(2023); this is an independent implementation. Module layout after Slicer's scripted-module template.")
        app = getattr(slicer, "app", None)
        if app is not None:  # the demo images in SampleData, once Slicer has started (nothing runs at import)
            app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """Add the shipped demo images to the SampleData module (category PUMIT); no download."""
    from PUMITSlicerLib.sampledata import registerSampleData as register

    try:
        register()
    except Exception:
        logger.exception("PUMITSlicer: registering the sample data failed")


#
# Parameters
#


@parameterNodeWrapper
class PUMITSlicerParameterNode:
    """Module parameters, saved with the scene.

    inputVolume - volume to segment or reconstruct (RAS, any orientation).
    outputSegmentation - segmentation whose segments are replaced by the result; none: a new one is made.
    modelId / tokenizerId - model store id (``NAME-vX.Y.Z``), bare name (latest version) or a model path.
    device - ``auto`` (GPU if available), ``GPU`` (CUDA) or ``CPU``.
    overlap - sliding-window overlap fraction; swBatch - windows per batch (0: pumit's default).
    fineTuneVolumes / fineTuneSegmentations - the training pairs, same length, matched by position.
    fineTuneName - name of the fine-tuned model (each run adds a version); modality - the training images'
    modality (dataset.json). reconstructModality - the tokenizer's per-modality intensity normalization for
    Reconstruct; ``auto``: the volume's DICOM modality, or CT for Hounsfield units, else the user must choose.
    show3D - build surfaces and show segmentation results in 3D.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    modelId: str
    device: Annotated[str, Choice(["auto", "GPU", "CPU"])] = "auto"
    overlap: Annotated[float, WithinRange(0.0, 0.9)] = 0.25  # pumit's measured default (docs/benchmarks.md)
    swBatch: Annotated[int, WithinRange(0, 64)] = 0
    tokenizerId: str
    computeErrorMap: bool = True
    reconstructedVolume: vtkMRMLScalarVolumeNode
    fineTuneVolumes: list[vtkMRMLScalarVolumeNode]
    fineTuneSegmentations: list[vtkMRMLSegmentationNode]
    fineTuneName: str
    fineTuneEpochs: Annotated[int, WithinRange(1, 1000)] = 20
    modality: Annotated[str, Choice(["CT", "MRI", "PET", "US", "other"])] = "CT"
    reconstructModality: Annotated[str, Choice(["auto", "CT", "MRI", "PET", "US", "other"])] = "auto"
    show3D: bool = False


#
# Widget
#


class PUMITSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui to the parameter node, starts/cancels jobs and shows their progress.

    Decisions are made by GUI-free code in ``PUMITSlicerLib`` (pairs, models, results, runtime); this
    class only moves values between them and the Qt widgets.
    """

    #: run kind -> (button, idle button text)
    RUNS: ClassVar[dict[str, tuple[str, str]]] = {"segment": ("segmentButton", _("Segment")),
            "reconstruct": ("reconstructButton", _("Reconstruct")),
            "finetune": ("fineTuneButton", _("Fine-tune"))}

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._task = None
        self._taskKind = None
        self._timer = None
        self._models: list = []  # ModelInfo rows of the model browser
        self._autoModels: dict[str, str] = {}  # model ids chosen automatically for the current volume
        self._modelsListed = False
        self._lastInputVolume = None  # to preselect models when the input volume changes

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PUMITSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PUMITSlicerLogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._pollTask)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        for kind, (buttonName, _text) in self.RUNS.items():
            getattr(self.ui, buttonName).clicked.connect(lambda _checked=False, k=kind: self.onRunButton(k))
        self.ui.refreshModelsButton.clicked.connect(self.onRefreshModels)
        self.ui.installModelButton.clicked.connect(self.onInstallModel)
        self.ui.importPumitButton.clicked.connect(self.onImportPublishedCheckpoint)
        self.ui.modelsTableWidget.itemSelectionChanged.connect(self.onModelRowSelected)
        self.ui.modelComboBox.currentTextChanged.connect(lambda text: self._setParameter("modelId", text))
        self.ui.tokenizerComboBox.currentTextChanged.connect(lambda text: self._setParameter("tokenizerId", text))
        self.ui.show3DCheckBox.toggled.connect(self.onShow3DToggled)
        self.ui.addPairButton.clicked.connect(self.onAddPair)
        self.ui.removePairButton.clicked.connect(self.onRemovePair)
        self.ui.progressBar.setVisible(False)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes: stop a running job, drop observers."""
        if self._task is not None and self._task.running:
            self._task.process.kill()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if not self._modelsListed:  # listing needs no torch: fill the model browser on first entry
            self.onRefreshModels()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        if self._task is not None and self._task.running:
            self._task.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    def _setParameter(self, name: str, value) -> None:
        if self._parameterNode and getattr(self._parameterNode, name) != value:
            setattr(self._parameterNode, name, value)

    def _updateGui(self, caller=None, event=None) -> None:
        """Show the parameters not bound by SlicerParameterName and the run state."""
        p = self._parameterNode
        if p is None:
            return
        if p.inputVolume is not self._lastInputVolume:
            self._lastInputVolume = p.inputVolume
            self._chooseDefaultModels()  # may set modelId / tokenizerId (and call this method again)
        for combo, value in ((self.ui.modelComboBox, p.modelId), (self.ui.tokenizerComboBox, p.tokenizerId)):
            if combo.currentText != value:
                combo.setCurrentText(value)
        rows = pairRows(p)
        self.ui.pairsTableWidget.setRowCount(len(rows))
        for row, names in enumerate(rows):
            for column, name in enumerate(names):
                self.ui.pairsTableWidget.setItem(row, column, qt.QTableWidgetItem(name))
        running = self._task is not None and self._task.running
        ready = {"segment": bool(p.inputVolume and p.modelId),
                 "reconstruct": bool(p.inputVolume and p.tokenizerId),
                 "finetune": bool(len(p.fineTuneVolumes) and p.modelId and p.fineTuneName)}
        for kind, (buttonName, text) in self.RUNS.items():
            button = getattr(self.ui, buttonName)
            isRunning = running and kind == self._taskKind
            button.text = _("Cancel") if isRunning else text
            button.enabled = isRunning or (not running and ready[kind])

    # -- models --------------------------------------------------------------------------------------

    def onRefreshModels(self) -> None:
        """Fill the model browser and the model lists from the local store (no PyTorch needed)."""
        with self._errorsShown(_("Failed to list the models.")):
            self._models, note = modelBrowser.listModelInfos(self.logic)
            self._modelsListed = True
            table = self.ui.modelsTableWidget
            table.setRowCount(len(self._models))
            for row, model in enumerate(self._models):
                for column, text in enumerate(model.row()):
                    item = qt.QTableWidgetItem(text)
                    item.setToolTip(model.description)
                    table.setItem(row, column, item)
            self.ui.modelDescriptionLabel.text = note
            for combo, modelType, name in ((self.ui.modelComboBox, "segmentation", "modelId"),
                                           (self.ui.tokenizerComboBox, "tokenizer", "tokenizerId")):
                current = getattr(self._parameterNode, name)
                wasBlocked = combo.blockSignals(True)  # refilling must not clear the parameter
                combo.clear()
                for model in self._models:
                    if model.modelType == modelType:
                        combo.addItem(model.id)
                        combo.setItemData(combo.count - 1, model.description, qt.Qt.ToolTipRole)
                combo.setCurrentText(current)
                combo.blockSignals(wasBlocked)
            self._chooseDefaultModels()

    def _chooseDefaultModels(self) -> None:
        if self._parameterNode is None or not self._models:
            return
        self._autoModels = modelBrowser.chooseDefaultModels(
            self._parameterNode, [m for m in self._models if m.modelType == "segmentation"],
            [m for m in self._models if m.modelType == "tokenizer"], self._autoModels)

    def onModelRowSelected(self) -> None:
        row = self.ui.modelsTableWidget.currentRow()
        if not 0 <= row < len(self._models) or self._parameterNode is None:
            return
        model = self._models[row]
        self.ui.modelDescriptionLabel.text = f"{model.id}: {model.description}"
        name = {"segmentation": "modelId", "tokenizer": "tokenizerId"}.get(model.modelType)
        if name:
            self._setParameter(name, model.id)

    def onInstallModel(self) -> None:
        """Copy a model folder chosen by the user into the local model store (no download)."""
        path = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Model folder (config.json + model.safetensors)"))
        if not path or not self._ensureDependencies(training=False):
            return
        with self._errorsShown(_("Failed to install the model.")):
            entry = self.logic.installModel(path)
            self.onRefreshModels()
            slicer.util.showStatusMessage(_("Installed model {id}").format(id=entry.get("id")), 5000)

    def onImportPublishedCheckpoint(self) -> None:
        """Convert and install a published PUMIT checkpoint chosen by the user (``pumit models import-pumit``)."""
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("Published PUMIT checkpoint"), "",
                                              _("PUMIT checkpoints (*.ckpt *.pt *.pth)"))
        if not path or not self._ensureDependencies(training=False):
            return
        with self._errorsShown(_("Failed to import the checkpoint.")):
            slicer.util.showStatusMessage(_("Converting {name}...").format(name=Path(path).name))
            slicer.app.processEvents()
            entry = self.logic.importPublishedCheckpoint(path)
            self.onRefreshModels()
            slicer.util.showStatusMessage(_("Imported {id}").format(id=entry.get("id")), 5000)

    # -- fine-tuning pairs and results ---------------------------------------------------------------

    def onAddPair(self) -> None:
        with self._errorsShown(_("Failed to add the pair.")):
            addPair(self._parameterNode, self.ui.fineTuneVolumeSelector.currentNode(),
                    self.ui.fineTuneSegmentationSelector.currentNode())

    def onRemovePair(self) -> None:
        removePair(self._parameterNode, self.ui.pairsTableWidget.currentRow())

    def onShow3DToggled(self, checked: bool) -> None:
        if self._parameterNode is not None and self._parameterNode.outputSegmentation is not None:
            with slicer.util.WaitCursor():
                results.applyShow3D(self._parameterNode.outputSegmentation, checked)

    # -- running -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errorsShown(self, context: str):
        """Show a PUMITSlicerError's message as is; anything else (a bug) with its traceback."""
        try:
            with slicer.util.WaitCursor():
                yield
        except PUMITSlicerError as e:
            slicer.util.errorDisplay(str(e), windowTitle=_("PUMIT"))
        except Exception as e:
            logger.exception(context)
            slicer.util.errorDisplay(f"{context}\n\n{e}", detailedText=traceback.format_exc(), windowTitle=_("PUMIT"))

    def _ensureDependencies(self, training: bool) -> bool:
        """Ask before downloading anything; install with a progress dialog and pip's output in the Python
        console. True when torch and the requirements are installed."""
        from PUMITSlicerLib.dependencies import ensureDependencies, installSteps

        if not installSteps(training):
            return True
        dialog = None

        def progress(step: int, steps: int, text: str) -> None:
            nonlocal dialog
            if dialog is None:
                dialog = slicer.util.createProgressDialog(labelText=text, maximum=steps, windowTitle=_("PUMIT"))
                try:  # pip prints its download progress in the Python console: show it
                    console = slicer.util.pythonShell()
                    (console.parent() or console).show()
                except RuntimeError:
                    pass
            dialog.labelText = text
            dialog.value = step
            slicer.app.processEvents()

        try:
            with slicer.util.WaitCursor():
                return ensureDependencies(slicer.util.confirmOkCancelDisplay, training=training, progress=progress)
        except Exception as e:
            logger.exception("PUMITSlicer: installing dependencies failed")
            slicer.util.errorDisplay(_("Failed to install the Python packages PUMITSlicer needs:") + f"\n\n{e}",
                                     detailedText=traceback.format_exc(), windowTitle=_("PUMIT"))
            return False
        finally:
            if dialog is not None:
                dialog.close()

    def _cpuEstimate(self, kind: str) -> tuple[str, float]:
        """The CPU-time warning and seconds for the job about to start (``("", 0)`` with a GPU, or when
        the size is unknown)."""
        p = self._parameterNode
        if p.device == "GPU" or (p.device == "auto" and runtime.gpuAvailable()):
            return "", 0.0
        modelId = p.tokenizerId if kind == "reconstruct" else p.modelId
        model = next((m for m in self._models if modelId and m.id.startswith(modelId)), None)
        volumes = list(p.fineTuneVolumes) if kind == "finetune" else [p.inputVolume]
        if model is None or not all(v is not None and v.GetImageData() is not None for v in volumes):
            return "", 0.0
        megavoxels = sum(runtime.modelMegavoxels(v.GetImageData().GetDimensions(), v.GetSpacing(), model.spacing)
                         for v in volumes)
        seconds = runtime.estimateCpuSeconds(kind, megavoxels, model.sizeBytes, epochs=p.fineTuneEpochs, cases=len(volumes))
        return runtime.cpuWarning(seconds, gpuFound=runtime.gpuAvailable()), seconds

    def onRunButton(self, kind: str) -> None:
        """Apply: start the job of ``kind``; while it runs the same button cancels it."""
        if self._task is not None and self._task.running:
            self._task.cancel()
            self.ui.statusLabel.text = _("Cancelling...")
            return
        if not self._ensureDependencies(training=kind == "finetune"):
            return
        start = {"segment": self.logic.segment, "reconstruct": self.logic.reconstruct, "finetune": self.logic.fineTune}[kind]
        estimate, seconds = self._cpuEstimate(kind)
        if seconds > runtime.CONFIRM_ABOVE_SECONDS and not slicer.util.confirmOkCancelDisplay(
                estimate + "\n\n" + _("Start anyway?"), windowTitle=_("PUMIT")):
            return
        task = None
        with self._errorsShown(_("Failed to start.")):
            task = start(self._parameterNode)
        if task is None:
            return
        self._task, self._taskKind = task, kind
        task.progressCallbacks.append(self._onProgress)
        task.finishedCallbacks.append(self._onFinished)
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = " ".join(t for t in (_("{name} starting...").format(name=task.name), estimate) if t)
        self._updateGui()
        self._timer.start()

    def _pollTask(self) -> None:
        try:
            if self._task is None or not self._task.poll():
                self._timer.stop()
        except Exception:
            self._timer.stop()
            logger.exception("PUMITSlicer: polling the running job failed")
            if self._task is not None:
                self._task.process.kill()

    def _onProgress(self, event) -> None:
        self.ui.progressBar.value = round(100 * event.fraction)
        self.ui.statusLabel.text = formatProgress(event)

    def _onFinished(self, task: Task) -> None:
        if task is not self._task:
            return
        self._timer.stop()
        self.ui.progressBar.setVisible(False)
        if task.state == TaskState.SUCCEEDED:
            status = results.runSummary(task.name, task.elapsedSeconds, results.deviceFromMessages(task.progressMessages))
            if self._taskKind == "reconstruct" and self._parameterNode:
                reconstruction, errorMap = task.result
                showReconstruction(self._parameterNode.inputVolume, reconstruction, errorMap)
                status += " " + results.formatReconstructionMetrics(task.details.get("metrics", {})) + "."
            elif self._taskKind == "segment" and task.details.get("input_notes"):
                status += " " + results.formatInputNotes(task.details["input_notes"])
            elif self._taskKind == "finetune":
                if self.ui.modelComboBox.findText(task.result) < 0:
                    self.ui.modelComboBox.addItem(task.result)
                self.ui.modelComboBox.setCurrentText(task.result)
            self.ui.statusLabel.text = status
        elif task.state == TaskState.CANCELLED:
            self.ui.statusLabel.text = _("Cancelled; nothing was changed.")
        else:
            self.ui.statusLabel.text = _("Failed; nothing was changed.")
            slicer.util.errorDisplay(task.errorMessage, windowTitle=_("PUMIT"))
        self._updateGui()


def showReconstruction(inputVolume, reconstruction, errorMap) -> None:
    """Side-by-side layout as :func:`PUMITSlicerLib.results.reconstructionViews` says: the input in Red,
    the reconstruction in Yellow with the error map over it; views linked."""
    layoutManager = slicer.app.layoutManager()
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    for viewName, view in results.reconstructionViews(inputVolume, reconstruction, errorMap).items():
        compositeNode = layoutManager.sliceWidget(viewName).mrmlSliceCompositeNode()
        compositeNode.SetBackgroundVolumeID(view["background"])
        compositeNode.SetForegroundVolumeID(view["foreground"])
        compositeNode.SetForegroundOpacity(view["opacity"])
        compositeNode.SetLinkedControl(True)
    slicer.util.resetSliceViews()


#
# Logic
#


class PUMITSlicerLogic(ScriptedLoadableModuleLogic, PUMITLogic):
    """Entry points working from the parameter node. The actual work is in
    :class:`PUMITSlicerLib.logic.PUMITLogic` (usable from the Python console and scripts)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        PUMITLogic.__init__(self)

    def getParameterNode(self) -> PUMITSlicerParameterNode:
        return PUMITSlicerParameterNode(super().getParameterNode())

    def segment(self, parameters: PUMITSlicerParameterNode) -> Task:
        """Segment ``parameters.inputVolume``; on success ``parameters.outputSegmentation`` is the result,
        shown in 3D when ``parameters.show3D``."""
        task = self.startSegmentation(
            parameters.inputVolume, parameters.modelId, outputSegmentation=parameters.outputSegmentation,
            device=parameters.device, overlap=parameters.overlap, swBatch=parameters.swBatch)

        def done(t: Task) -> None:
            parameters.outputSegmentation = t.result
            results.applyShow3D(t.result, parameters.show3D)

        task.finishedCallbacks.append(lambda t: _ifSucceeded(t, lambda: done(t)))
        return task

    def reconstruct(self, parameters: PUMITSlicerParameterNode) -> Task:
        """Reconstruct ``parameters.inputVolume`` with the modality of ``parameters.reconstructModality``
        (``auto``: the volume's); on success ``parameters.reconstructedVolume`` is the result."""
        modality = results.reconstructionModality(parameters.reconstructModality, parameters.inputVolume)
        task = self.startReconstruction(parameters.inputVolume, parameters.tokenizerId, device=parameters.device,
                                        errorMap=parameters.computeErrorMap, modality=modality)
        task.finishedCallbacks.append(lambda t: _ifSucceeded(t, lambda: setattr(parameters, "reconstructedVolume", t.result[0])))
        return task

    def fineTune(self, parameters: PUMITSlicerParameterNode) -> Task:
        """Fine-tune ``parameters.modelId`` on the selected pairs; on success the new version is selected."""
        from PUMITSlicerLib.pairs import pairs

        task = self.startFineTuning(pairs(parameters), parameters.modelId, parameters.fineTuneName,
                                    epochs=parameters.fineTuneEpochs, device=parameters.device, modality=parameters.modality)
        task.finishedCallbacks.append(lambda t: _ifSucceeded(t, lambda: setattr(parameters, "modelId", t.result)))
        return task


def _ifSucceeded(task: Task, action) -> None:
    if task.state == TaskState.SUCCEEDED:
        action()


#
# Test
#


class PUMITSlicerTest(ScriptedLoadableModuleTest):
    """Self-test, run by ctest (``slicer_add_python_unittest``), Reload and Test, and pytest.

    Needs no torch: the logic runs a small script that honours the pumit CLI contract (label 1 where
    the input is above its mean) in a real child process, on an oblique volume.
    """

    CONTRACT_SCRIPT = (
        "import json, os, sys, time, SimpleITK as sitk\n"
        "a = sys.argv[1:]; out = a[a.index('-o') + 1]\n"
        "for i in range(int(os.environ.get('CONTRACT_STEPS', '3'))):\n"
        "    print(json.dumps({'stage': 'inference', 'fraction': 0.0, 'message': f'window {i}'}), flush=True)\n"
        "    time.sleep(0.05)\n"
        "image = sitk.ReadImage(a[1]); array = sitk.GetArrayFromImage(image)\n"
        "labels = sitk.GetImageFromArray((array > array.mean()).astype('uint8')); labels.CopyInformation(image)\n"
        "sitk.WriteImage(labels, out)\n"
        "open(out[:-len('.nrrd')] + '.labels.json', 'w').write(json.dumps("
        "{'model': 'contract', 'labels': [{'value': 1, 'name': 'bright', 'color': [250, 200, 20]}]}))\n"
        "print(json.dumps({'stage': 'done', 'fraction': 1.0, 'message': 'done'}))\n")

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_ObliqueSegmentation()
        self.setUp()
        self.test_CancelLeavesSceneUnchanged()
        self.setUp()
        self.test_AddAndRemovePairs()

    def _logic(self, folder: str) -> "PUMITSlicerLogic":
        script = Path(folder) / "contract.py"
        script.write_text(self.CONTRACT_SCRIPT, encoding="utf-8")
        logic = PUMITSlicerLogic()
        logic.pumitCommand = [pythonExecutable(), str(script)]
        return logic

    def _obliqueVolume(self):
        voxels = np.zeros((12, 16, 20), np.int16)
        voxels[3:6, 4:9, 5:12] = 100
        angle = np.deg2rad(30)
        ijkToRAS = np.eye(4)
        ijkToRAS[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) @ np.diag([0.8, 0.9, 2.5])
        ijkToRAS[:3, 3] = [12.0, -30.0, 7.5]
        return slicer.util.addVolumeFromArray(voxels, ijkToRAS=ijkToRAS, name="oblique"), voxels

    def test_ObliqueSegmentation(self) -> None:
        """The result lies on the oblique input's voxels, with the model's name and color."""
        self.delayDisplay("Segmenting an oblique volume in a separate process")
        volume, voxels = self._obliqueVolume()
        with tempfile.TemporaryDirectory() as folder:
            logic = self._logic(folder)
            parameters = logic.getParameterNode()
            parameters.inputVolume, parameters.modelId = volume, "contract"
            events = []
            task = logic.segment(parameters)
            task.progressCallbacks.append(events.append)
            self.assertEqual(task.wait(timeout=120), TaskState.SUCCEEDED, task.errorMessage)
        segmentation = parameters.outputSegmentation
        self.assertIsNotNone(segmentation)
        segment = segmentation.GetSegmentation().GetNthSegment(0)
        self.assertEqual((segment.GetName(), segmentation.GetSegmentation().GetNumberOfSegments()), ("bright", 1))
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentation.GetSegmentation().GetNthSegmentID(0), volume)
        self.assertTrue(np.array_equal(mask > 0, voxels > voxels.mean()))
        self.assertEqual(events[-1].fraction, 1.0)
        self.delayDisplay("Oblique segmentation passed")

    def test_AddAndRemovePairs(self) -> None:
        """The Add pair / Remove selected logic on this Slicer's own parameterNodeWrapper (ObservedList lists)."""
        self.delayDisplay("Adding and removing fine-tuning pairs")
        parameters = PUMITSlicerLogic().getParameterNode()
        volumes = [self._obliqueVolume()[0] for _ in range(2)]
        segmentations = [slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode") for _ in range(2)]
        for volume, segmentation in zip(volumes, segmentations):
            addPair(parameters, volume, segmentation)
        self.assertEqual(list(parameters.fineTuneVolumes), volumes)
        self.assertEqual(list(parameters.fineTuneSegmentations), segmentations)
        self.assertTrue(removePair(parameters, 0))
        self.assertEqual(pairRows(parameters), [(volumes[1].GetName(), segmentations[1].GetName())])
        self.delayDisplay("Pairs passed")

    def test_CancelLeavesSceneUnchanged(self) -> None:
        """Cancel mid-run: the process tree stops, no node is added."""
        self.delayDisplay("Cancelling a running job")
        volume, _ = self._obliqueVolume()
        with tempfile.TemporaryDirectory() as folder:
            logic = self._logic(folder)
            logic.getParameterNode()
            before = [slicer.mrmlScene.GetNthNode(i).GetID() for i in range(slicer.mrmlScene.GetNumberOfNodes())]
            logic.extraEnvironment["CONTRACT_STEPS"] = "1000"  # ~50 s unless cancelled
            task = logic.startSegmentation(volume, "contract")
            events = []
            task.progressCallbacks.append(events.append)
            while len(events) < 3 and task.poll():
                time.sleep(0.02)
            task.cancel()
            self.assertEqual(task.wait(timeout=30), TaskState.CANCELLED)
        after = [slicer.mrmlScene.GetNthNode(i).GetID() for i in range(slicer.mrmlScene.GetNumberOfNodes())]
        self.assertEqual(after, before)
        self.assertIsNotNone(task.process.returnCode)
        self.delayDisplay("Cancel passed")
