"""A background job: one ``pumit`` run plus what to do with its output once it succeeded.

A :class:`Task` owns a temporary folder and a :class:`~PUMITSlicerLib.process.CLIProcess`. Its
:meth:`Task.poll` runs on Slicer's main thread (a ``qt.QTimer`` in the widget, a loop in tests):
it forwards progress, and when the process has ended it either calls the ``onSuccess`` function
(which imports results into the MRML scene, all or nothing) or records a clear error message.
The temporary folder is removed in every case. A cancelled or failed task changes nothing in the scene.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PUMITSlicerLib.errors import PUMITSlicerError, describeExitCode, errorDetail
from PUMITSlicerLib.process import CLIProcess, ProgressEvent

logger = logging.getLogger(__name__)

#: Set to 1 to keep each task's temporary folder (inputs written for the CLI, raw outputs) for debugging.
KEEP_TEMP_ENV = "PUMIT_SLICER_KEEP_TEMP"


class TaskState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


class Task:
    """One CLI run with progress callbacks, cancel, and a success handler run on the main thread.

    ``onSuccess(task)`` is called once after exit code 0 and returns the task's :attr:`result`; it
    raises :class:`PUMITSlicerError` (or any exception) to mark the task failed, and must then leave
    the scene as it was.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        workDir: Path,
        onSuccess: Callable[[Task], Any],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.workDir = Path(workDir)
        self.process = CLIProcess(args, env=env, cwd=str(self.workDir))
        self._onSuccess = onSuccess
        self.state = TaskState.PENDING
        self.result: Any = None
        self.errorMessage = ""
        self.lastProgress: ProgressEvent | None = None
        #: Messages of the progress events (the last 200): where pumit says which device it runs on.
        self.progressMessages: deque[str] = deque(maxlen=200)
        #: What ``onSuccess`` learnt besides the result (e.g. reconstruction ``metrics``).
        self.details: dict[str, Any] = {}
        self.stderrTail: deque[str] = deque(maxlen=200)
        self.progressCallbacks: list[Callable[[ProgressEvent], None]] = []
        self.finishedCallbacks: list[Callable[[Task], None]] = []
        self.startTime = 0.0
        self.endTime = 0.0
        self._startError = ""

    def __repr__(self) -> str:
        return f"Task({self.name!r}, state={self.state.value})"

    @property
    def running(self) -> bool:
        return self.state == TaskState.RUNNING

    @property
    def elapsedSeconds(self) -> float:
        return (self.endTime or time.monotonic()) - self.startTime if self.startTime else 0.0

    def start(self) -> Task:
        """Start the process. If it cannot start, the first :meth:`poll` finishes the task as FAILED,
        so callbacks added after ``start`` are still called."""
        if self.state != TaskState.PENDING:
            raise RuntimeError(f"{self!r} was already started")
        self.state = TaskState.RUNNING
        self.startTime = time.monotonic()
        try:
            self.process.start()
        except OSError as e:
            self._startError = f"Cannot start the pumit process ({self.process.args[0]}): {e}"
        return self

    def cancel(self) -> None:
        """Request cancellation; the task becomes CANCELLED once the process tree is gone (see :meth:`poll`)."""
        if self.running and not self._startError:
            logger.info("Cancelling %s", self.name)
            self.process.cancel()

    def poll(self) -> bool:
        """Forward new output; finish the task when the process has ended. Returns True while running."""
        if self.state != TaskState.RUNNING:
            return False
        if self._startError:
            self._finish(TaskState.FAILED, self._startError)
            return False
        for line in self.process.drain():
            if line.progress is not None:
                self.lastProgress = line.progress
                self.progressMessages.append(line.progress.message or "")
                for callback in list(self.progressCallbacks):
                    callback(line.progress)
            elif line.stream == "stderr":  # library chatter; its tail is logged if the run fails
                self.stderrTail.append(line.text)
                logger.debug("[pumit] %s", line.text)
            elif line.text.strip():
                logger.info("[pumit] %s", line.text)
        if self.process.finished:
            self._complete()
        return self.running

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> TaskState:
        """Poll until done (blocking; for tests and scripts). On timeout the task is cancelled and
        ``TimeoutError`` is raised once its process tree is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                while self.poll():
                    time.sleep(interval)
                raise TimeoutError(f"{self.name} did not finish within {timeout} s")
            time.sleep(interval)
        return self.state

    # -- completion ----------------------------------------------------------------------------------

    def _complete(self) -> None:
        code = self.process.returnCode
        if self.process.cancelRequested:
            self._finish(TaskState.CANCELLED, "Cancelled.")
        elif code != 0:
            self._finish(TaskState.FAILED, self._failureMessage(code))
        else:
            try:
                self.result = self._onSuccess(self)
            except PUMITSlicerError as e:
                self._finish(TaskState.FAILED, str(e))
            except Exception as e:  # a bug in the import: report it, keep Slicer usable
                logger.exception("%s: importing the results failed", self.name)
                self._finish(TaskState.FAILED, f"Importing the results failed: {e}")
            else:
                self._finish(TaskState.SUCCEEDED, "")

    def _failureMessage(self, code: int) -> str:
        detail = errorDetail(list(self.stderrTail))
        text = f"{self.name} failed. {describeExitCode(code)}"
        if detail:
            text += f": {detail}"
        return f"{text} (exit code {code})."

    def _finish(self, state: TaskState, message: str) -> None:
        self.state = state
        self.errorMessage = message
        self.endTime = time.monotonic()
        if state == TaskState.FAILED:
            tail = list(self.stderrTail)[-20:]
            logger.error("%s%s", message, "".join(f"\n  [pumit] {line}" for line in tail))
        else:
            logger.info("%s %s in %.1f s", self.name, state.value, self.elapsedSeconds)
        if os.environ.get(KEEP_TEMP_ENV, "") in ("", "0"):
            shutil.rmtree(self.workDir, ignore_errors=True)
        else:
            logger.info("Kept temporary folder %s", self.workDir)
        for callback in list(self.finishedCallbacks):
            callback(self)
