"""Progress reporting for the inference commands: a human tqdm bar, JSON lines, or a callback.

Every reporter receives ``(stage, fraction, message)`` where ``fraction`` is the *overall* fraction of
the job in ``[0, 1]``. :class:`Progress` guarantees that the fractions it forwards never decrease (a
retry after an out-of-memory fallback re-uses the remaining part of its stage), and that a successful
job ends with exactly one ``("done", 1.0, ...)`` event.

JSON-lines format (``--progress jsonl``), one object per line on **stdout**::

    {"stage": "inference", "fraction": 0.4375, "message": "window 12/32"}
    ...
    {"stage": "done", "fraction": 1.0, "message": "wrote seg.nii.gz"}

Notes and warnings (a resampled input, an out-of-memory fallback) are sent as an event of the current
stage and fraction whose message starts with ``"warning: "`` or ``"note: "``; they are also printed on
stderr as ``pumit: warning: ...`` so that they reach logs in every mode.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import IO, Protocol

from pumit.errors import CancelledError, InputError
from pumit.inference.constants import PROGRESS_MODES

ProgressCallback = Callable[[str, float, str], None]
"""``callback(stage, fraction, message)``; ``fraction`` is the overall fraction in ``[0, 1]``."""



class ProgressSink(Protocol):
    """Receives already-clamped, monotonic progress events."""

    def emit(self, stage: str, fraction: float, message: str) -> None: ...

    def note(self, message: str) -> None: ...

    def close(self, failed: bool = False) -> None: ...


class _NullSink:
    def emit(self, stage: str, fraction: float, message: str) -> None:
        pass

    def note(self, message: str) -> None:
        print(f"pumit: {message}", file=sys.stderr, flush=True)

    def close(self, failed: bool = False) -> None:
        pass


class _JsonlSink:
    """One JSON object per line on ``stream`` (stdout by default), flushed at once."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self.last: tuple[str, float] = ("start", 0.0)

    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def emit(self, stage: str, fraction: float, message: str, **extra: object) -> None:
        self.last = (stage, fraction)
        obj: dict[str, object] = {"stage": stage, "fraction": round(fraction, 6), "message": message}
        obj.update(extra)
        out = self._out()
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def note(self, message: str) -> None:
        print(f"pumit: {message}", file=sys.stderr, flush=True)
        stage, fraction = self.last
        self.emit(stage, fraction, message)

    def close(self, failed: bool = False) -> None:
        pass


class _BarSink:
    """A tqdm bar (0-100 %) on stderr; notes are written above the bar.

    On the process's stderr the bar is shown only when it is a terminal (logs and pipes get the notes
    and the final line, not carriage-return noise); an explicit ``stream`` always gets the bar.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=1000, file=stream if stream is not None else sys.stderr, leave=True, dynamic_ncols=True,
            disable=None if stream is None else False,
            bar_format="{desc:<12} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        )

    def emit(self, stage: str, fraction: float, message: str) -> None:
        n = round(fraction * 1000)
        self.bar.set_description_str(stage, refresh=False)
        self.bar.set_postfix_str(message[:60], refresh=False)
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)
        else:
            self.bar.refresh()

    def note(self, message: str) -> None:
        self.bar.write(f"pumit: {message}", file=sys.stderr)

    def close(self, failed: bool = False) -> None:
        if failed:  # erase the bar so the error is the one line left on the terminal
            self.bar.leave = False
        self.bar.close()


class _CallbackSink:
    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback
        self.last: tuple[str, float] = ("start", 0.0)

    def emit(self, stage: str, fraction: float, message: str) -> None:
        self.last = (stage, fraction)
        self.callback(stage, fraction, message)

    def note(self, message: str) -> None:
        print(f"pumit: {message}", file=sys.stderr, flush=True)
        self.callback(self.last[0], self.last[1], message)

    def close(self, failed: bool = False) -> None:
        pass


class Progress:
    """Monotonic progress over named stages, with cancellation.

    ``mode`` is ``"bar"`` (tqdm on stderr), ``"jsonl"`` (JSON lines on stdout), ``"none"``, or a
    :data:`ProgressCallback`. ``cancel_event`` (a :class:`threading.Event`) is checked at every update;
    when set, :class:`~pumit.errors.CancelledError` is raised from inside the job (between windows).
    """

    def __init__(
        self,
        mode: str | ProgressCallback | None = "none",
        *,
        stream: IO[str] | None = None,
        cancel_event: threading.Event | None = None,
    ) -> None:
        if mode is None:
            mode = "none"
        self.sink: ProgressSink
        if callable(mode):
            self.sink = _CallbackSink(mode)
        elif mode == "bar":
            self.sink = _BarSink(stream)
        elif mode == "jsonl":
            self.sink = _JsonlSink(stream)
        elif mode == "none":
            self.sink = _NullSink()
        else:
            raise InputError(f"unknown progress mode {mode!r}; choose one of {', '.join(PROGRESS_MODES)}")
        self.fraction = 0.0
        self.stage = "start"
        self.cancel_event = cancel_event
        self.notes: list[str] = []
        self._closed = False

    def check_cancelled(self) -> None:
        """Raise :class:`~pumit.errors.CancelledError` if the cancel event is set."""
        if self.cancel_event is not None and self.cancel_event.is_set():
            raise CancelledError("cancelled")

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """Report the overall ``fraction``; values below the last one are raised to it (monotonic)."""
        self.check_cancelled()
        f = min(max(float(fraction), self.fraction, 0.0), 1.0)
        self.fraction = f
        self.stage = stage
        self.sink.emit(stage, f, message)

    def note(self, message: str) -> None:
        """A user-visible note/warning (stderr, and a progress event of the current stage)."""
        self.notes.append(message)
        self.sink.note(message)

    def warn(self, message: str) -> None:
        """A warning: :meth:`note` prefixed with ``warning:``."""
        self.note(f"warning: {message}")

    def span(self, stage: str, start: float, end: float) -> Span:
        """A sub-range ``[start, end]`` of the overall fraction for one stage."""
        return Span(self, stage, max(start, self.fraction), max(end, start))

    def done(self, message: str = "done", **extra: object) -> None:
        """The final event (``stage "done"``, fraction 1.0); ``extra`` keys are added to the JSON line."""
        self.fraction = 1.0
        self.stage = "done"
        if extra and isinstance(self.sink, _JsonlSink):
            self.sink.emit("done", 1.0, message, **extra)
        else:
            self.sink.emit("done", 1.0, message)

    def close(self, failed: bool = False) -> None:
        """Close the sink; ``failed`` erases a terminal progress bar (the error message follows)."""
        if not self._closed:
            self._closed = True
            self.sink.close(failed)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(failed=exc_type is not None)


class Span:
    """A stage occupying ``[start, end]`` of the overall fraction; ``update(f)`` takes ``f`` in ``[0, 1]``."""

    def __init__(self, progress: Progress, stage: str, start: float, end: float) -> None:
        self.progress = progress
        self.stage = stage
        self.start = start
        self.end = end

    def update(self, fraction: float, message: str = "") -> None:
        f = min(max(float(fraction), 0.0), 1.0)
        self.progress.update(self.stage, self.start + (self.end - self.start) * f, message)

    def begin(self, message: str = "") -> None:
        self.update(0.0, message)

    def finish(self, message: str = "") -> None:
        self.update(1.0, message)

    def rest(self) -> Span:
        """The part of this stage not yet reported (used to restart after a fallback, monotonically)."""
        return Span(self.progress, self.stage, max(self.start, self.progress.fraction), self.end)


ProgressLike = Progress | str | ProgressCallback | None


def as_progress(progress: ProgressLike) -> tuple[Progress, bool]:
    """A :class:`Progress` for ``progress`` and whether the caller owns it (must close it)."""
    if isinstance(progress, Progress):
        return progress, False
    return Progress(progress), True
