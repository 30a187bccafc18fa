"""Where models live: the user's store folder and the read-only built-in model folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Environment variable overriding the user data folder; the store is then ``$PUMIT_HOME/models``.
PUMIT_HOME_ENV = "PUMIT_HOME"


def user_data_dir() -> Path:
    """The platform's per-user data folder for pumit (not created).

    ``$PUMIT_HOME`` if set; else ``%LOCALAPPDATA%\\pumit`` on Windows,
    ``~/Library/Application Support/pumit`` on macOS and ``$XDG_DATA_HOME/pumit`` (default
    ``~/.local/share/pumit``) elsewhere.
    """
    env = os.environ.get(PUMIT_HOME_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "").strip()
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "pumit"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "pumit"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share") / "pumit"


def default_store_root() -> Path:
    """The default model store folder: ``<user data dir>/models`` (see :func:`user_data_dir`)."""
    return user_data_dir() / "models"


def builtin_model_dirs() -> list[Path]:
    """Read-only folders of models shipped with the package (``pumit/assets/models``), if present.

    Each holds one sub-folder per model named by its id (``<name>-vX.Y.Z/``), or lone
    ``<id>.safetensors`` files.
    """
    folder = Path(__file__).resolve().parent.parent / "assets" / "models"
    return [folder] if folder.is_dir() else []
