"""Issue 15 items 4, 6 (training side), 7 and 8 (empty labels): a killed fine-tune resumes with the default
options, bad checkpoints are one-line model errors, all-empty label maps are refused.

Real data: the demo hippocampus case shipped in the repository (copied into a 4-case MSD folder), a tiny
segmenter, real `pumit train segment` subprocesses and a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from training_helpers import REPO, cli_env, kill_once_checkpointed, run_cli, write_yaml

DEMO = REPO / "training" / "pumit" / "assets" / "demo"
TINY = dict(roi=[16, 32, 32], batch_size=2, samples_per_volume=1, sw_overlap=0.25, num_workers=0, num_sanity_val_steps=0,
            log_every_n_steps=1, warmup_steps=0, adapter_channels=[8, 8, 16, 16], stem_channels=[8], preset="tiny",
            patch_size=8, embed_dim=32, depth=2, num_heads=2)


def demo_msd(root: Path, *, empty_labels: bool = False) -> Path:
    """An MSD-style folder of 4 copies of the demo hippocampus case (optionally with all-zero label maps)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    label = sitk.ReadImage(str(DEMO / "hippocampus_004_label.nii.gz"))
    if empty_labels:
        label = label * 0
    training = []
    for i in range(1, 5):
        name = f"hippocampus_{i:03d}.nii.gz"
        shutil.copy(DEMO / "hippocampus_004.nii.gz", root / "imagesTr" / name)
        sitk.WriteImage(label, str(root / "labelsTr" / name))
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (root / "dataset.json").write_text(json.dumps({
        "name": "Hippo", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "anterior", "2": "posterior"},
        "training": training, "test": []}))
    return root


def train_args(data: Path, out: Path, cfg: Path, epochs: int, *extra: str) -> list[str]:
    return ["train", "segment", "--data", str(data), "--output", str(out), "--name", "kill-test", "--epochs", str(epochs),
            "--device", "cpu", "--progress", "none", "--config", str(cfg), *extra]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    return demo_msd(tmp_path / "msd"), write_yaml(tmp_path / "tiny.yaml", TINY), tmp_path / "home"


def test_killed_fine_tune_with_default_options_resumes(setup, tmp_path: Path):
    data, cfg, home = setup
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    args = train_args(data, out, cfg, 6)  # default checkpoint options: no --checkpoint-every-n-steps
    kill_once_checkpointed(args, home, last)
    first = torch.load(last, map_location="cpu", weights_only=True)
    assert 1 <= first["global_step"] < 12  # saved at the end of an epoch (2 steps each), well before the end
    again = run_cli(args, home)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [ln for ln in again.stderr.splitlines() if "resuming from" in ln]
    assert resumed and f"step {first['global_step']}" in resumed[0] and f"epoch {first['epoch']}" in resumed[0]
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["global_step"] == 12  # 6 epochs x 2 steps: nothing repeated, nothing lost
    assert not list((out / "checkpoints").glob(".*.tmp"))  # the killed writer's temp file (if any) is gone
    assert json.loads((out / "run.json").read_text())["launches"][1]["resumed_from"] == str(last)


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr and "weights_only=False" not in stderr, stderr[-2000:]
    assert lines and lines[-1].startswith("pumit: error: ")
    return lines[-1]


def test_resume_from_a_pickle_payload_is_refused_and_never_executed(setup, tmp_path: Path):
    data, cfg, home = setup
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": {}, "global_step": 1, "x": Evil()}))
    r = run_cli(train_args(data, tmp_path / "run", cfg, 1, "--resume", str(evil)), home)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "evil.ckpt" in _one_line(r.stderr)
    assert not marker.exists()


def test_truncated_last_checkpoint_is_a_model_error(setup, tmp_path: Path):
    data, cfg, home = setup
    out = tmp_path / "run"
    ok = run_cli(train_args(data, out, cfg, 1), home)
    assert ok.returncode == 0, ok.stderr[-2000:]
    last = out / "checkpoints" / "last.ckpt"
    raw = last.read_bytes()
    last.write_bytes(raw[: len(raw) // 2])
    r = run_cli(train_args(data, out, cfg, 2), home)
    assert r.returncode == 3, r.stderr[-2000:]
    line = _one_line(r.stderr)
    assert "last.ckpt" in line and "truncated or corrupt" in line


def test_all_empty_label_maps_are_refused_before_training(tmp_path: Path):
    data = demo_msd(tmp_path / "msd", empty_labels=True)
    cfg = write_yaml(tmp_path / "tiny.yaml", TINY)
    out = tmp_path / "run"
    r = run_cli(train_args(data, out, cfg, 1), tmp_path / "home")
    assert r.returncode == 2, r.stderr[-2000:]
    line = _one_line(r.stderr)
    assert "empty" in line and "label" in line
    assert not (out / "model").exists() and not list(out.glob("checkpoints/*.ckpt"))
    assert not list(out.glob("data/prepared-*")) and not list(out.glob("data/.prepared-*.lock"))  # no stale cache


def test_stale_preparation_of_a_killed_run_is_cleaned(tmp_path: Path):
    """A real process holding a preparation lock and half-written data is SIGKILLed; the next preparation
    removes its lock and half-prepared folder, but never those of a live process."""
    import sys

    from pumit.data.preprocess import clean_stale_preparations
    from pumit.store.locking import FileLock

    work = tmp_path / "data"
    script = (
        "import sys, time, numpy as np; from pathlib import Path; from pumit.store.locking import FileLock; "
        "from pumit.data.preprocess import save_npy; w = Path(sys.argv[1]); "
        "lock = FileLock(w / '.prepared-dead.lock'); lock.acquire(); "
        "save_npy(w / 'prepared-dead' / 'images' / 'x.npy', np.zeros((1, 4, 4, 4), np.float16)); "
        "print('ready', flush=True); time.sleep(600)")
    work.mkdir()
    p = subprocess.Popen([sys.executable, "-c", script, str(work)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    with FileLock(work / ".prepared-live.lock"):
        assert clean_stale_preparations(work, keep="mine") == []  # both locks held: nothing touched
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        removed = clean_stale_preparations(work, keep="mine")
    assert sorted(x.name for x in removed) == [".prepared-dead.lock", "prepared-dead"]
    assert sorted(os.listdir(work)) == [".prepared-live.lock"]


def test_train_without_the_train_extra_is_one_line(setup, tmp_path: Path):
    """Lightning made unimportable (as in an install without the extra): one line naming the extra, exit 2."""
    import sys

    data, cfg, home = setup
    code = ("import sys; sys.modules['lightning'] = None; from pumit.cli.main import main; "
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, *train_args(data, tmp_path / "run", cfg, 1)], env=cli_env(home),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    line = _one_line(r.stderr)
    assert "pumit[train]" in line and "lightning" in line


def test_a_run_from_before_the_decoder_option_resumes_with_its_unet_decoder(setup, tmp_path: Path):
    """Today's default decoder is 'light'; a run whose launches predate the option has U-Net checkpoints."""
    data, cfg, home = setup
    out = tmp_path / "old-run"
    first = run_cli(train_args(data, out, cfg, 1, "--decoder", "unet"), home)
    assert first.returncode == 0, first.stderr[-3000:]
    run_json = out / "run.json"
    info = json.loads(run_json.read_text())
    for launch in info["launches"]:
        launch["config"].pop("decoder")  # as written by pumit before the option existed
    run_json.write_text(json.dumps(info))
    again = run_cli(train_args(data, out, cfg, 2), home)  # the same command as then: no --decoder
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stderr and "U-Net decoder" in again.stderr
    final = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == 4  # 2 epochs x 2 steps: continued, not restarted
    assert json.loads(run_json.read_text())["launches"][-1]["config"]["decoder"] == "unet"
