"""Fixtures for the inference tests: tiny real models (random init, fixed seed) and an in-process CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pumit.cli.main as cli_main
import pytest
from inference_helpers import make_classifier, make_segmenter, make_tokenizer

#: The inference commands this test folder covers.
OUR_COMMANDS = ("segment", "reconstruct", "classify")


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty model store (``$PUMIT_HOME``), never the user's."""
    home = tmp_path / "pumit-home"
    monkeypatch.setenv("PUMIT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of a tiny segmenter, tokenizer and classifier (built once per session)."""
    root = tmp_path_factory.mktemp("models")
    return {
        "seg": make_segmenter(root / "tiny-seg"),
        "tok": make_tokenizer(root / "tiny-tok"),
        "cls": make_classifier(root / "tiny-cls"),
    }


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[..., tuple[int, str, str]]:
    """``run_cli(*argv) -> (exit code, stdout, stderr)`` through :func:`pumit.cli.main.main`.
    """

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli_main.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
