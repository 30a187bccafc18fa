"""Export of a trained model as a versioned model folder and its registration in the model store.

:func:`export_model` writes ``config.json`` + ``model.safetensors`` (:func:`pumit.models.save_pretrained`)
into a *new* folder of the run (``OUTPUT/model``, ``OUTPUT/model.1``, ...; nothing is overwritten) with
``meta``:

* ``name``, ``version`` (the store's next version of ``name``), ``task``, ``description``;
* ``labels`` (segmentation: ``{"0": "background", ...}``), ``class_names`` (classification);
* ``normalization`` (:meth:`pumit.intensity.IntensitySpec.to_dict`) and ``spacing`` (mm) used in training;
* ``input``: ``channels``, ``modality``, ``spacing``, ``normalization`` and, per task, ``roi`` + ``divisor`` +
  ``sw_overlap`` (segmentation), ``size`` (classification), ``crop_size`` (pre-training);
* ``training``: ``job``, ``steps``, ``epochs``, ``best_metric`` ``{name, value}``, ``base_model``, ``data``
  (sources and the item ids used for training/validation), ``config`` (all options), ``finished_at``.

:func:`register_model` then installs it as the next version with
:meth:`pumit.store.ModelStore.register_new_version` (versions are chosen under the store lock: never
overwritten).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from pumit.models import save_pretrained
from pumit.store import ModelEntry, ModelStore, validate_name


def free_folder(base: Path) -> Path:
    """``base`` if it does not exist, else ``base.1``, ``base.2``, ... (the first that does not)."""
    if not base.exists():
        return base
    n = 1
    while (base.parent / f"{base.name}.{n}").exists():
        n += 1
    return base.parent / f"{base.name}.{n}"


def next_version(name: str, store_root: str | os.PathLike | None = None) -> str:
    """The version the store will give the next model of ``name`` (``1.0.0`` for a new name)."""
    return ModelStore(store_root).next_version(validate_name(name))


def export_model(model: nn.Module, run_dir: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Save ``model`` with ``meta`` into a new ``run_dir/model[.N]`` folder; returns the folder."""
    meta = dict(meta)
    meta.setdefault("training", {})
    meta["training"] = {**meta["training"], "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    folder = free_folder(Path(run_dir) / "model")
    return save_pretrained(model, folder, meta)


def register_model(folder: str | os.PathLike, name: str, store_root: str | os.PathLike | None = None) -> ModelEntry:
    """Install ``folder`` in the store as the next version of ``name``; returns the store entry."""
    return ModelStore(store_root).register_new_version(folder, validate_name(name))
