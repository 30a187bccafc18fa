"""Shared helpers of the PUMITSlicer tests (imported by conftest.py and the test modules).

PyPI ``slicer-core`` provides MRML and the module logics but not the Slicer application.
:class:`SlicerSession` builds what the application would: a ``vtkMRMLScene``, the application logic,
and the colors, volumes and segmentations logics registered as ``slicer.modules.*.logic()``. Only the
Qt-side Python modules missing from slicer-core are replaced, by the small stand-ins in ``stubs/``.
(A uniquely named module, not ``conftest``, so that it cannot clash with other test suites.)
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO / "Testing" / "Data" / "tptbox"
#: Extracts of Slicer's terminology dictionaries (the slicer-core wheel ships the logic, not the JSON files).
TERMINOLOGY_DATA = REPO / "Testing" / "Data" / "terminology"
STANDIN = HERE / "pumit_standin.py"
# The stand-ins must be on sys.path before the first `import slicer` (it extends its namespace then).
sys.path.insert(0, str(HERE / "stubs"))
sys.path.insert(0, str(REPO / "PUMITSlicer"))

import numpy as np
import slicer
import vtk

vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_WARNING)
vtk.vtkObject.GlobalWarningDisplayOff()


class SlicerSession:
    """A fresh scene and the logics bound to it (kept referenced: a collected logic breaks the scene)."""

    def __init__(self) -> None:
        self.scene = slicer.vtkMRMLScene()
        self.app = slicer.vtkSlicerApplicationLogic()
        self.app.SetMRMLScene(self.scene)
        self.colors = self._logic(slicer.vtkSlicerColorLogic(), "Colors")
        self.app.SetColorLogic(self.colors)
        self.volumes = self._logic(slicer.vtkSlicerVolumesLogic(), "Volumes")
        self.segmentations = self._logic(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations")
        self.terminologies = self._logic(slicer.vtkSlicerTerminologiesModuleLogic(), "Terminologies")
        for path in sorted(TERMINOLOGY_DATA.glob("*.term.json")):
            assert self.terminologies.LoadTerminologyFromFile(str(path)), path

    def _logic(self, logic, name: str):
        logic.SetMRMLApplicationLogic(self.app)
        logic.SetMRMLScene(self.scene)
        self.app.SetModuleLogic(name, logic)
        return logic

    def install(self) -> None:
        slicer.mrmlScene = self.scene
        slicer.modules = types.SimpleNamespace(
            volumes=types.SimpleNamespace(logic=lambda: self.volumes),
            segmentations=types.SimpleNamespace(logic=lambda: self.segmentations),
            colors=types.SimpleNamespace(logic=lambda: self.colors),
            terminologies=types.SimpleNamespace(logic=lambda: self.terminologies),
        )

    def nodeIds(self) -> list[str]:
        return [self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())]

    def loadVolume(self, path: Path, name: str | None = None, labelmap: bool = False):
        """Load a file like Slicer's Add Data (the volumes logic, real readers)."""
        node = self.volumes.AddArchetypeVolume(str(path), name or path.name.split(".")[0], 1 if labelmap else 0)
        assert node is not None, f"could not load {path}"
        return node


#: Command prefix of the real pumit CLI for the end-to-end tests; ``PUMIT_TEST_CLI`` (space-separated)
#: replaces it, e.g. to test an installed ``pumit`` executable.
PUMIT_CLI = os.environ.get("PUMIT_TEST_CLI", "").split() or [sys.executable, "-m", "pumit.cli.main"]


@functools.lru_cache(maxsize=1)
def cliMissing() -> str:
    """Why the real pumit CLI cannot run the extension's commands ("" when it can)."""
    try:
        done = subprocess.run(PUMIT_CLI + ["segment", "--help"], capture_output=True, text=True, timeout=300, cwd=str(REPO),
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the pumit CLI did not start: {e}"
    if done.returncode != 0 or "--progress" not in done.stdout:
        lines = done.stderr.strip().splitlines()
        return f"the pumit CLI has no working 'segment' command yet ({lines[-1] if lines else done.returncode})"
    return ""


def alive(pid: int) -> bool:
    """A process exists and is not a zombie (Linux /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def rotation(degrees: float, axis: tuple[float, float, float]) -> np.ndarray:
    """4x4 rotation matrix about ``axis`` through the origin."""
    t = vtk.vtkTransform()
    t.RotateWXYZ(degrees, *axis)
    return slicer.util.arrayFromVTKMatrix(t.GetMatrix())


def ijkToRAS(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def rasCentroid(mask: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """RAS position of the centroid of a ``(k, j, i)`` mask under ``IJKToRAS`` ``matrix``."""
    kji = np.argwhere(mask).mean(axis=0)
    return (matrix @ np.array([kji[2], kji[1], kji[0], 1.0]))[:3]


#: tptbox sub-region labels: 49/50 vertebral body, 41-48 posterior elements (arch, processes, facets).
GROUPS = {"vertebral body": (49, 50), "posterior elements": tuple(range(41, 49))}


def annotatedCase(session: SlicerSession, image: str, mask: str, name: str, order: list[str]):
    """A volume and a segmentation made from a real tptbox mask, segments added in ``order``."""
    volume = session.loadVolume(DATA / image, name)
    labelmap = session.loadVolume(DATA / mask, f"{name}-mask", labelmap=True)
    labels = slicer.util.arrayFromVolume(labelmap)
    segmentation = session.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    for segmentName in order:
        segmentId = segmentation.GetSegmentation().AddEmptySegment("", segmentName)
        slicer.util.updateSegmentBinaryLabelmapFromArray(np.isin(labels, GROUPS[segmentName]).astype(np.uint8),
                                                         segmentation, segmentId, volume)
    session.scene.RemoveNode(labelmap)
    return volume, segmentation


def twoAnnotatedCases(session: SlicerSession):
    """The tptbox CT and MRI with 'vertebral body' / 'posterior elements' segments, in different orders."""
    return [annotatedCase(session, "sub-ct_label-22_ct.nii.gz", "sub-ct_seg-subreg_label-22_msk.nii.gz", "ct",
                          ["vertebral body", "posterior elements"]),
            annotatedCase(session, "sub-mri_label-6_T2w.nii.gz", "sub-mri_seg-subreg_label-6_msk.nii.gz", "mri",
                          ["posterior elements", "vertebral body"])]
