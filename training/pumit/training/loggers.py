"""The training run's metric loggers: CSV always, TensorBoard only when it is installed.

Lightning's ``TensorBoardLogger`` raises at construction when neither ``tensorboard`` nor
``tensorboardX`` is installed (e.g. in 3D Slicer, whose fine-tuning requirements are lightning and
torchmetrics only). The CSV logger needs nothing beyond lightning, so metrics are always written to
``LOG_DIR/csv/version_N/metrics.csv``; TensorBoard event files go to ``LOG_DIR/tensorboard/version_N/``
when it can be imported.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger

log = logging.getLogger(__name__)

#: Packages either of which lets Lightning's TensorBoardLogger write event files.
TENSORBOARD_PACKAGES = ("tensorboard", "tensorboardX")


def tensorboard_available() -> bool:
    """True when ``tensorboard`` or ``tensorboardX`` can be imported (checked without importing it)."""
    for name in TENSORBOARD_PACKAGES:
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


def build_loggers(log_dir: Path) -> list[Logger]:
    """``[CSVLogger]`` plus a ``TensorBoardLogger`` when TensorBoard is installed (else an info line)."""
    loggers: list[Logger] = [CSVLogger(log_dir, name="csv")]
    if tensorboard_available():
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(log_dir, name="tensorboard", default_hp_metric=False))
        except (ImportError, ModuleNotFoundError) as e:  # found but broken: train anyway, CSV only
            log.info("TensorBoard logging off (%s); metrics are in %s", e, Path(log_dir) / "csv")
    else:
        log.info("TensorBoard is not installed: metrics are logged to %s only", Path(log_dir) / "csv")
    return loggers
