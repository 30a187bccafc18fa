"""The process runner and tasks, with real child processes (no MRML involved)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from pumitslicer_testing import alive
from PUMITSlicerLib.process import CLIProcess, ProgressEvent
from PUMITSlicerLib.tasks import Task, TaskState

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process-group checks use POSIX /proc")


def pythonTask(tmp_path: Path, code: str, onSuccess=lambda t: "ok", name: str = "Job") -> Task:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Task(name, [sys.executable, "-c", code], workDir=work, onSuccess=onSuccess)


def test_progress_lines_are_parsed_and_task_succeeds(tmp_path):
    code = (
        "import json, sys\n"
        "print('plain log line')\n"
        "for i in range(5): print(json.dumps({'stage': 'infer', 'fraction': i / 4, 'message': f'window {i}', 'epoch': i}))\n"
        "print('warning: something', file=sys.stderr)\n"
    )
    task = pythonTask(tmp_path, code, onSuccess=lambda t: 42)
    events: list[ProgressEvent] = []
    finished: list[Task] = []
    task.progressCallbacks.append(events.append)
    task.finishedCallbacks.append(finished.append)
    assert task.start().wait(timeout=30) == TaskState.SUCCEEDED
    assert [e.fraction for e in events] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert events[-1].message == "window 4" and events[-1].data["epoch"] == 4
    assert task.result == 42 and finished == [task]
    assert "warning: something" in task.stderrTail
    assert not task.workDir.exists(), "the temporary folder is removed"


def test_progress_event_parsing_is_tolerant():
    assert ProgressEvent.fromLine("not json") is None
    assert ProgressEvent.fromLine("[1, 2]") is None
    assert ProgressEvent.fromLine('{"no": "stage"}') is None
    event = ProgressEvent.fromLine('{"stage": "x", "fraction": 7}')
    assert event.fraction == 1.0 and event.message == ""


def test_failure_reports_the_pumit_error_line_and_exit_code(tmp_path):
    code = "import sys\nprint('Traceback noise', file=sys.stderr)\nprint('pumit: error: unknown model id foo-v9.9.9', file=sys.stderr)\nsys.exit(3)\n"
    task = pythonTask(tmp_path, code, onSuccess=lambda t: pytest.fail("must not import on failure"), name="Segmentation")
    assert task.start().wait(timeout=30) == TaskState.FAILED
    assert task.errorMessage == "Segmentation failed. Model problem: unknown model id foo-v9.9.9 (exit code 3)."


def test_out_of_memory_exit_code_gives_advice(tmp_path):
    task = pythonTask(tmp_path, "import sys\nprint('pumit: error: CUDA out of memory', file=sys.stderr)\nsys.exit(4)")
    assert task.start().wait(timeout=30) == TaskState.FAILED
    assert "Out of memory: choose Device = CPU" in task.errorMessage and "CUDA out of memory" in task.errorMessage


def test_crash_without_error_line_shows_last_stderr_line(tmp_path):
    task = pythonTask(tmp_path, "raise RuntimeError('boom in child')")
    assert task.start().wait(timeout=30) == TaskState.FAILED
    assert "RuntimeError: boom in child" in task.errorMessage and "exit code 1" in task.errorMessage


def test_executable_that_cannot_start_fails_cleanly(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    done = []
    task = Task("Job", [str(tmp_path / "no-such-python"), "-c", "pass"], workDir=work, onSuccess=lambda t: None)
    task.start()
    task.finishedCallbacks.append(done.append)  # added after start: still called
    assert not task.poll()
    assert task.state == TaskState.FAILED and "Cannot start the pumit process" in task.errorMessage
    assert done == [task] and not work.exists()


def test_cancel_kills_the_whole_process_tree(tmp_path):
    code = (
        "import json, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(json.dumps({'stage': 'child', 'fraction': 0.0, 'message': '', 'pid': child.pid}), flush=True)\n"
        "while True:\n"
        "    print(json.dumps({'stage': 'work', 'fraction': 0.1, 'message': 'busy'}), flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    task = pythonTask(tmp_path, code, onSuccess=lambda t: pytest.fail("cancelled tasks import nothing"))
    events: list[ProgressEvent] = []
    task.progressCallbacks.append(events.append)
    task.start()
    deadline = time.monotonic() + 30
    while len(events) < 3 and time.monotonic() < deadline:
        task.poll()
        time.sleep(0.02)
    grandchild = events[0].data["pid"]
    leader = task.process.pid
    assert alive(leader) and alive(grandchild)
    task.cancel()
    assert task.wait(timeout=30) == TaskState.CANCELLED
    assert task.errorMessage == "Cancelled."
    assert not alive(leader) and not alive(grandchild)
    assert not task.workDir.exists()


def test_sigterm_is_tried_before_sigkill(tmp_path):
    """A process that handles SIGTERM (as the pumit CLI does) exits by itself; one that ignores it is killed."""
    marker = tmp_path / "cleaned"
    code = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').close(), sys.exit(130)))\n"
        "print('{\"stage\": \"s\", \"fraction\": 0}', flush=True)\n"
        "time.sleep(600)\n"
    )
    task = pythonTask(tmp_path, code)
    task.start()
    while task.lastProgress is None:
        task.poll()
        time.sleep(0.02)
    task.cancel()
    assert task.wait(timeout=30) == TaskState.CANCELLED
    assert marker.exists(), "the child got SIGTERM and could clean up"

    stubborn = pythonTask(tmp_path, "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('{\"stage\": \"s\"}', flush=True)\ntime.sleep(600)")
    stubborn.start()
    while stubborn.lastProgress is None:
        stubborn.poll()
        time.sleep(0.02)
    started = time.monotonic()
    stubborn.cancel()
    assert stubborn.wait(timeout=30) == TaskState.CANCELLED
    assert time.monotonic() - started < 15 and not alive(stubborn.process.pid)


def test_wait_timeout_cancels(tmp_path):
    task = pythonTask(tmp_path, "import time; time.sleep(600)")
    task.start()
    with pytest.raises(TimeoutError):
        task.wait(timeout=0.5)
    assert task.state == TaskState.CANCELLED and not alive(task.process.pid)


def test_raw_process_drain_without_task(tmp_path):
    proc = CLIProcess([sys.executable, "-c", "print('{\"stage\": \"a\", \"fraction\": 0.5, \"message\": \"m\"}'); print('x')"],
                      cwd=str(tmp_path))
    proc.start()
    lines = []
    while not proc.finished:
        lines += proc.drain()
        time.sleep(0.01)
    assert proc.returnCode == 0
    assert [ln.progress.stage if ln.progress else ln.text for ln in lines] == ["a", "x"]


def test_status_line_from_progress():
    from PUMITSlicerLib import formatProgress

    line = ('{"stage": "validate", "fraction": 0.95, "message": "validation after epoch 0, step 2: Dice 0.0813", '
            '"epoch": 0, "dice": 0.0813}')
    assert formatProgress(ProgressEvent.fromLine(line)) == "validation after epoch 0, step 2: Dice 0.0813"
    line = '{"stage": "prepare", "fraction": 0.0, "message": "checking the data", "epoch": null, "dice": null}'
    assert formatProgress(ProgressEvent.fromLine(line)) == "checking the data"
    line = '{"stage": "train", "fraction": 0.5, "message": "training", "epoch": 3, "epochs": 20, "dice": 0.5}'
    assert formatProgress(ProgressEvent.fromLine(line)) == "training, epoch 3/20, Dice 0.500"
