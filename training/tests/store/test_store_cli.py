"""``pumit models ...`` through the real dispatcher, restricted to the models command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from store_helpers import make_model_dir, only_models_command, run_models  # noqa: F401 (fixture)

import pumit.cli.main as cli_main
from pumit.store.hashing import sha256_file


pytestmark = pytest.mark.usefixtures("only_models_command")


def test_cli_workflow_and_exit_codes(tmp_path: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_models(["list"], capsys)[0] == 0
    code, out, _ = run_models(["install", str(src)], capsys)
    assert code == 0 and "installed knee-v1.0.0" in out

    code, out, err = run_models(["install", str(src)], capsys)  # never overwrite
    assert code == 3 and err.startswith("pumit: error: model knee-v1.0.0 is already installed")
    assert err.count("\n") == 1  # one line, no traceback

    code, _, err = run_models(["install", str(src), "--version", "1.0.1", "--sha256", "ab" * 32], capsys)
    assert code == 3 and "checksum mismatch" in err
    code, out, _ = run_models(["install", str(src), "--name", "knee", "--version", "1.0.1", "--json",
                        "--sha256", sha256_file(src / "model.safetensors")], capsys)
    assert code == 0 and json.loads(out)["id"] == "knee-v1.0.1"

    code, out, _ = run_models(["list", "--json"], capsys)
    listed = json.loads(out)
    assert code == 0 and [e["id"] for e in listed if not e["builtin"]] == ["knee-v1.0.0", "knee-v1.0.1"]
    assert all(e["builtin"] for e in listed if not e["id"].startswith("knee-"))  # the models shipped with pumit
    code, out, _ = run_models(["list"], capsys)
    assert code == 0 and "knee-v1.0.1" in out and "segmentation" in out and "Apache-2.0" in out

    code, out, _ = run_models(["info", "knee", "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["id"] == "knee-v1.0.1" and info["labels"]["1"] == "anterior"
    assert info["path"] == str(tmp_path / "home" / "models" / "knee-v1.0.1")
    code, out, _ = run_models(["info", "knee-v1.0.0"], capsys)
    assert code == 0 and "1=anterior" in out and "model.safetensors" in out

    code, out, _ = run_models(["path", "knee"], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "home" / "models" / "knee-v1.0.1")

    assert run_models(["verify", "knee-v1.0.0"], capsys)[:2] == (0, "OK knee-v1.0.0: 2 file(s) match their recorded SHA-256\n")
    (tmp_path / "home" / "models" / "knee-v1.0.0" / "config.json").write_text("{}")
    code, _, err = run_models(["verify", "knee-v1.0.0"], capsys)
    assert code == 3 and "config.json: SHA-256 mismatch" in err

    assert run_models(["info", "hip"], capsys)[0] == 3  # unknown id
    assert run_models(["info", "bad id!"], capsys)[0] == 2  # malformed id
    assert run_models(["install", str(tmp_path / "missing")], capsys)[0] == 2  # missing path
    assert run_models(["install", str(src), "--version", "1.0"], capsys)[0] == 2  # malformed version
    assert run_models(["remove", "knee"], capsys)[0] == 2  # bare name refused
    code, out, _ = run_models(["remove", "knee-v1.0.0"], capsys)
    assert code == 0 and out.strip() == "removed knee-v1.0.0"
    assert run_models(["remove", "knee-v1.0.0"], capsys)[0] == 3


def test_store_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_model_dir(tmp_path, "m")
    other = tmp_path / "elsewhere"
    assert run_models(["install", str(src), "--store", str(other)], capsys)[0] == 0
    assert (other / "knee-v1.0.0").is_dir()
    assert json.loads(run_models(["list", "--json", "--store", str(other)], capsys)[1])[0]["id"] == "knee-v1.0.0"
    assert not (tmp_path / "home" / "models" / "knee-v1.0.0").exists()  # PUMIT_HOME store untouched


@pytest.mark.parametrize("action,options", [
    ("list", ["--json", "--store"]),
    ("install", ["--name", "--version", "--sha256", "--json", "--store", "FILE_OR_DIR"]),
    ("remove", ["--store", "ID"]),
    ("info", ["--json", "--store", "ID"]),
    ("verify", ["--store", "ID"]),
    ("path", ["--store", "ID"]),
])
def test_help_documents_every_option(action: str, options: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["models", action, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in options:
        assert opt in out
