"""``pumit data index`` / ``pumit data preprocess`` through the real dispatcher (only the data command)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk
from data_helpers import CT, CT_VERT

import pumit.cli.main as cli_main


@pytest.fixture(autouse=True)
def only_data_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("data",))


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main.main(["data", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("action", [[], ["index"], ["preprocess"]])
def test_help(action: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli_main.main(["data", *action, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    expected = {"": ["index", "preprocess"],
                "index": ["--output", "--modality", "--intensity", "--depth-axis", "--val-fraction", "--split-seed",
                          "--dataset", "--medmnist-spacing", "--check", "exit codes"],
                "preprocess": ["--output", "--max-side", "--workers", "--no-crop", "default 512"]}["".join(action)]
    for word in expected:
        assert word in out


def test_index_check_and_preprocess(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(CT, data / "spine_ct.nii.gz")
    (data / "broken.nii.gz").write_bytes(b"not gzip")
    manifest = tmp_path / "index.jsonl"
    code, out, err = run(["index", str(data), "-o", str(manifest), "--check", "-q", "--val-fraction", "0"], capsys)
    assert code == 0, err
    assert "wrote 1 records" in out and "train 1" in out and "1 unreadable inputs skipped" in out
    assert "broken.nii.gz" in err  # reported with its path
    rec = json.loads(manifest.read_text().splitlines()[0])
    assert rec["modality"] == "ct" and rec["spacing"] == [1.5, 1.5, 1.5] and rec["split"] == "train"
    code, out, err = run(["preprocess", str(manifest), "-o", str(tmp_path / "out"), "--max-side", "32", "-q"], capsys)
    assert code == 0, err
    assert "wrote 1 items" in out
    (p,) = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert min(p["shape"][2:]) == 32 and p["image"].startswith("images/")


def test_check_fails_on_label_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    label = sitk.ReadImage(str(CT_VERT))
    label.SetOrigin(tuple(o + 10 for o in label.GetOrigin()))
    sitk.WriteImage(label, str(tmp_path / "moved_msk.nii.gz"))
    hand = tmp_path / "list.jsonl"
    hand.write_text(json.dumps({"image": str(CT), "label": str(tmp_path / "moved_msk.nii.gz")}) + "\n")
    manifest = tmp_path / "index.jsonl"
    code, out, err = run(["index", str(hand), "-o", str(manifest), "--check", "-q"], capsys)
    assert code == 2 and not manifest.exists()
    last = err.strip().splitlines()[-1]
    assert last.startswith("pumit: error: 1 label problem:") and "moved_msk.nii.gz" in last and "origin" in last
    code, out, err = run(["index", str(hand), "-o", str(manifest), "-q"], capsys)  # without --check: written
    assert code == 0 and manifest.exists()
    code, out, err = run(["preprocess", str(manifest), "-o", str(tmp_path / "out"), "-q"], capsys)
    assert code == 2 and "moved_msk.nii.gz" in err.strip().splitlines()[-1]
