"""`pumit demo` end to end on the shipped assets (CPU) and the built-in models in `pumit models list`.

No wall-clock assertion: how long the demo takes is a speed figure, not a correctness one (a CI runner's load is not
the code's speed), and no benchmark records it yet; the subprocess timeout only catches a hang."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pumit.cli import demo as demo_cli

ASSETS = Path(demo_cli.__file__).resolve().parent.parent / "assets"
SEG_ID_PREFIX = demo_cli.SEG_MODEL + "-v"
TOK_ID_PREFIX = demo_cli.TOKENIZER + "-v"

needs_assets = pytest.mark.skipif(
    not any((ASSETS / "models").glob(SEG_ID_PREFIX + "*")) or not any((ASSETS / "models").glob(TOK_ID_PREFIX + "*")),
    reason=f"reference models are not shipped in {ASSETS / 'models'} (run experiments/package_models.py)",
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PUMIT_HOME"] = str(tmp_path / "home")  # an empty user store: only the built-in models exist
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def test_demo_assets_have_licenses():
    demo = ASSETS / "demo"
    lic = (demo / "LICENSE.md").read_text()
    for f in (demo_cli.DEMO_MRI, demo_cli.DEMO_MRI_LABEL, *(f for _, f, _ in demo_cli.DEMO_RECON)):
        assert (demo / f).is_file(), f
        assert f in lic, f"{f} has no provenance/license entry in assets/demo/LICENSE.md"
    assert "CC BY-SA 4.0" in lic and "Apache-2.0" in lic
    shipped = {p.name for p in demo.iterdir() if p.name not in ("LICENSE.md", "SHA256SUMS")}
    for f in shipped:  # every shipped file (SampleData cases too), not only those the demo runs
        assert f in lic, f"{f} has no provenance/license entry in assets/demo/LICENSE.md"
    sums = dict(reversed(line.split()) for line in (demo / "SHA256SUMS").read_text().splitlines() if line.strip())
    import hashlib

    assert {f for f in shipped if f.endswith((".nii.gz", ".nrrd", ".dcm"))} <= set(sums), "every image has a checksum"
    for name, digest in sums.items():
        assert hashlib.sha256((demo / name).read_bytes()).hexdigest() == digest, name


@needs_assets
def test_shipped_models_small_with_cards():
    total = 0
    folders = [f for prefix in (SEG_ID_PREFIX, TOK_ID_PREFIX) for f in sorted((ASSETS / "models").glob(prefix + "*"))]
    assert len(folders) >= 2
    for folder in folders:  # every shipped version (two tokenizers: the default and the MIM chain's)
        for name in ("config.json", "model.safetensors", "MODEL_CARD.md", "checksums.json"):
            assert (folder / name).is_file(), folder / name
        meta = json.loads((folder / "config.json").read_text())["meta"]
        assert meta["license"] == "CC-BY-SA-4.0"  # inherits the MSD license
        assert "metrics" in meta and meta["name"] + "-v" + meta["version"] == folder.name
        assert "CC BY-SA 4.0" in (folder / "MODEL_CARD.md").read_text()
        total += sum(f.stat().st_size for f in folder.iterdir())
    assert total <= 20 * 1024 * 1024


@needs_assets
def test_models_list_shows_builtin(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pumit.cli.main", "models", "list", "--json"], capture_output=True,
                         text=True, env=_env(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr
    entries = {e["id"]: e for e in json.loads(out.stdout)}
    seg = [e for i, e in entries.items() if i.startswith(SEG_ID_PREFIX)]
    tok = [e for i, e in entries.items() if i.startswith(TOK_ID_PREFIX)]
    assert seg and tok, sorted(entries)
    assert seg[0]["model_type"] == "segmentation" and tok[0]["model_type"] == "tokenizer"
    assert seg[0].get("builtin", True)
    table = subprocess.run([sys.executable, "-m", "pumit.cli.main", "models", "list"], capture_output=True, text=True,
                           env=_env(tmp_path), timeout=120)
    assert table.returncode == 0 and demo_cli.SEG_MODEL in table.stdout and demo_cli.TOKENIZER in table.stdout
    verify = subprocess.run([sys.executable, "-m", "pumit.cli.main", "models", "verify", demo_cli.SEG_MODEL],
                            capture_output=True, text=True, env=_env(tmp_path), timeout=120)
    assert verify.returncode == 0, verify.stderr


@needs_assets
def test_demo_end_to_end_cpu(tmp_path):
    out_dir = tmp_path / "demo out"
    run = subprocess.run([sys.executable, "-m", "pumit.cli.main", "demo", "-o", str(out_dir)], capture_output=True,
                         text=True, env=_env(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr
    assert "demo done" in run.stdout
    for name in ("hippocampus_004_seg.nii.gz", "hippocampus_004_seg.labels.json", "spine_ct_recon.nii.gz",
                 "spine_ct_error.nii.gz", "spine_ct_recon.png", "spine_t2w_mri_recon.nii.gz", "spine_t2w_mri_recon.png",
                 "demo_montage.png", "demo_summary.json"):
        assert (out_dir / name).is_file() and (out_dir / name).stat().st_size > 0, name
    assert (out_dir / "demo_montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out_dir / "demo_summary.json").read_text())
    dice = summary["segmentation"]["dice_vs_expert"]
    assert set(dice) >= {"anterior", "posterior", "mean"}
    assert dice["mean"] > 0.3, dice  # a trained model, not noise (the reference model's validation Dice is higher)
    for rec in summary["reconstruction"]:
        m = rec["metrics"]
        assert math.isfinite(rec["psnr_db"]) and rec["psnr_db"] > 10, rec
        # never a PSNR alone, and better than a flat image: the old near-uniform tokenizer had Pearson 0.27-0.31
        assert {"pearson", "ssim", "std_ratio", "psnr_constant_db"} <= set(m), m
        assert m["pearson"] > 0.6 and m["psnr_db"] > m["psnr_constant_db"], m

    import numpy as np
    import SimpleITK as sitk

    img = sitk.ReadImage(str(ASSETS / "demo" / demo_cli.DEMO_MRI))
    seg = sitk.ReadImage(str(out_dir / "hippocampus_004_seg.nii.gz"))
    assert seg.GetSize() == img.GetSize() and np.allclose(seg.GetSpacing(), img.GetSpacing())
    assert np.allclose(seg.GetOrigin(), img.GetOrigin()) and np.allclose(seg.GetDirection(), img.GetDirection())
    assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, 1, 2}


def test_demo_missing_model_is_a_model_error(monkeypatch, tmp_path):
    from pumit.errors import ModelError

    monkeypatch.setattr("pumit.store.paths.builtin_model_dirs", lambda: [tmp_path])
    with pytest.raises(ModelError, match="missing"):
        demo_cli.find_builtin_model(demo_cli.SEG_MODEL)


def test_montage_labels_do_not_overlap():
    """Left and right thalamus centroids 12 px apart in an axial slice: their names used to print over each
    other. After spreading, no two text boxes overlap, every label stays in the image, and a lone label
    keeps its structure's centroid."""
    char_w, line_h = 2.0, 4.0
    named = [(50.0, 40.0, "Thalamus_L"), (62.0, 40.0, "Thalamus_R"), (56.0, 41.0, "LatVent_L"),
             (20.0, 80.0, "Hippocampus_L"), (2.0, 1.0, "Hippocampus_R")]
    out = demo_cli.spread_labels(named, (90, 110), char_w, line_h)
    assert [n for *_, n in out] == [n for *_, n in named]
    for i, (x, y, n) in enumerate(out):
        half = len(n) * char_w / 2
        assert half <= x <= 110 - half and line_h / 2 <= y <= 90 - line_h / 2, (n, x, y)
        for px, py, pn in out[:i]:
            assert abs(x - px) * 2 >= (len(n) + len(pn)) * char_w or abs(y - py) >= line_h, (n, pn)
    assert out[0] == named[0] and out[3] == named[3], "a label with room stays on its centroid"
    assert demo_cli.spread_labels([], (10, 10), 1.0, 1.0) == []
