"""Helpers for the model-store tests: real (tiny) safetensors models written on the fly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import pumit.cli.main as cli_main


def model_config(name: str = "knee", version: str | None = "1.0.0", **meta: Any) -> dict[str, Any]:
    """A config.json in the lead-defined layout for a small segmentation model."""
    m: dict[str, Any] = {
        "name": name,
        "task": "knee cartilage segmentation",
        "labels": {"0": "background", "1": "anterior", "2": "posterior"},
        "colors": {"1": [255, 0, 0], "2": [0, 255, 0]},
        "license": "Apache-2.0",
        "description": "tiny test model",
        "input": {"channels": 1, "spacing_range_mm": [[0.5, 5.0], [0.2, 1.0], [0.2, 1.0]], "modality": "MRI",
                  "normalization": {"kind": "zscore"}},
        "training": {"epochs": 1},
    }
    if version is not None:
        m["version"] = version
    m.update(meta)
    return {"model_type": "segmentation", "config": {"in_channels": 1, "out_channels": 3, "kernel": 3},
            "pumit_version": "0.1.0", "meta": m}


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d(1, 3, kernel_size=3)
    return {k: v.detach().contiguous() for k, v in conv.state_dict().items()}


def make_model_dir(parent: Path, dirname: str = "knee-model", *, seed: int = 0, config: dict | None = None) -> Path:
    """A model folder: config.json + model.safetensors (a Conv3d state dict)."""
    d = parent / dirname
    d.mkdir(parents=True)
    save_file(tiny_state_dict(seed), str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(config if config is not None else model_config()), encoding="utf-8")
    return d


def make_lone_file(path: Path, *, seed: int = 0, config: dict | None = None) -> Path:
    """A single .safetensors file with its config as JSON in the 'pumit_config' metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = config if config is not None else model_config()
    save_file(tiny_state_dict(seed), str(path), metadata={"pumit_config": json.dumps(cfg)})
    return path


@pytest.fixture
def only_models_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Build the CLI parser with only pumit.cli.models (other sub-commands belong to other modules) and
    point PUMIT_HOME at a temporary folder. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("models",))
    monkeypatch.setenv("PUMIT_HOME", str(tmp_path / "home"))


def run_models(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``pumit models ARGS`` in-process: ``(exit code, stdout, stderr)``."""
    code = cli_main.main(["models", *args])
    out, err = capsys.readouterr()
    return code, out, err
