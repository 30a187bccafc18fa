"""What a pipeline step did: how many items it produced and which inputs it skipped, and why."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger("pumit.data")


@dataclass
class Report:
    """Outcome of :func:`~pumit.data.index_sources` or :func:`~pumit.data.preprocess_manifest`.

    ``skipped`` lists ``(path, reason)`` for every input that could not be read; such inputs are
    logged as warnings and left out, never fatal.
    """

    step: str = "index"
    done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def skip(self, path: str, reason: str) -> None:
        """Record and log one skipped input."""
        self.skipped.append((str(path), reason))
        logger.warning("skipped unreadable input %s: %s", path, reason)

    def merge(self, other: Report) -> None:
        self.done += other.done
        self.skipped.extend(other.skipped)

    def summary(self) -> str:
        """One line, e.g. ``index: 210 items, 2 unreadable inputs skipped``."""
        s = f"{self.step}: {self.done} item{'s' if self.done != 1 else ''}"
        if self.skipped:
            s += f", {self.n_skipped} unreadable input{'s' if self.n_skipped != 1 else ''} skipped"
        return s
