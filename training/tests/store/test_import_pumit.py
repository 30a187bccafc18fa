"""``pumit models import-pumit``: published Lightning / Fabric checkpoints → store → ``load_pretrained``, exactly;
malicious checkpoints are refused without running anything."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import pumit.cli.main as cli_main
from pumit.models import load_pretrained, read_record
from pumit.models.published import published_vit_config, vit_state_to_published
from pumit.models.vit import SpadViTMIM
from pumit.store import ModelStore
from pumit.store.hashing import sha256_file
from pumit.store.import_pumit import import_pumit_checkpoint
from store_helpers import only_models_command, run_models  # noqa: F401 (fixture)

KEYS_FILE = Path(__file__).resolve().parents[4] / "shared" / "pumit_checkpoint_keys.json"  # <repo>/../shared
SMALL_VIT = dict(embed_dim=64, depth=2, num_heads=2, mlp_hidden=96, codebook_size=32)


pytestmark = pytest.mark.usefixtures("only_models_command")


def published_keys() -> dict[str, dict[str, list[int]]]:
    if not KEYS_FILE.is_file():
        pytest.skip(f"published key list not found at {KEYS_FILE} (../shared is absent)")
    d = json.loads(KEYS_FILE.read_text())
    return {"vit": next(v for k, v in d.items() if k.startswith("pumit_vit_b")),
            "tokenizer": next(v for k, v in d.items() if k.startswith("pumit_tokenizer"))}


def random_state(shapes: dict[str, list[int]], seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.randn(*s, generator=g) * 0.02 + (1 if k.endswith("weight") and len(s) == 1 else 0))
                       for k, s in shapes.items())


def _put(root: nn.Module, key: str, value: torch.Tensor) -> None:
    *path, leaf = key.split(".")
    m = root
    for name in path:
        if name not in m._modules:
            m.add_module(name, nn.Module())
        m = m._modules[name]  # type: ignore[assignment]
    m.register_parameter(leaf, nn.Parameter(value.clone()))


def write_real_lightning_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Train a LightningModule whose parameters carry the published key names for one step and save it with
    ``Trainer.save_checkpoint`` (optimizer/scheduler states, loops, hyper-parameters with a Namespace and a
    Path: what Lightning really writes). Returns the saved state dict."""
    import lightning as L

    class Published(L.LightningModule):
        def __init__(self, lr: float = 1e-4, run: argparse.Namespace | None = None, data_root: Path | None = None):
            super().__init__()
            self.save_hyperparameters()
            for k, v in state.items():
                _put(self, k, v)

        def training_step(self, batch, batch_idx):  # noqa: ARG002
            return sum((p * p).sum() for p in self.parameters()) * 1e-3 + batch[0].sum() * 0

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)}

    module = Published(run=argparse.Namespace(seed=42, name="mim-b"), data_root=Path("/data/pumit"))
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(2, 1)), batch_size=2)
    trainer.fit(module, loader)
    trainer.save_checkpoint(path)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_real_lightning_checkpoint_round_trips_exactly_through_import_store_and_load(tmp_path, capsys):
    torch.set_num_threads(1)
    source = vit_state_to_published(SpadViTMIM(published_vit_config(**SMALL_VIT)).state_dict())
    ckpt = tmp_path / "pumit-b.ckpt"
    expected = write_real_lightning_checkpoint(ckpt, source)
    assert set(expected) == set(source)
    capsys.readouterr()  # Lightning's own log lines while training
    store_dir = tmp_path / "store"

    code, out, err = run_models(["import-pumit", str(ckpt), "--store", str(store_dir)], capsys)
    assert (code, err) == (0, "") and "imported pumit-vit-b-v1.0.0" in out
    store = ModelStore(store_dir, builtin_dirs=[])
    entry = store.info("pumit-vit-b")
    assert entry.model_type == "mim" and entry.license == "unspecified"
    assert entry.source == str(ckpt.resolve()) and entry.source_sha256 == sha256_file(ckpt)  # provenance: the .ckpt
    meta = read_record(entry.model_path)["meta"]
    prov = meta["provenance"]
    import lightning

    assert prov["source_file"] == "pumit-b.ckpt" and prov["source_sha256"] == sha256_file(ckpt)
    raw = torch.load(ckpt, weights_only=False)  # our own trusted file: what Lightning wrote
    assert isinstance(raw["hyper_parameters"]["run"], argparse.Namespace) and raw["optimizer_states"]
    assert prov["checkpoint"] == {"format": "lightning", "epoch": raw["epoch"], "global_step": 1,
                                  "pytorch-lightning_version": lightning.__version__}
    assert meta["input"] == {"channels": 1, "range": [-1, 1], "input_convention": "imagenet",
                             "normalization": {"scheme": "percentile", "percentiles": [0.5, 99.5]}}

    model = load_pretrained(store.resolve("pumit-vit-b"))
    cfg = model.config
    assert (cfg.norm_eps, cfg.pos_embed_rule, cfg.input_convention, cfg.in_channels) == (1e-5, "area_trilinear", "imagenet", 1)
    loaded = vit_state_to_published(model.state_dict())
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)  # bit-exact, RGB filters included
    assert run_models(["verify", "pumit-vit-b", "--store", str(store_dir)], capsys)[0] == 0

    code, _, err = run_models(["import-pumit", str(ckpt), "--store", str(store_dir)], capsys)  # never overwritten
    assert code == 3 and "already installed" in err and err.count("\n") == 1
    code, out, _ = run_models(["import-pumit", str(ckpt), "--store", str(store_dir), "--version", "1.0.1",
                        "--input-convention", "signed", "--json"], capsys)
    assert code == 0 and json.loads(out)["id"] == "pumit-vit-b-v1.0.1"
    signed = load_pretrained(store.resolve("pumit-vit-b-v1.0.1"))
    assert torch.equal(signed.vit.patch_embed.proj.weight, expected["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert signed.config.input_convention == "signed"


def test_full_size_published_checkpoints_import_exactly(tmp_path):
    """Both published layouts at full size (ViT-B 239 keys in a Lightning dict, the tokenizer's 45 keys in a
    Fabric dict), random weights from the shared key list."""
    torch.set_num_threads(1)
    keys = published_keys()
    store = ModelStore(tmp_path / "store", builtin_dirs=[])
    import lightning

    vit = random_state(keys["vit"])
    ckpt = tmp_path / "pumit-b.ckpt"
    torch.save({"epoch": 99, "global_step": 300000, "pytorch-lightning_version": lightning.__version__, "state_dict": vit,
                "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": [], "hparams_name": "kwargs",
                "hyper_parameters": {"mask_ratio": 0.55, "run": argparse.Namespace(seed=0)}}, ckpt)
    entry = import_pumit_checkpoint(ckpt, store=store)
    assert entry.id == "pumit-vit-b-v1.0.0"
    model = load_pretrained(store.resolve(entry.id))
    assert (model.config.embed_dim, model.config.depth, model.config.hidden) == (768, 12, 2048)
    loaded = vit_state_to_published(model.state_dict())
    assert set(loaded) == set(vit) and all(torch.equal(loaded[k], vit[k]) for k in vit)
    del model, loaded, vit

    tok = random_state(keys["tokenizer"], seed=1)
    fabric = tmp_path / "simple-soft.ckpt"
    torch.save({"model": tok, "discriminator": OrderedDict(w=torch.zeros(3)), "optimizer": {"state": {}, "param_groups": []},
                "step": 500000}, fabric)
    entry = import_pumit_checkpoint(fabric, store=store, name="pumit-soft-tokenizer")
    tokenizer = load_pretrained(store.resolve(entry.id))
    assert tokenizer.config.layout == "published" and tokenizer.config.in_channels == 1
    got = tokenizer.state_dict()
    assert set(got) == set(tok)
    luma = torch.tensor([0.299, 0.587, 0.114])
    for k, v in tok.items():
        if k == "encoder.0.weight":
            want = v.sum(1, keepdim=True)
        elif k == "decoder.8.weight":
            want = torch.einsum("c,ic...->i...", luma, v).unsqueeze(1)
        elif k == "decoder.8.bias":
            want = (luma * v).sum().reshape(1)
        else:
            want = v
        assert torch.equal(got[k], want), k
    assert read_record(entry.model_path)["meta"]["provenance"]["checkpoint"] == {"format": "fabric", "step": 500000}


class _System:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


class _Exec:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class _CallbackState:
    """A plain object of "the training code" (no custom reduce): still refused, classes are not on the allow-list."""

    def __init__(self) -> None:
        self.best = 0.5


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PUMIT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    code = "import sys; from pumit.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "models", "import-pumit", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("variant", ["torch_save_os_system", "raw_pickle_exec", "lightning_callback_object"])
def test_malicious_checkpoint_is_refused_and_executes_nothing(tmp_path, variant):
    marker = tmp_path / "pwned.txt"
    ckpt = tmp_path / "pumit-b.ckpt"
    weights = vit_state_to_published(SpadViTMIM(published_vit_config(**SMALL_VIT)).state_dict())
    if variant == "torch_save_os_system":
        torch.save({"state_dict": weights, "hyper_parameters": {"hook": _System(marker)}}, ckpt)
        wanted = "system"
    elif variant == "raw_pickle_exec":
        with open(ckpt, "wb") as f:
            pickle.dump({"state_dict": {}, "x": _Exec(marker)}, f, protocol=2)
        wanted = "exec"
    else:  # a checkpoint holding an object of the training code (here a test class): not on the allow-list
        torch.save({"state_dict": weights, "callbacks": {"cb": _CallbackState()}}, ckpt)
        wanted = "_CallbackState"
    home = tmp_path / "home"
    proc = _cli(str(ckpt), home=home)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("pumit: error: refusing to load") and wanted in proc.stderr
    assert not marker.exists()  # nothing ran
    store = ModelStore(home / "models", builtin_dirs=[])
    assert store.list() == [] and not [p for p in (home / "models").glob("*") if not p.name.startswith(".")]


def test_import_errors_are_one_line_with_documented_codes(tmp_path, capsys):
    store = str(tmp_path / "store")
    code, _, err = run_models(["import-pumit", str(tmp_path / "missing.ckpt"), "--store", store], capsys)
    assert code == 2 and err.startswith("pumit: error: checkpoint not found") and err.count("\n") == 1
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, other)
    code, _, err = run_models(["import-pumit", str(other), "--store", store], capsys)
    assert code == 3 and "not a published PUMIT checkpoint" in err
    vit = tmp_path / "pumit-b.ckpt"
    torch.save({"state_dict": vit_state_to_published(SpadViTMIM(published_vit_config(**SMALL_VIT)).state_dict())}, vit)
    code, _, err = run_models(["import-pumit", str(vit), "--kind", "tokenizer", "--store", store], capsys)
    assert code == 3 and "holds a published vit, not a tokenizer" in err
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(vit.read_bytes()[:1000])
    code, _, err = run_models(["import-pumit", str(bad), "--store", store], capsys)
    assert code == 3 and err.startswith("pumit: error: refusing to load") and err.count("\n") == 1
    assert ModelStore(store, builtin_dirs=[]).list() == []


def test_fine_tuning_from_an_imported_backbone_keeps_the_published_settings(tmp_path):
    """``pumit train segment --base-model pumit-vit-b`` builds its segmenter from the imported backbone: the
    published eps / pos-embed rule / input convention travel into the new model, the weights are copied."""
    from pumit.training.segmentation import build_segmenter

    torch.set_num_threads(1)
    state = vit_state_to_published(SpadViTMIM(published_vit_config(**SMALL_VIT)).state_dict())
    ckpt = tmp_path / "pumit-b.ckpt"
    torch.save({"state_dict": state, "global_step": 10}, ckpt)
    store = ModelStore(tmp_path / "store", builtin_dirs=[])
    import_pumit_checkpoint(ckpt, store=store)
    seg = build_segmenter({"base_model": "pumit-vit-b", "store": str(store.root), "adapter_channels": [8, 8, 8, 8],
                           "stem_channels": [4, 8]}, {"0": "background", "1": "organ"})
    vcfg = seg.config.vit
    assert (vcfg.norm_eps, vcfg.pos_embed_rule, vcfg.input_convention, vcfg.in_channels) == (1e-5, "area_trilinear", "imagenet", 1)
    backbone = seg.vit.state_dict()
    assert all(torch.equal(backbone[k], v) for k, v in state.items() if not k.startswith("mim_head."))
    div = seg.required_divisor((1.0, 1.0, 1.0))
    with torch.no_grad():
        out = seg.eval()(torch.rand(1, 1, *div) * 2 - 1, (1.0, 1.0, 1.0))
    assert out.shape == (1, 2, *div) and torch.isfinite(out).all()


def test_imported_published_tokenizer_reconstructs_a_real_image_through_the_cli(tmp_path, monkeypatch, capsys):
    """``pumit reconstruct`` with an imported published-layout tokenizer on a real NIfTI file (SimpleITK)."""
    import SimpleITK as sitk

    from pumit.models.published import published_tokenizer_config
    from pumit.models.tokenizer import UniversalTokenizer

    torch.set_num_threads(1)
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("models", "reconstruct"))
    torch.manual_seed(0)
    rgb = UniversalTokenizer(published_tokenizer_config(in_channels=3, channels=(16, 32, 64), codebook_size=48))
    ckpt = tmp_path / "simple-soft.ckpt"
    torch.save({"model": rgb.state_dict(), "discriminator": {}, "step": 1}, ckpt)
    assert run_models(["import-pumit", str(ckpt)], capsys)[0] == 0  # into $PUMIT_HOME/models
    img = sitk.GetImageFromArray((torch.rand(16, 32, 32) * 1000).numpy())
    img.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(img, str(tmp_path / "in.nii.gz"))
    code = cli_main.main(["reconstruct", str(tmp_path / "in.nii.gz"), "-t", "pumit-tokenizer", "-o", str(tmp_path / "out.nii.gz"),
                          "--device", "cpu", "--progress", "none"])
    _, err = capsys.readouterr()
    assert code == 0, err
    out = sitk.ReadImage(str(tmp_path / "out.nii.gz"))
    assert out.GetSize() == img.GetSize() and out.GetSpacing() == img.GetSpacing()
    assert torch.isfinite(torch.from_numpy(sitk.GetArrayFromImage(out))).all()
