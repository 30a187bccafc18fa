"""Issue 15 items 2 and 9 (spacing): a full disk is never reported as success, errors are one line.

ITK's NIfTI writer does not raise on a full disk: it prints ``** ERROR: NWAD ...`` and leaves a truncated
file. Tested on a real size-limited file system (a 200 kB tmpfs, when the tests run as root and may mount)
with the real CLI in a subprocess, and everywhere with a writer that fails the way ITK's does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from pumit.errors import ResourceError
from pumit.headers import written_image_problem
from pumit.imageio import read_image, write_image
from pumit.inference.outputs import OutputTransaction

from inference_helpers import REPO

DEMO = REPO / "training" / "pumit" / "assets" / "demo" / "hippocampus_004.nii.gz"
SEG_MODEL = "pumit-ref-hippocampus-seg-v0.1.0"
TOK_MODEL = "pumit-ref-tokenizer-v0.3.0"


def pumit(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUTF8": "1"}
    return subprocess.run([sys.executable, "-m", "pumit.cli.main", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 kB tmpfs (needs root and the right to mount; skipped otherwise)."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)


def one_error_line(stderr: str) -> str:
    """The error line; besides pumit's own notes/warnings nothing else (no niftilib "** ERROR", no traceback)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("pumit: note:", "pumit: warning:"))]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pumit: error: ")
    return lines[0]


@pytest.mark.parametrize("probs", ["probs.nii", "probs.nii.gz"])
def test_segment_probabilities_on_a_full_disk_exit_4_and_leave_nothing(small_disk: Path, probs: str):
    r = pumit("segment", DEMO, "-o", small_disk / "seg.nii.gz", "-m", SEG_MODEL, "--probabilities", small_disk / probs)
    assert r.returncode == 4, r.stderr
    line = one_error_line(r.stderr)
    assert "disk full" in line and str(small_disk / probs) in line
    assert "wrote" not in r.stdout + r.stderr
    assert sorted(os.listdir(small_disk)) == []  # no label map, no sidecar, no temporary file


def test_reconstruct_on_a_full_disk_exit_4_and_leave_nothing(small_disk: Path):
    r = pumit("reconstruct", DEMO, "-o", small_disk / "rec.nii", "-t", TOK_MODEL)
    assert r.returncode == 4, r.stderr
    line = one_error_line(r.stderr)
    assert "disk full" in line and str(small_disk / "rec.nii") in line
    assert sorted(os.listdir(small_disk)) == []


def itk_like_writer(keep: float):
    """SimpleITK's writer, then the file cut to ``keep`` of its size and no exception: what ITK's NIfTI
    writer does when the disk fills up."""

    def write(image: sitk.Image, path: str, compress: bool) -> None:
        sitk.WriteImage(image, path, useCompression=compress)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(int(size * keep))
        print("** ERROR: NWAD: wrote only part of the file", file=sys.stderr)

    return write


@pytest.mark.parametrize("name", ["probs.nii", "probs.nii.gz", "probs.nrrd", "probs.mha"])
def test_truncating_writer_is_caught_before_commit(tmp_path: Path, name: str):
    image = read_image(DEMO)
    out = tmp_path / "out"
    with pytest.raises(ResourceError, match="disk full") as err:
        with OutputTransaction(image_writer=itk_like_writer(0.5)) as tx:
            tx.add_json({"labels": []}, out / "seg.labels.json")
            tx.add_image(sitk.Cast(image, sitk.sitkFloat32), out / name)
            tx.commit()
    assert str(out / name) in str(err.value)
    assert os.listdir(out) == []


def test_complete_writes_pass_the_check(tmp_path: Path):
    image = sitk.Cast(read_image(DEMO), sitk.sitkFloat32)
    for name in ("a.nii", "a.nii.gz", "a.nrrd", "a.mha"):
        p = write_image(image, tmp_path / name)
        assert written_image_problem(p, image) is None
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(p)), sitk.GetArrayFromImage(image))
    vec = sitk.Compose([image, image, image])
    with OutputTransaction() as tx:
        tx.add_image(vec, tmp_path / "vec.nii.gz")
        tx.commit()
    assert written_image_problem(tmp_path / "vec.nii.gz", vec) is None


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_zero_or_negative_spacing_is_one_line(tmp_path: Path, bad: float):
    img = nib.load(str(DEMO))
    new = nib.Nifti1Image(np.asanyarray(img.dataobj), None, header=img.header.copy())
    new.header["pixdim"][1:4] = [1.0, bad, 1.0]
    new.header.set_qform(None, code=0)
    new.header.set_sform(None, code=0)
    src = tmp_path / "bad_spacing.nii.gz"
    nib.save(new, str(src))
    r = pumit("segment", src, "-o", tmp_path / "seg.nii.gz", "-m", SEG_MODEL)
    assert r.returncode == 2
    assert "spacing" in one_error_line(r.stderr)
    assert not (tmp_path / "seg.nii.gz").exists()


def test_temporary_files_of_a_killed_run_are_removed_and_reported(tmp_path: Path):
    """A real process stages an output (temporary file written, not committed) and is SIGKILLed; the next
    `pumit segment` into that folder removes the temporary file and says so."""
    import signal

    out = tmp_path / "out"
    out.mkdir()
    script = (
        "import sys, time, SimpleITK as sitk; from pumit.inference.outputs import OutputTransaction; "
        "tx = OutputTransaction(); tx.add_image(sitk.ReadImage(sys.argv[1]), sys.argv[2]); "
        "print('staged', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", script, str(DEMO), str(out / "seg.nii.gz")], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "staged"
    staged = [n for n in os.listdir(out) if n.startswith(".seg.nii.gz.")]
    assert len(staged) == 1
    live = OutputTransaction(note=lambda m: None)
    mine = live._temp(out / "other.nii.gz")  # this (live) process's temporary file
    assert staged[0] in os.listdir(out)  # the other process is alive: its file is kept
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    r = pumit("segment", DEMO, "-o", out / "seg.nii.gz", "-m", SEG_MODEL)
    assert r.returncode == 0, r.stderr
    assert "removed 1 stale temporary file(s)" in r.stderr
    assert mine.is_file()  # a live process's file is never touched
    mine.unlink()
    assert sorted(os.listdir(out)) == ["seg.labels.json", "seg.nii.gz"]


def test_temporary_files_of_earlier_versions_are_removed_after_an_hour(tmp_path: Path):
    """Earlier versions named temporary files without the process id (``mkstemp``): those untouched for an
    hour are removed by the next transaction in that folder, recent ones are kept."""
    import tempfile
    import time

    out = tmp_path / "out"
    out.mkdir()
    old_fd, old = tempfile.mkstemp(prefix=".seg.nii.gz.", suffix=".tmp.nii.gz", dir=out)  # as pumit <= 0.x wrote
    new_fd, new = tempfile.mkstemp(prefix=".probs.nii.", suffix=".tmp.nii", dir=out)
    for fd in (old_fd, new_fd):
        os.write(fd, b"x" * 1000)
        os.close(fd)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    notes: list[str] = []
    with OutputTransaction(note=notes.append) as tx:
        tx.add_json({"labels": []}, out / "seg.labels.json")
        tx.commit()
    assert not Path(old).exists() and Path(new).exists()
    assert notes and "removed 1 stale temporary file(s)" in notes[0]
