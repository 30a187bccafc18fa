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
from PUMITSlicerLib.logic import pythonExecutable

logger = logging.getLogger(__name__)
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
            '<a href="https://github.com/PUMITSlicer/PUMITSlicer/blob/main/docs/slicer.md">user guide</a>.')
        self.parent.acknowledgementText = _(
            "Based on PUMIT / SPAD-Nets by Luo et al.: 'Pre-trained Universal Medical Image Transformer' (AAAI 2024) "
            "and 'Building Universal Foundation Models for Medical Image Analysis with Spatially Adaptive Networks' "
            "(2023); this is an independent implementation. Module layout after Slicer's scripted-module template.")


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
    fineTuneName - name of the fine-tuned model (each run adds a version); modality - the images' modality:
    dataset.json modality for fine-tuning, and the tokenizer's per-modality intensity normalization for reconstruction.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    modelId: str
    device: Annotated[str, Choice(["auto", "GPU", "CPU"])] = "auto"
    overlap: Annotated[float, WithinRange(0.0, 0.9)] = 0.5
    swBatch: Annotated[int, WithinRange(0, 64)] = 0
    tokenizerId: str
    computeErrorMap: bool = True
    reconstructedVolume: vtkMRMLScalarVolumeNode
    fineTuneVolumes: list[vtkMRMLScalarVolumeNode]
    fineTuneSegmentations: list[vtkMRMLSegmentationNode]
    fineTuneName: str
    fineTuneEpochs: Annotated[int, WithinRange(1, 1000)] = 20
    modality: Annotated[str, Choice(["CT", "MRI", "PET", "US", "other"])] = "CT"


#
# Widget
#


class PUMITSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui to the parameter node, starts/cancels jobs and shows their progress."""

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
        self.ui.modelComboBox.currentTextChanged.connect(lambda text: self._setParameter("modelId", text))
        self.ui.tokenizerComboBox.currentTextChanged.connect(lambda text: self._setParameter("tokenizerId", text))
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
        for combo, value in ((self.ui.modelComboBox, p.modelId), (self.ui.tokenizerComboBox, p.tokenizerId)):
            if combo.currentText != value:
                combo.setCurrentText(value)
        self.ui.pairsTableWidget.setRowCount(len(p.fineTuneVolumes))
        for row, (volume, segmentation) in enumerate(zip(p.fineTuneVolumes, p.fineTuneSegmentations)):
            for column, node in enumerate((volume, segmentation)):
                self.ui.pairsTableWidget.setItem(row, column, qt.QTableWidgetItem(node.GetName() if node else "?"))
        running = self._task is not None and self._task.running
        ready = {"segment": bool(p.inputVolume and p.modelId),
                 "reconstruct": bool(p.inputVolume and p.tokenizerId),
                 "finetune": bool(p.fineTuneVolumes and p.modelId and p.fineTuneName)}
        for kind, (buttonName, text) in self.RUNS.items():
            button = getattr(self.ui, buttonName)
            isRunning = running and kind == self._taskKind
            button.text = _("Cancel") if isRunning else text
            button.enabled = isRunning or (not running and ready[kind])

    # -- models --------------------------------------------------------------------------------------

    def onRefreshModels(self) -> None:
        """Fill the model and tokenizer lists from the local model store (the text stays editable)."""
        if not self._ensureDependencies(training=False):
            return
        with self._errorsShown(_("Failed to list the models.")):
            for combo, modelType, name in ((self.ui.modelComboBox, "segmentation", "modelId"),
                                           (self.ui.tokenizerComboBox, "tokenizer", "tokenizerId")):
                current = getattr(self._parameterNode, name)
                ids = [m["id"] for m in self.logic.listModels(modelType)]
                combo.clear()
                combo.addItems(ids)
                combo.setCurrentText(current or (ids[-1] if ids else ""))

    def onInstallModel(self) -> None:
        """Copy a model folder chosen by the user into the local model store (no download)."""
        path = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Model folder (config.json + model.safetensors)"))
        if not path or not self._ensureDependencies(training=False):
            return
        with self._errorsShown(_("Failed to install the model.")):
            entry = self.logic.installModel(path)
            self.onRefreshModels()
            slicer.util.showStatusMessage(_("Installed model {id}").format(id=entry.get("id")), 5000)

    # -- fine-tuning pairs ---------------------------------------------------------------------------

    def onAddPair(self) -> None:
        volume = self.ui.fineTuneVolumeSelector.currentNode()
        segmentation = self.ui.fineTuneSegmentationSelector.currentNode()
        if volume is None or segmentation is None:
            slicer.util.errorDisplay(_("Select a volume and its segmentation, then press Add."))
            return
        p = self._parameterNode
        p.fineTuneVolumes = p.fineTuneVolumes + [volume]
        p.fineTuneSegmentations = p.fineTuneSegmentations + [segmentation]

    def onRemovePair(self) -> None:
        row = self.ui.pairsTableWidget.currentRow()
        p = self._parameterNode
        if 0 <= row < len(p.fineTuneVolumes):
            p.fineTuneVolumes = [n for i, n in enumerate(p.fineTuneVolumes) if i != row]
            p.fineTuneSegmentations = [n for i, n in enumerate(p.fineTuneSegmentations) if i != row]

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
        """Ask before downloading anything; True when torch and the requirements are installed."""
        from PUMITSlicerLib.dependencies import ensureDependencies

        try:
            return ensureDependencies(slicer.util.confirmOkCancelDisplay, training=training)
        except Exception as e:
            logger.exception("PUMITSlicer: installing dependencies failed")
            slicer.util.errorDisplay(_("Failed to install the Python packages PUMITSlicer needs:") + f"\n\n{e}",
                                     detailedText=traceback.format_exc(), windowTitle=_("PUMIT"))
            return False

    def onRunButton(self, kind: str) -> None:
        """Apply: start the job of ``kind``; while it runs the same button cancels it."""
        if self._task is not None and self._task.running:
            self._task.cancel()
            self.ui.statusLabel.text = _("Cancelling...")
            return
        if not self._ensureDependencies(training=kind == "finetune"):
            return
        start = {"segment": self.logic.segment, "reconstruct": self.logic.reconstruct, "finetune": self.logic.fineTune}[kind]
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
        self.ui.statusLabel.text = _("{name} starting...").format(name=task.name)
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
            self.ui.statusLabel.text = _("{name} done in {seconds:.0f} s.").format(name=task.name, seconds=task.elapsedSeconds)
            if self._taskKind == "segment":
                task.result.CreateClosedSurfaceRepresentation()
            elif self._taskKind == "reconstruct" and self._parameterNode:
                showSideBySide(self._parameterNode.inputVolume, task.result[0])
            elif self._taskKind == "finetune":
                if self.ui.modelComboBox.findText(task.result) < 0:
                    self.ui.modelComboBox.addItem(task.result)
                self.ui.modelComboBox.setCurrentText(task.result)
        elif task.state == TaskState.CANCELLED:
            self.ui.statusLabel.text = _("Cancelled; nothing was changed.")
        else:
            self.ui.statusLabel.text = _("Failed; nothing was changed.")
            slicer.util.errorDisplay(task.errorMessage, windowTitle=_("PUMIT"))
        self._updateGui()


def showSideBySide(leftVolume, rightVolume) -> None:
    """Side-by-side layout: ``leftVolume`` in the red view, ``rightVolume`` in the yellow view, linked."""
    layoutManager = slicer.app.layoutManager()
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    for viewName, volume in (("Red", leftVolume), ("Yellow", rightVolume)):
        compositeNode = layoutManager.sliceWidget(viewName).mrmlSliceCompositeNode()
        compositeNode.SetBackgroundVolumeID(volume.GetID() if volume else None)
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
        """Segment ``parameters.inputVolume``; on success ``parameters.outputSegmentation`` is the result."""
        task = self.startSegmentation(
            parameters.inputVolume, parameters.modelId, outputSegmentation=parameters.outputSegmentation,
            device=parameters.device, overlap=parameters.overlap, swBatch=parameters.swBatch)
        task.finishedCallbacks.append(lambda t: _ifSucceeded(t, lambda: setattr(parameters, "outputSegmentation", t.result)))
        return task

    def reconstruct(self, parameters: PUMITSlicerParameterNode) -> Task:
        """Reconstruct ``parameters.inputVolume``; on success ``parameters.reconstructedVolume`` is the result."""
        task = self.startReconstruction(parameters.inputVolume, parameters.tokenizerId, device=parameters.device,
                                        errorMap=parameters.computeErrorMap, modality=parameters.modality)
        task.finishedCallbacks.append(lambda t: _ifSucceeded(t, lambda: setattr(parameters, "reconstructedVolume", t.result[0])))
        return task

    def fineTune(self, parameters: PUMITSlicerParameterNode) -> Task:
        """Fine-tune ``parameters.modelId`` on the selected pairs; on success the new version is selected."""
        volumes, segmentations = parameters.fineTuneVolumes, parameters.fineTuneSegmentations
        if len(volumes) != len(segmentations):
            raise PUMITSlicerError("Each training volume needs exactly one segmentation.")
        task = self.startFineTuning(list(zip(volumes, segmentations)), parameters.modelId, parameters.fineTuneName,
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
