"""An inter-process lock on a file (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows).

The operating system drops the lock when its holder exits or crashes, so a stale lock can never
block the store. The lock file itself is left in place (deleting it would race with other waiters).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

from pumit.errors import ResourceError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


class FileLock:
    """Exclusive lock held while inside ``with FileLock(path):``; waits up to ``timeout`` seconds.

    Not re-entrant. Raises :class:`~pumit.errors.ResourceError` if the lock is still held by another
    process after ``timeout`` seconds.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 120.0, poll: float = 0.05) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, polling until ``timeout``."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            if _try_lock(fd):
                self._fd = fd
                return
            if time.monotonic() >= deadline:
                os.close(fd)
                raise ResourceError(
                    f"model store is busy: could not lock {self.path} within {self.timeout:.0f} s "
                    "(another pumit process is installing or removing a model)"
                )
            time.sleep(self.poll)

    def release(self) -> None:
        """Release the lock (no-op if not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except (BlockingIOError, PermissionError):
            return False
    os.lseek(fd, 0, os.SEEK_SET)  # pragma: no cover - Windows
    try:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:  # pragma: no cover - Windows
        return False


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    os.lseek(fd, 0, os.SEEK_SET)  # pragma: no cover - Windows
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # pragma: no cover - Windows
