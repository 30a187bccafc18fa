"""Volume checks and file exchange with the ``pumit`` process, geometry kept exactly.

Coordinate conventions: Slicer nodes store ``IJKToRAS`` (voxel index -> RAS millimetres, optionally
under a parent transform); NRRD/NIfTI files hold LPS geometry as ITK defines it. The conversion is
done by Slicer's storage nodes (vtkITK) on write and read, never by hand here.

Files are written and read with ``vtkMRMLVolumeArchetypeStorageNode`` on nodes that are *not* in the
scene, so exporting an input or reading a result never adds, changes or removes scene nodes.
A volume under a linear transform is exported with the transform hardened into the copy's geometry
(the voxel array is shared, not resampled); non-linear transforms are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk

from PUMITSlicerLib.errors import PUMITSlicerError

#: Geometry tolerance (mm) when checking that a result lies on the input's voxel grid.
GRID_TOLERANCE_MM = 1e-3


def _label(node) -> str:
    return f"'{node.GetName()}'" if node is not None and node.GetName() else "The selected node"


def validateVolume(node, what: str = "input volume") -> slicer.vtkMRMLScalarVolumeNode:
    """Check ``node`` is a single-channel 3D scalar volume usable as model input; return it.

    Raises :class:`PUMITSlicerError` with a message naming the problem: nothing selected, a sequence
    (4D) or vector/multi-channel node, no voxels, a single slice (2D), or a non-linear parent transform.
    """
    if node is None:
        raise PUMITSlicerError(f"Select an {what}.")
    if node.IsA("vtkMRMLSequenceNode") or node.IsA("vtkMRMLSequenceBrowserNode"):
        raise PUMITSlicerError(
            f"{_label(node)} is a sequence (4D series). Select a single 3D volume: one time point of the "
            "sequence (its proxy volume in the Sequences module).")
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise PUMITSlicerError(f"{_label(node)} is a {node.GetClassName()}, not a scalar volume. Select an {what}.")
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise PUMITSlicerError(f"{_label(node)} has no voxel data.")
    components = image.GetNumberOfScalarComponents()
    if components != 1 or node.IsA("vtkMRMLDiffusionTensorVolumeNode"):
        raise PUMITSlicerError(
            f"{_label(node)} has {components} values per voxel (a 4D, color or multi-channel volume). "
            "Select a single-channel 3D volume; for a 4D series, one time point.")
    dims = image.GetDimensions()
    if min(dims) < 2:
        raise PUMITSlicerError(
            f"{_label(node)} is a 2D image ({dims[0]} x {dims[1]} x {dims[2]} voxels). "
            "PUMITSlicer works on 3D volumes: load the whole series.")
    worldIJKToRAS(node)  # refuses non-linear transforms
    return node


def worldIJKToRAS(node) -> vtk.vtkMatrix4x4:
    """``IJKToRAS`` of ``node`` with its parent transforms applied (world RAS); non-linear ones are refused."""
    ijkToRAS = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijkToRAS)
    transformNode = node.GetParentTransformNode()
    if transformNode is None:
        return ijkToRAS
    if not transformNode.IsTransformToWorldLinear():
        raise PUMITSlicerError(
            f"{_label(node)} is under the non-linear transform '{transformNode.GetName()}'. Harden the "
            "transform on the volume (Transforms module) or remove it, then try again.")
    toWorld = vtk.vtkMatrix4x4()
    transformNode.GetMatrixTransformToWorld(toWorld)
    world = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Multiply4x4(toWorld, ijkToRAS, world)
    axes = slicer.util.arrayFromVTKMatrix(world)[:3, :3]
    axes = axes / np.linalg.norm(axes, axis=0)
    if not np.allclose(axes.T @ axes, np.eye(3), atol=1e-4):
        raise PUMITSlicerError(
            f"The transform of {_label(node)} shears the voxel grid, which image files cannot store. "
            "Harden the transform on the volume (Transforms module) first.")
    return world


def writeVolume(node, path: str | Path, *, ijkToRAS: vtk.vtkMatrix4x4 | None = None, labelmap: bool = False) -> Path:
    """Write the voxels of ``node`` to ``path`` (``.nrrd`` uncompressed, ``.nii.gz``, ...) with geometry
    ``ijkToRAS`` (default: the node's world geometry, transforms hardened). The scene is not touched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    copy = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    copy.SetAndObserveImageData(node.GetImageData())  # shared voxels: the writer only reads them
    copy.SetIJKToRASMatrix(ijkToRAS if ijkToRAS is not None else worldIJKToRAS(node))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(not path.name.lower().endswith(".nrrd"))
    if not storage.WriteData(copy):
        raise PUMITSlicerError(f"Could not write {path} (disk full or folder not writable?).")
    return path


def writeArrayAsVolume(array: np.ndarray, path: str | Path, ijkToRAS: vtk.vtkMatrix4x4, *, labelmap: bool = False) -> Path:
    """Write a ``(k, j, i)`` numpy array with geometry ``ijkToRAS`` (RAS) to an image file."""
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    return writeVolume(node, path, ijkToRAS=ijkToRAS, labelmap=labelmap)


def readVolume(path: str | Path, *, labelmap: bool = False) -> slicer.vtkMRMLScalarVolumeNode:
    """Read an image file into a volume node that is *not* added to the scene."""
    path = Path(path)
    if not path.is_file():
        raise PUMITSlicerError(f"The pumit process reported success but wrote no file {path.name}.")
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise PUMITSlicerError(f"Could not read the result file {path.name}.")
    return node


def checkSameGrid(node, expectedIJKToRAS: vtk.vtkMatrix4x4, expectedDimensions: tuple[int, int, int], what: str) -> None:
    """Raise if ``node`` (read from a result file) is not on the expected voxel grid."""
    dims = tuple(node.GetImageData().GetDimensions())
    if dims != tuple(expectedDimensions):
        raise PUMITSlicerError(f"The {what} has {dims} voxels but the input has {tuple(expectedDimensions)}.")
    actual = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(actual)
    a = slicer.util.arrayFromVTKMatrix(actual)
    e = slicer.util.arrayFromVTKMatrix(expectedIJKToRAS)
    if not np.allclose(a, e, atol=GRID_TOLERANCE_MM):
        raise PUMITSlicerError(f"The {what} is not on the input's voxel grid (origin, spacing or directions differ).")


def addVolumeOnInputGrid(scene, imageData: vtk.vtkImageData, inputVolume, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """Add a scalar volume with ``imageData`` on exactly ``inputVolume``'s geometry: the same local
    ``IJKToRAS`` and the same parent transform, so both move together."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(scene.GenerateUniqueName(name))
    ijkToRAS = vtk.vtkMatrix4x4()
    inputVolume.GetIJKToRASMatrix(ijkToRAS)
    node.SetIJKToRASMatrix(ijkToRAS)
    node.SetAndObserveImageData(imageData)
    scene.AddNode(node)
    node.SetAndObserveTransformNodeID(inputVolume.GetTransformNodeID())
    node.CreateDefaultDisplayNodes()
    return node
