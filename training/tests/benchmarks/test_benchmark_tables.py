"""The benchmark tables of README.md and docs/benchmarks.md are generated, never typed: regenerating them from the
results files that docs/benchmarks.md names must change nothing. And the start-up benchmark (``benchmarks.startup``)
measures, beside ``pumit segment``, the floor no pumit change can remove (a bare ``import torch``)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if not (REPO / "benchmarks" / "tables.py").is_file():  # e.g. an sdist of training/ alone
    pytest.skip("benchmarks/ folder not present", allow_module_level=True)
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import startup, tables  # noqa: E402


def _documented_results() -> list[Path]:
    """The results files of the ``python -m benchmarks.tables ...`` command in docs/benchmarks.md."""
    text = (REPO / "docs" / "benchmarks.md").read_text()
    m = re.search(r"-m benchmarks\.tables ((?:[^\n]*\\\n)*[^\n]*)", text)
    assert m, "docs/benchmarks.md names no benchmarks.tables command"
    paths = re.findall(r"benchmarks/results/\S+\.json", m.group(1))
    assert paths, "the benchmarks.tables command names no results files"
    return [REPO / p for p in paths]


def test_tables_are_regenerated_from_the_documented_results(capsys):
    files = _documented_results()
    missing = [str(p) for p in files if not p.is_file()]
    assert not missing, f"docs/benchmarks.md names results files that are not in the repository: {missing}"
    rc = tables.main([str(p) for p in files] + ["--check"])
    out = capsys.readouterr().out
    assert rc == 0, f"README.md / docs/benchmarks.md tables differ from their results files; run the command in docs/benchmarks.md\n{out}"
    assert "README.md: up to date" in out and "benchmarks.md: up to date" in out


def test_startup_records_the_torch_import_floor(tmp_path):
    if not startup.CASE.is_file() or startup.newest("pumit-ref-hippocampus-seg-v*") is None:
        pytest.skip(f"needs ../shared/data (MSD hippocampus case {startup.CASE.name}) and the shipped hippocampus model")
    out = tmp_path / "startup.json"
    assert startup.main(["--repeats", "1", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    run = d["runs"][0]
    assert run["rc"] == 0
    assert 0 < run["first_output_s"] <= run["model_loaded_s"] <= run["first_window_s"] <= run["total_s"]
    assert run["cpu_s"] > 0
    fl = d["floor"]
    assert 0 < fl["python_s"] < fl["import_torch_s"], fl  # torch costs more than an empty interpreter
    assert d["model_loaded_over_import_torch_s"] == pytest.approx(d["median"]["model_loaded_s"] - fl["import_torch_s"])
    assert d["target"] == {"median": "model_loaded_s", "seconds": 1.5, "met": d["median"]["model_loaded_s"] < 1.5}
    assert "torch" in d["importtime_cumulative_ms"]
    assert d["load"]["start"] and d["load"]["end"]
