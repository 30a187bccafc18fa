"""The option schema, the packaged YAML configs and ``--help`` agree; YAML values are defaults, flags override."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from pumit.cli import train as train_cli
from pumit.errors import InputError
from pumit.training.options import JOB_OPTIONS, JOBS, config_from_args, default_config_path, read_yaml, resolve_config
from training_helpers import write_yaml


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pumit")
    sub = parser.add_subparsers(dest="command")
    train_cli.register(sub)
    return parser


@pytest.mark.parametrize("job", JOBS)
def test_packaged_config_lists_every_option(job: str) -> None:
    raw = yaml.safe_load(default_config_path(job).read_text())
    keys = {o.key for o in JOB_OPTIONS[job]}
    assert set(raw) == keys, f"{job}.yaml and the schema differ: {set(raw) ^ keys}"
    read_yaml(default_config_path(job), job)  # every value parses


@pytest.mark.parametrize("job", JOBS)
def test_help_documents_every_option(job: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["train", job, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for o in JOB_OPTIONS[job]:
        assert o.flag in text, f"{o.flag} missing from `pumit train {job} --help`"
        assert f"[{o.key}:" in text
    assert "--config" in text and "exit codes" in text


def test_flags_override_yaml_which_overrides_packaged(tmp_path: Path) -> None:
    cfg_file = write_yaml(tmp_path / "c.yaml", {"max_steps": 7, "lr": 0.5, "roi": [32, 64, 64]})
    args = _parser().parse_args(["train", "segment", "--config", str(cfg_file), "--lr", "0.25", "--epochs", "3",
                                 "--device", "cpu", "--precision", "bf16-mixed"])
    cfg = config_from_args("segment", args)
    assert cfg["max_steps"] == 7 and cfg["roi"] == (32, 64, 64)  # from the file
    assert cfg["lr"] == 0.25 and cfg["max_epochs"] == 3 and cfg["accelerator"] == "cpu"  # flags (and aliases)
    assert cfg["precision"] == "bf16-mixed"
    assert cfg["batch_size"] == resolve_config("segment")["batch_size"]  # untouched: schema/packaged default


def test_bad_config_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown option.*max_stepz"):
        read_yaml(write_yaml(tmp_path / "a.yaml", {"max_stepz": 3}), "segment")
    with pytest.raises(InputError, match="lr"):
        read_yaml(write_yaml(tmp_path / "b.yaml", {"lr": "fast"}), "segment")
    with pytest.raises(InputError, match="precision"):
        resolve_config("segment", None, {"precision": "8"})
    with pytest.raises(InputError, match="not found"):
        resolve_config("segment", tmp_path / "missing.yaml")
