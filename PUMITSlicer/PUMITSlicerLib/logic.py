"""GUI-free logic of the PUMITSlicer module: segment, reconstruct and fine-tune through the ``pumit`` CLI.

Every heavy step runs in a separate process (``PythonSlicer -m pumit.cli.main ...`` in Slicer,
the current interpreter elsewhere), so torch is never imported into Slicer and a crash or an
out-of-memory error cannot take Slicer down. Each ``start*`` method

1. checks its inputs and raises :class:`PUMITSlicerError` with a clear message (nothing started),
2. writes the inputs to a private temporary folder (uncompressed NRRD, geometry kept),
3. starts the command and returns a :class:`Task` to poll (a ``qt.QTimer`` in Slicer) or cancel,
4. on success imports the results into the scene on the main thread, all or nothing.

Coordinates: Slicer works in RAS, the files exchanged with pumit are in LPS (ITK); the storage
nodes convert. Results are placed on the input volume's own voxel grid and parent transform.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import slicer
import vtk

from PUMITSlicerLib.dataset import TrainingPair, writeTrainingDataset
from PUMITSlicerLib.errors import PUMITSlicerError, errorDetail
from PUMITSlicerLib.process import ProgressEvent
from PUMITSlicerLib.results import inputNotes, placeNextToInput, reconstructionMetrics
from PUMITSlicerLib.segmentations import importLabelmap, readLabelSidecar, sidecarPath
from PUMITSlicerLib.tasks import Task
from PUMITSlicerLib.volumes import (
    addVolumeOnInputGrid,
    checkSameGrid,
    readVolume,
    validateVolume,
    worldIJKToRAS,
    writeVolume,
)

logger = logging.getLogger(__name__)

#: Device choices shown to the user -> ``--device`` values of the CLI.
DEVICES: dict[str, str] = {"auto": "auto", "GPU": "cuda", "CPU": "cpu"}
#: Environment variable naming the Python interpreter that runs pumit (default: PythonSlicer in Slicer).
PYTHON_ENV = "PUMIT_SLICER_PYTHON"
#: Environment variable naming a folder that holds the ``pumit`` package (default: the bundled copy).
PACKAGE_DIR_ENV = "PUMIT_PACKAGE_DIR"
_CLI_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
_MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def inSlicerApplication() -> bool:
    """True inside the Slicer desktop application (``slicer.app`` exists)."""
    return getattr(slicer, "app", None) is not None


def pythonExecutable() -> str:
    """Interpreter for the pumit process: ``$PUMIT_SLICER_PYTHON``, else PythonSlicer in Slicer,
    else the current interpreter (tests, scripts)."""
    override = os.environ.get(PYTHON_ENV, "").strip()
    if override:
        return override
    if inSlicerApplication():
        path = shutil.which("PythonSlicer")
        if not path:
            raise PUMITSlicerError("The PythonSlicer executable was not found next to Slicer; reinstall Slicer.")
        return path
    return sys.executable


def bundledPackageDir() -> Path | None:
    """Folder holding the ``pumit`` package shipped with the extension: ``$PUMIT_PACKAGE_DIR``, the
    installed extension's ``PUMITSlicerBundle/``, or the source tree's ``training/``."""
    moduleDir = Path(__file__).resolve().parent.parent
    candidates = [os.environ.get(PACKAGE_DIR_ENV, ""), moduleDir / "PUMITSlicerBundle", moduleDir.parent / "training"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "pumit" / "__init__.py").is_file():
            return Path(candidate)
    return None


def formatProgress(event: ProgressEvent) -> str:
    """One line for the status label: the message, plus the epoch and Dice when the message lacks them
    (e.g. ``"training, epoch 3/20, Dice 0.812"``)."""
    text = event.message or event.stage
    data = event.data
    parts = [text]
    if data.get("epoch") is not None and "epoch" not in text.lower():
        total = data.get("epochs")
        parts.append(f"epoch {data['epoch']}/{total}" if total else f"epoch {data['epoch']}")
    if isinstance(data.get("dice"), (int, float)) and "dice" not in text.lower():
        parts.append(f"Dice {data['dice']:.3f}")
    return ", ".join(parts)


class PUMITLogic:
    """Starts and tracks pumit jobs on a MRML scene (``slicer.mrmlScene`` unless given).

    ``pumitCommand`` may be set to another command prefix (default: ``[python, -m, pumit.cli.main]``)
    and ``extraEnvironment`` adds variables to the child process (e.g. ``PUMIT_HOME``).
    """

    def __init__(self, scene=None) -> None:
        self._scene = scene
        self.pumitCommand: list[str] | None = None
        self.extraEnvironment: dict[str, str] = {}
        self.currentTask: Task | None = None

    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    # -- process plumbing ----------------------------------------------------------------------------

    def command(self) -> list[str]:
        """Command prefix that runs the pumit CLI."""
        return list(self.pumitCommand) if self.pumitCommand else [pythonExecutable(), "-m", "pumit.cli.main"]

    def environment(self) -> dict[str, str]:
        """Environment of the pumit process: Slicer's, the bundled package first on ``PYTHONPATH``,
        unbuffered UTF-8 output, plus :attr:`extraEnvironment`."""
        env = dict(os.environ)
        package = bundledPackageDir()
        if package is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        env.update(self.extraEnvironment)
        return env

    @staticmethod
    def deviceArgument(device: str) -> str:
        """``--device`` value for a user choice (``auto``/``GPU``/``CPU``) or a CLI value (``cuda:1``)."""
        value = DEVICES.get(device, str(device).strip().lower())
        if not _CLI_DEVICE_RE.match(value):
            raise PUMITSlicerError(f"Unknown device '{device}': choose auto, GPU or CPU.")
        return value

    def _temporaryRoot(self) -> str:
        if inSlicerApplication():
            return str(slicer.app.temporaryPath)
        return tempfile.gettempdir()

    def _workDir(self, kind: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"PUMITSlicer-{kind}-", dir=self._temporaryRoot()))

    def _checkIdle(self) -> None:
        if self.currentTask is not None and self.currentTask.running:
            raise PUMITSlicerError(f"{self.currentTask.name} is still running: wait for it or cancel it first.")

    def _launch(self, name: str, arguments: list[str], workDir: Path, onSuccess) -> Task:
        try:
            task = Task(name, self.command() + arguments, workDir=workDir, onSuccess=onSuccess, env=self.environment())
        except BaseException:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        self.currentTask = task
        return task.start()

    def _prepare(self, kind: str, write) -> Path:
        """Make a work folder and run ``write(folder)``; the folder is removed if that fails."""
        workDir = self._workDir(kind)
        try:
            write(workDir)
        except BaseException:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        return workDir

    def _exportInput(self, kind: str, inputVolume) -> tuple[Path, vtk.vtkMatrix4x4, tuple[int, int, int]]:
        """New work folder holding ``input.nrrd``: the input with its world geometry (transforms
        hardened). Returns the folder, that ``IJKToRAS`` and the voxel dimensions, which every result
        must match."""
        geometry = worldIJKToRAS(inputVolume)
        dims = tuple(inputVolume.GetImageData().GetDimensions())
        workDir = self._prepare(kind, lambda d: writeVolume(inputVolume, d / "input.nrrd", ijkToRAS=geometry))
        return workDir, geometry, dims

    @staticmethod
    def _readResult(path: Path, geometry, dims, what: str, *, labelmap: bool = False):
        """Read a result file (not into the scene) and check it is on the input's grid."""
        node = readVolume(path, labelmap=labelmap)
        checkSameGrid(node, geometry, dims, what)
        return node

    def _requireInScene(self, node, what: str) -> None:
        if node is None or node.GetScene() is not self.scene:
            raise PUMITSlicerError(f"The {what} was removed from the scene while pumit was running; nothing was added.")

    # -- segmentation --------------------------------------------------------------------------------

    def startSegmentation(
        self,
        inputVolume,
        modelId: str,
        *,
        outputSegmentation=None,
        device: str = "auto",
        overlap: float = 0.25,
        swBatch: int = 0,
    ) -> Task:
        """Segment ``inputVolume`` with model ``modelId`` (id, name or path). On success the task's
        ``result`` is the segmentation node: ``outputSegmentation`` with its segments replaced, or a new one."""
        self._checkIdle()
        validateVolume(inputVolume)
        modelId = (modelId or "").strip()
        if not modelId:
            raise PUMITSlicerError("Select a segmentation model (or type a model id or path).")
        if outputSegmentation is not None and not outputSegmentation.IsA("vtkMRMLSegmentationNode"):
            raise PUMITSlicerError("The output must be a segmentation node.")
        if not 0.0 <= overlap < 1.0:
            raise PUMITSlicerError(f"Overlap must be in [0, 1), got {overlap}.")
        deviceArg = self.deviceArgument(device)
        workDir, geometry, dims = self._exportInput("segment", inputVolume)
        output = workDir / "segmentation.nrrd"
        arguments = ["segment", str(workDir / "input.nrrd"), "-o", str(output), "--model", modelId,
                     "--device", deviceArg, "--overlap", f"{overlap:g}", "--progress", "jsonl"]
        if swBatch > 0:
            arguments += ["--sw-batch", str(int(swBatch))]

        def onSuccess(task: Task):
            labelNode = self._readResult(output, geometry, dims, "segmentation result", labelmap=True)
            model, labels = readLabelSidecar(sidecarPath(output))
            task.details["input_notes"] = inputNotes(sidecarPath(output))  # shown with the result (status line)
            self._requireInScene(inputVolume, "input volume")
            target = outputSegmentation if outputSegmentation is not None and outputSegmentation.GetScene() is self.scene else None
            node = importLabelmap(self.scene, labelNode, labels, inputVolume, outputSegmentation=target,
                                  modelId=model or modelId)
            if target is None:
                placeNextToInput(inputVolume, node)
            return node

        return self._launch("Segmentation", arguments, workDir, onSuccess)

    # -- reconstruction ------------------------------------------------------------------------------

    def startReconstruction(self, inputVolume, tokenizerId: str, *, device: str = "auto", errorMap: bool = True,
                            modality: str | None = None) -> Task:
        """Reconstruct ``inputVolume`` through tokenizer ``tokenizerId``. On success the task's ``result``
        is ``(reconstruction, errorMap or None)``: new scalar volumes on the input's grid and transform.
        ``modality`` (``CT``, ``MRI``, ``PET``, ``US``; ``other``/None: the tokenizer's default) selects the
        intensity normalization the tokenizer was trained with for that modality (the exported NRRD cannot say)."""
        self._checkIdle()
        validateVolume(inputVolume)
        tokenizerId = (tokenizerId or "").strip()
        if not tokenizerId:
            raise PUMITSlicerError("Select a tokenizer model (or type a model id or path).")
        deviceArg = self.deviceArgument(device)
        workDir, geometry, dims = self._exportInput("reconstruct", inputVolume)
        output, errorOutput = workDir / "reconstruction.nrrd", workDir / "error.nrrd"
        arguments = ["reconstruct", str(workDir / "input.nrrd"), "-o", str(output), "--tokenizer", tokenizerId,
                     "--device", deviceArg, "--progress", "jsonl"]
        if errorMap:
            arguments += ["--error-map", str(errorOutput)]
        if modality and modality != "other":
            arguments += ["--modality", modality.lower()]

        def onSuccess(task: Task):
            results = [self._readResult(path, geometry, dims, what) for path, what in
                       ((output, "reconstruction"), (errorOutput, "error map"))[: 2 if errorMap else 1]]
            task.details["metrics"] = reconstructionMetrics(task.lastProgress.data if task.lastProgress else None, output)
            self._requireInScene(inputVolume, "input volume")
            added = []
            try:
                for node, suffix in zip(results, ("reconstruction", "reconstruction error")):
                    added.append(addVolumeOnInputGrid(self.scene, node.GetImageData(), inputVolume,
                                                      f"{inputVolume.GetName()} {suffix}"))
                _matchDisplay(inputVolume, added[0])
                if len(added) > 1:
                    _showAsHeatMap(added[1])
                for node in added:
                    placeNextToInput(inputVolume, node)
            except Exception:
                for node in added:
                    self.scene.RemoveNode(node)
                raise
            return added[0], (added[1] if len(added) > 1 else None)

        return self._launch("Reconstruction", arguments, workDir, onSuccess)

    # -- fine-tuning ---------------------------------------------------------------------------------

    def startFineTuning(
        self,
        pairs: Sequence[TrainingPair],
        baseModelId: str,
        newName: str,
        *,
        epochs: int = 20,
        device: str = "auto",
        modality: str = "CT",
    ) -> Task:
        """Fine-tune ``baseModelId`` on the annotated ``pairs`` (volume, segmentation) and install the
        result as the next version of ``newName`` in the model store. The task's ``result`` is the new
        model id (``NAME-vX.Y.Z``). The user's segmentations are only read."""
        self._checkIdle()
        baseModelId = (baseModelId or "").strip()
        if not baseModelId:
            raise PUMITSlicerError("Select the model to start fine-tuning from.")
        newName = (newName or "").strip().lower()
        if not _MODEL_NAME_RE.match(newName):
            raise PUMITSlicerError(
                "Name the fine-tuned model with lower-case letters, digits, '.', '_' or '-' (e.g. 'my-spine').")
        if int(epochs) < 1:
            raise PUMITSlicerError("Fine-tuning needs at least one epoch.")
        deviceArg = self.deviceArgument(device)
        workDir = self._prepare("finetune", lambda d: writeTrainingDataset(pairs, d / "dataset", modality=modality, name=newName))
        arguments = ["train", "segment", "--data", str(workDir / "dataset"), "--base-model", baseModelId,
                     "--name", newName, "--epochs", str(int(epochs)), "--device", deviceArg, "--progress", "jsonl"]

        def onSuccess(task: Task) -> str:
            modelId = task.lastProgress.data.get("model_id") if task.lastProgress else None
            if not modelId:
                raise PUMITSlicerError("Fine-tuning finished but pumit reported no new model id.")
            return str(modelId)

        return self._launch("Fine-tuning", arguments, workDir, onSuccess)

    # -- model store ---------------------------------------------------------------------------------

    def _runQuick(self, arguments: list[str], what: str, timeout: float) -> str:
        try:
            done = subprocess.run(self.command() + arguments, capture_output=True, text=True, encoding="utf-8",
                                  errors="replace", env=self.environment(), timeout=timeout, stdin=subprocess.DEVNULL,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PUMITSlicerError(f"Could not {what}: {e}") from e
        if done.returncode != 0:
            detail = errorDetail(done.stderr.splitlines()) or f"exit code {done.returncode}"
            raise PUMITSlicerError(f"Could not {what}: {detail}")
        return done.stdout

    def listModels(self, modelType: str | None = None, *, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Models of the local store (``pumit models list --json``), optionally only one ``model_type``
        (``segmentation``, ``tokenizer``, ...). Blocking: a few seconds."""
        text = self._runQuick(["models", "list", "--json"], "list the installed models", timeout)
        try:
            models = json.loads(text)
        except ValueError as e:
            raise PUMITSlicerError(f"Could not list the installed models: unreadable answer ({e}).") from e
        return [m for m in models if isinstance(m, dict) and (modelType is None or m.get("model_type") == modelType)]

    def installModel(self, path: str, *, timeout: float = 600.0) -> dict[str, Any]:
        """Copy a local model (folder, ``.safetensors`` or archive) into the store; returns its entry."""
        text = self._runQuick(["models", "install", str(path), "--json"], f"install the model {path}", timeout)
        return json.loads(text)

    def importPublishedCheckpoint(self, path: str, *, name: str | None = None, timeout: float = 1800.0) -> dict[str, Any]:
        """Convert and install a published PUMIT checkpoint (``pumit-b.ckpt``, ``simple-soft.ckpt``) the user
        downloaded by hand (``pumit models import-pumit --json``): read without executing pickled code, loaded
        strictly, verified, stored as safetensors with its provenance. Returns the new store entry; a refused
        or unreadable file raises :class:`PUMITSlicerError` with pumit's one-line reason. Blocking: up to a
        minute for ViT-B."""
        arguments = ["models", "import-pumit", str(path), "--json"] + (["--name", name] if name else [])
        text = self._runQuick(arguments, f"import the checkpoint {Path(path).name}", timeout)
        try:
            return json.loads(text)
        except ValueError as e:
            raise PUMITSlicerError(f"Could not import {Path(path).name}: unreadable answer ({e}).") from e


def _matchDisplay(reference, node) -> None:
    """Show ``node`` with the window/level and colors of ``reference`` so both compare directly."""
    source, target = reference.GetDisplayNode(), node.GetDisplayNode()
    if source is None or target is None:
        return
    target.SetAutoWindowLevel(False)
    target.SetWindowLevel(source.GetWindow(), source.GetLevel())
    if source.GetColorNodeID():
        target.SetAndObserveColorNodeID(source.GetColorNodeID())


def _showAsHeatMap(node) -> None:
    display = node.GetDisplayNode()
    if display is None:
        return
    for colorId in ("vtkMRMLColorTableNodeInferno", "vtkMRMLColorTableNodeRainbow"):
        if node.GetScene() is not None and node.GetScene().GetNodeByID(colorId) is not None:
            display.SetAndObserveColorNodeID(colorId)
            break

