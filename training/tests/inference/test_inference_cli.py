"""The commands end to end: JSON-lines progress, the human bar, a real subprocess, cancellation."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import SimpleITK as sitk
from inference_helpers import REPO, ct_crop, files_in
from pumit.errors import CancelledError
from pumit.inference import InferenceSettings, Progress, segment


def _check_jsonl(stdout: str) -> list[dict]:
    """Every line is a JSON object with stage/fraction/message; fractions never decrease; ends done@1."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    events = [json.loads(ln) for ln in lines]
    assert events, "no progress lines"
    for e in events:
        assert isinstance(e, dict)
        assert {"stage", "fraction", "message"} <= set(e)
        assert isinstance(e["stage"], str) and isinstance(e["message"], str)
        assert 0.0 <= e["fraction"] <= 1.0
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions), fractions
    assert events[-1]["stage"] == "done" and events[-1]["fraction"] == 1.0
    assert sum(e["stage"] == "done" for e in events) == 1
    return events


def test_segment_jsonl_progress(tmp_path, models, run_cli):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    code, stdout, stderr = run_cli("segment", src, "-o", tmp_path / "seg.nii.gz", "--model", models["seg"],
                                   "--device", "cpu", "--roi", "16", "32", "32", "--overlap", "0.5", "--progress", "jsonl")
    assert code == 0, stderr
    events = _check_jsonl(stdout)
    windows = [e for e in events if e["message"].startswith("window ")]
    # (D, H, W) = (32, 32, 40), window (16, 32, 32), step half a window: 3 × 1 × 2 windows, one event each
    assert [e["message"] for e in windows] == [f"window {i}/6" for i in range(1, 7)]
    assert [e["stage"] for e in events][:3] == ["load", "read", "preprocess"]


def test_reconstruct_and_classify_jsonl(tmp_path, models, run_cli):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    code, stdout, stderr = run_cli("reconstruct", src, "-o", tmp_path / "rec.nii.gz", "--tokenizer", models["tok"],
                                   "--device", "cpu", "--progress", "jsonl")
    assert code == 0, stderr
    _check_jsonl(stdout)
    code, stdout, stderr = run_cli("classify", src, "--model", models["cls"], "--device", "cpu", "--progress", "jsonl")
    assert code == 0, stderr
    events = _check_jsonl(stdout)
    result = events[-1]["result"]
    assert result["model"] == "tiny-cls-v2.1.0"
    assert [p["name"] for p in result["probabilities"]] == ["normal", "fracture", "implant"]


def test_default_progress_keeps_stdout_clean(tmp_path, models, run_cli):
    """Default ``--progress bar``: nothing on stdout; on a non-terminal stderr only the final line."""
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    code, stdout, stderr = run_cli("segment", src, "-o", tmp_path / "seg.nii.gz", "--model", models["seg"],
                                   "--device", "cpu", "--overlap", "0")
    assert code == 0
    assert stdout == ""
    assert stderr.splitlines() == [f"pumit: wrote {tmp_path / 'seg.nii.gz'} (+ seg.labels.json)"]


def test_bar_progress_rendering():
    stream = io.StringIO()
    with Progress("bar", stream=stream) as prog:
        prog.span("inference", 0.15, 0.9).update(0.5, "window 1/2")
        prog.done("wrote x")
    text = stream.getvalue()
    assert "done" in text and "100%" in text and "wrote x" in text


def test_progress_retry_stays_monotonic():
    seen: list[float] = []
    prog = Progress(lambda stage, f, msg: seen.append(f))
    span = prog.span("inference", 0.15, 0.9)
    span.update(0.5)  # first attempt got half way, then (say) ran out of GPU memory
    retry = span.rest()
    retry.update(0.0)
    retry.update(0.5)
    retry.update(1.0)
    prog.done()
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert seen[1] == pytest.approx(0.525)  # the retry starts where the first attempt stopped
    assert seen[-2] == pytest.approx(0.9)


def test_cancel_event_stops_between_windows(tmp_path, models):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    cancel = threading.Event()

    def on_progress(stage: str, fraction: float, message: str) -> None:
        if message.startswith("window 1/"):
            cancel.set()

    out = tmp_path / "out" / "seg.nii.gz"
    with pytest.raises(CancelledError):
        segment(src, out, models["seg"], settings=InferenceSettings(device="cpu", overlap=0.5),
                progress=Progress(on_progress, cancel_event=cancel))
    assert not (tmp_path / "out").exists() or files_in(tmp_path / "out") == []


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "training") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_real_subprocess(tmp_path, models, _isolated_store):
    """``python -m pumit.cli.main segment ...`` as a real process: exit codes, JSON lines, one-line error."""
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    out = tmp_path / "seg.nii.gz"
    env = {**_cli_env(), "PUMIT_HOME": str(_isolated_store)}
    proc = subprocess.run(
        [sys.executable, "-m", "pumit.cli.main", "segment", str(src), "-o", str(out), "--model", str(models["seg"]),
         "--device", "cpu", "--overlap", "0", "--progress", "jsonl"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    _check_jsonl(proc.stdout)
    assert sitk.ReadImage(str(out)).GetSize() == ct_crop().GetSize()
    bad = subprocess.run(
        [sys.executable, "-m", "pumit.cli.main", "segment", str(tmp_path / "nope.nii.gz"), "-o", str(tmp_path / "x.nii.gz"),
         "--model", str(models["seg"])],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert bad.returncode == 2
    assert [ln for ln in bad.stderr.splitlines() if ln.strip()] == [f"pumit: error: input not found: {tmp_path / 'nope.nii.gz'}"]
    assert not (tmp_path / "x.nii.gz").exists()


def test_in_process_commands_are_registered(run_cli, capsys):
    import pumit.cli.main as cli_main

    parser = cli_main.build_parser()
    for command in ("segment", "reconstruct", "classify"):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--help"])
        assert info.value.code == 0
        assert "exit codes" in capsys.readouterr().out


def test_python_api_matches_cli(tmp_path, models, run_cli):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    code, _, err = run_cli("segment", src, "-o", tmp_path / "cli.nii.gz", "--model", models["seg"], "--device", "cpu",
                           "--overlap", "0.25", "--progress", "none")
    assert code == 0, err
    segment(src, tmp_path / "api.nii.gz", models["seg"], settings=InferenceSettings(device="cpu", overlap=0.25))
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "cli.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "api.nii.gz")))
    np.testing.assert_array_equal(a, b)
