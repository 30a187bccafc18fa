"""Training on PyTorch Lightning: one LightningModule per job, data modules, callbacks and the runner.

Jobs (``pumit train JOB``):

* ``tokenizer`` — :class:`~pumit.training.tokenizer.TokenizerModule` (manual optimization: generator + discriminator);
* ``mim`` — :class:`~pumit.training.mim.MIMModule` (frozen tokenizer, soft-token targets, 55 % masking,
  optional modality adversary / scale classifier);
* ``classify`` — :class:`~pumit.training.classification.ClassificationModule` (AUC / ACC, best-val checkpoint);
* ``segment`` — :class:`~pumit.training.segmentation.SegmentationModule` (DiceCE, sliding-window Dice).

:func:`~pumit.training.run.run_job` builds the data module, the module and the Trainer, resumes from the run
folder's ``last.ckpt``, then exports and registers the model. Options: :mod:`pumit.training.options`.

Attributes are imported lazily so that ``pumit --help`` does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TokenizerModule": "pumit.training.tokenizer",
    "MIMModule": "pumit.training.mim",
    "ClassificationModule": "pumit.training.classification",
    "SegmentationModule": "pumit.training.segmentation",
    "PretrainDataModule": "pumit.training.datamodules",
    "ClassificationDataModule": "pumit.training.datamodules",
    "SegmentationDataModule": "pumit.training.datamodules",
    "SegmentationCrops": "pumit.training.datamodules",
    "prepare_data": "pumit.training.datamodules",
    "AtomicCheckpointIO": "pumit.training.callbacks",
    "JsonlProgress": "pumit.training.callbacks",
    "ProgressReporter": "pumit.training.callbacks",
    "run_job": "pumit.training.run",
    "build_trainer": "pumit.training.run",
    "RunResult": "pumit.training.run",
    "resolve_config": "pumit.training.options",
    "export_model": "pumit.training.export",
    "register_model": "pumit.training.export",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pumit.training' has no attribute {name!r}")
