"""Versioned local model store: install, list, inspect, verify and remove models by id ``name-vX.Y.Z``.

Typical use::

    from pumit.store import ModelStore
    store = ModelStore()                   # $PUMIT_HOME/models or the platform user data folder
    entry = store.install("knee-seg/")     # a folder (config.json + model.safetensors) or a .safetensors file
    path = store.resolve("knee-seg")       # bare name → latest version; a path is returned as is

Only JSON and safetensors are read; pickle checkpoints are refused. See ``docs/models.md``.
"""

from pumit.store.entry import FileRecord, ModelEntry
from pumit.store.ids import ModelId, Version, is_full_id, parse_id_or_name, validate_name
from pumit.store.paths import PUMIT_HOME_ENV, builtin_model_dirs, default_store_root, user_data_dir
from pumit.store.source import MODEL_TYPES, read_model_config
from pumit.store.store import ModelStore, register_new_version

__all__ = [
    "MODEL_TYPES",
    "PUMIT_HOME_ENV",
    "FileRecord",
    "ModelEntry",
    "ModelId",
    "ModelStore",
    "Version",
    "builtin_model_dirs",
    "default_store_root",
    "is_full_id",
    "parse_id_or_name",
    "read_model_config",
    "register_new_version",
    "user_data_dir",
    "validate_name",
]
