"""Run a command in a separate process group and read its JSONL progress without blocking Slicer.

The ``pumit`` command prints one JSON object per stdout line with ``--progress jsonl``
(``{"stage": str, "fraction": 0..1, "message": str, ...}``) and, on failure, one line
``pumit: error: MESSAGE`` on stderr and a non-zero exit code.

Two background threads read stdout and stderr into a queue; :meth:`CLIProcess.drain` empties the
queue on the caller's (main) thread. In Slicer a ``qt.QTimer`` calls it; tests call it directly.
Nothing here touches MRML or Qt.

Cancelling terminates the whole process tree: the process is started in its own session / process
group (POSIX) or process group (Windows), gets SIGTERM first (the pumit CLI then removes partial
outputs and exits with code 130) and SIGKILL after a grace period.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL of a cancelled process group.
KILL_GRACE_SECONDS = 3.0
#: Seconds to wait, after the main process exited, for grandchildren to close the output pipes.
PIPE_CLOSE_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class ProgressEvent:
    """One JSONL progress line: ``stage``, ``fraction`` (0..1), ``message`` and all keys in ``data``."""

    stage: str
    fraction: float
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fromLine(cls, line: str) -> ProgressEvent | None:
        """Parse a stdout line; ``None`` if it is not a JSON object with a ``stage``."""
        text = line.strip()
        if not text.startswith("{"):
            return None
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict) or "stage" not in obj:
            return None
        try:
            fraction = min(max(float(obj.get("fraction", 0.0)), 0.0), 1.0)
        except (TypeError, ValueError):
            fraction = 0.0
        return cls(str(obj["stage"]), fraction, str(obj.get("message", "")), obj)


@dataclass(frozen=True)
class OutputLine:
    """A line read from the process: ``stream`` is ``"stdout"`` or ``"stderr"``; ``progress`` is set for JSONL."""

    stream: str
    text: str
    progress: ProgressEvent | None = None


class CLIProcess:
    """One command line run in its own process group, with non-blocking output reading.

    Usage: :meth:`start`, then call :meth:`drain` periodically until :attr:`finished`;
    :meth:`cancel` at any time. :attr:`returnCode` is the exit status once finished.
    """

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        self.args = [str(a) for a in args]
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._proc: subprocess.Popen | None = None
        self._queue: queue.SimpleQueue[tuple[str, str | None]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._openStreams = 0
        self._cancelRequestedAt: float | None = None
        self._exitedAt: float | None = None
        self._killed = False

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def cancelRequested(self) -> bool:
        return self._cancelRequestedAt is not None

    @property
    def returnCode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def finished(self) -> bool:
        """True once the process exited and both output pipes are closed and drained."""
        return self._proc is not None and self._proc.returncode is not None and self._openStreams == 0 and self._queue.empty()

    def start(self) -> None:
        """Start the process. Raises ``OSError`` if the executable cannot be started."""
        if self._proc is not None:
            raise RuntimeError("process already started")
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # own session => own process group, killed as a whole
        logger.info("Starting: %s", subprocess.list2cmdline(self.args))
        self._proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, cwd=self.cwd, text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs,
        )
        for name, stream in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            thread = threading.Thread(target=self._pump, args=(name, stream), name=f"PUMITSlicer-{name}", daemon=True)
            self._threads.append(thread)
            self._openStreams += 1
            thread.start()

    def _pump(self, name: str, stream) -> None:
        """Background thread: forward lines of one pipe to the queue; ``None`` marks the end."""
        try:
            for line in stream:
                self._queue.put((name, line.rstrip("\r\n")))
        except (OSError, ValueError):  # pipe closed under us while killing
            pass
        finally:
            self._queue.put((name, None))

    def drain(self, maxLines: int = 2000) -> list[OutputLine]:
        """Return the lines read since the last call (main thread). Also escalates a pending cancel."""
        lines: list[OutputLine] = []
        for _ in range(maxLines):
            try:
                name, text = self._queue.get_nowait()
            except queue.Empty:
                break
            if text is None:
                self._openStreams -= 1
                continue
            progress = ProgressEvent.fromLine(text) if name == "stdout" else None
            lines.append(OutputLine(name, text, progress))
        self._superviseExit()
        return lines

    def _superviseExit(self) -> None:
        proc = self._proc
        if proc is None:
            return
        now = time.monotonic()
        if proc.poll() is not None and self._exitedAt is None:
            self._exitedAt = now
            if self.cancelRequested:
                self._signalGroup(kill=True)  # leftover children of a cancelled run
        if proc.returncode is None:
            if self.cancelRequested and not self._killed and now - self._cancelRequestedAt > KILL_GRACE_SECONDS:
                logger.warning("Process %s did not stop after SIGTERM: killing its process group", proc.pid)
                self._signalGroup(kill=True)
        elif self._openStreams > 0 and not self._killed and now - self._exitedAt > PIPE_CLOSE_GRACE_SECONDS:
            # The main process is gone but a child still holds the pipes open.
            self._signalGroup(kill=True)

    def cancel(self) -> None:
        """Ask the process tree to stop (SIGTERM now, SIGKILL after :data:`KILL_GRACE_SECONDS`)."""
        if self._proc is None or self.cancelRequested:
            return
        self._cancelRequestedAt = time.monotonic()
        self._signalGroup(kill=os.name == "nt")

    def kill(self) -> None:
        """Kill the whole process tree now and wait for the main process."""
        if self._proc is None:
            return
        if self._cancelRequestedAt is None:
            self._cancelRequestedAt = time.monotonic()
        self._signalGroup(kill=True)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable process
            logger.error("Process %s did not exit after SIGKILL", self._proc.pid)

    def _signalGroup(self, *, kill: bool) -> None:
        proc = self._proc
        if proc is None:
            return
        if kill:
            self._killed = True
        if os.name == "nt":
            if proc.poll() is None:
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass  # the whole group is already gone
