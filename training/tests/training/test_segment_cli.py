"""``pumit train segment`` as 3D Slicer calls it: JSON-lines progress, a new store version per run, never an
overwrite; a base segmentation model is continued, a base ViT gets a new decoder."""

from __future__ import annotations

import json
from pathlib import Path

from pumit.models import load_pretrained
from pumit.store import ModelStore
from training_helpers import TINY_SEG, run_cli, tiny_cfg, write_yaml

#: What the test adds through --config (the Slicer module itself passes only the flags below).
TINY_SEGMENT_CONFIG = dict(roi=[16, 32, 32], batch_size=2, samples_per_volume=1, sw_overlap=0.25, num_workers=0,
                           num_sanity_val_steps=0, log_every_n_steps=1, warmup_steps=0,
                           adapter_channels=list(TINY_SEG["adapter_channels"]), stem_channels=list(TINY_SEG["stem_channels"]))


def _jsonl(stdout: str) -> list[dict]:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    events = [json.loads(ln) for ln in lines]  # every stdout line is one JSON object
    for e in events:
        assert {"stage", "fraction", "message", "epoch", "dice"} <= set(e), e
        assert 0.0 <= e["fraction"] <= 1.0
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions), "progress went backwards"
    return events


def test_segment_finetune_registers_new_versions(hippo_msd: Path, tiny_mim_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = write_yaml(tmp_path / "tiny.yaml", TINY_SEGMENT_CONFIG)
    slicer = ["train", "segment", "--data", hippo_msd, "--name", "hippo-seg", "--epochs", "1", "--device", "cpu",
              "--progress", "jsonl", "--config", cfg]

    first = run_cli([*slicer, "--base-model", tiny_mim_dir], home)  # pre-trained backbone, new decoder
    assert first.returncode == 0, first.stderr[-3000:]
    events = _jsonl(first.stdout)
    assert {"prepare", "train", "validate", "export", "register", "done"} <= {e["stage"] for e in events}
    val = [e for e in events if e["stage"] == "validate"]
    assert val and isinstance(val[-1]["dice"], float) and set(val[-1]["dice_per_class"]) == {"anterior", "posterior"}
    done = events[-1]
    assert done["stage"] == "done" and done["fraction"] == 1.0 and done["model_id"] == "hippo-seg-v1.0.0"

    store = ModelStore(home / "models")
    entry = store.info("hippo-seg-v1.0.0")
    assert entry.labels == {"0": "background", "1": "anterior", "2": "posterior"}
    assert entry.input["roi"] == [16, 32, 32] and entry.input["spacing"] == [1.0, 1.0, 1.0]
    model = load_pretrained(entry.model_path, "segmentation")
    meta = model.meta
    assert meta["normalization"]["scheme"] == "zscore" and meta["input"]["normalization"] == meta["normalization"]
    assert meta["training"]["steps"] == done["steps"] > 0 and meta["training"]["base_model"] == str(tiny_mim_dir)
    assert meta["training"]["best_metric"]["name"] == "val/dice"
    assert sum(meta["training"]["data"]["counts"].values()) == 6
    weights = (entry.folder / "model.safetensors").read_bytes()

    second = run_cli([*slicer, "--base-model", "hippo-seg"], home)  # continue fine-tuning the store model
    assert second.returncode == 0, second.stderr[-3000:]
    assert _jsonl(second.stdout)[-1]["model_id"] == "hippo-seg-v1.0.1"
    assert store.versions("hippo-seg") == ["1.0.0", "1.0.1"]
    assert (entry.folder / "model.safetensors").read_bytes() == weights  # the first version is untouched
    store.verify("hippo-seg-v1.0.0")
    store.verify("hippo-seg-v1.0.1")
    second_meta = load_pretrained(store.resolve("hippo-seg-v1.0.1"), "segmentation").meta
    assert second_meta["training"]["base_model"] == "hippo-seg"


def test_base_segmenter_with_other_labels_gets_a_new_head(tiny_mim_dir: Path, tmp_path: Path) -> None:
    import torch
    from pumit.models import SegmenterConfig, SpadViTSegmenter, ViTConfig, save_pretrained
    from pumit.training.segmentation import build_segmenter

    vit = ViTConfig.preset("tiny", patch_size=8, embed_dim=32, depth=2, num_heads=2)
    base = SpadViTSegmenter(SegmenterConfig(vit=vit, num_classes=3, **TINY_SEG))
    folder = save_pretrained(base, tmp_path / "base", {"labels": {"0": "background", "1": "a", "2": "b"}})
    cfg = tiny_cfg("segment", base_model=str(folder))

    notices: list[str] = []
    same = build_segmenter(cfg, {"0": "background", "1": "a", "2": "b"}, notices=notices)
    assert not notices and torch.equal(same.head.weight, base.head.weight)

    other = build_segmenter(cfg, {"0": "background", "1": "liver"}, notices=notices)
    assert len(notices) == 1 and "re-initialised" in notices[0]
    assert other.head.weight.shape[0] == 2
    assert torch.equal(other.vit.patch_embed.proj.weight, base.vit.patch_embed.proj.weight)  # backbone kept
    assert torch.equal(next(other.decoder.parameters()), next(base.decoder.parameters()))  # decoder kept


def test_sigterm_cancels_with_130_and_registers_nothing(hippo_msd: Path, tiny_mim_dir: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from training_helpers import PYTHON, REPO, cli_env

    home = tmp_path / "home"
    cfg = write_yaml(tmp_path / "tiny.yaml", {**TINY_SEGMENT_CONFIG, "samples_per_volume": 8})
    out = tmp_path / "stdout.jsonl"
    cmd = [PYTHON, "-m", "pumit.cli.main", "train", "segment", "--data", str(hippo_msd), "--name", "cancelled",
           "--epochs", "50", "--device", "cpu", "--progress", "jsonl", "--config", str(cfg),
           "--base-model", str(tiny_mim_dir)]
    with open(out, "w") as f:
        proc = subprocess.Popen(cmd, env=cli_env(home), cwd=str(REPO), stdout=f, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 180
            while '"stage": "train"' not in out.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)  # what the Slicer module's Cancel does first
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            err = proc.stderr.read()
            proc.stderr.close()
    assert code == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "pumit: error: cancelled"
    events = _jsonl(out.read_text())
    assert events and all(e["stage"] != "done" for e in events)
    assert not (home / "models" / "catalog.json").exists()  # nothing registered
    runs = home / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # the auto-named run folder is removed
