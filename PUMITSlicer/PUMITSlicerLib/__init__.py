"""GUI-free code of the PUMITSlicer module (no Qt): importable in Slicer and under plain Python with
PyPI ``slicer-core``. Nothing here imports torch or pumit; the work happens in a ``pumit`` process."""

from PUMITSlicerLib.errors import PUMITSlicerError
from PUMITSlicerLib.logic import DEVICES, PUMITLogic, formatProgress
from PUMITSlicerLib.process import ProgressEvent
from PUMITSlicerLib.tasks import Task, TaskState

__all__ = ["DEVICES", "PUMITLogic", "PUMITSlicerError", "ProgressEvent", "Task", "TaskState", "formatProgress"]
