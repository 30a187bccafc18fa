"""Install, list, info, resolve, verify and remove with real safetensors models."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from safetensors.torch import load_file
from store_helpers import make_lone_file, make_model_dir, model_config, tiny_state_dict

from pumit.errors import InputError, ModelError
from pumit.store import ModelStore, default_store_root, register_new_version
from pumit.store.hashing import sha256_file


def _store_content(store: ModelStore) -> list[str]:
    """Everything in the store except the lock file and the (empty) staging/trash folders."""
    if not store.root.exists():
        return []
    out = []
    for p in sorted(store.root.rglob("*")):
        rel = p.relative_to(store.root).as_posix()
        if rel in (".catalog.lock", ".staging", ".trash"):
            continue
        out.append(rel)
    return out


def test_install_list_info_remove(store: ModelStore, src: Path) -> None:
    entry = store.install(src)
    assert entry.id == "knee-v1.0.0" and entry.name == "knee" and entry.version == "1.0.0"
    assert entry.model_type == "segmentation" and entry.task == "knee cartilage segmentation"
    assert entry.labels == {"0": "background", "1": "anterior", "2": "posterior"}
    assert entry.input["modality"] == "MRI" and entry.license == "Apache-2.0"
    assert entry.source == str(src.resolve()) and entry.installed_at
    assert entry.weights_sha256 == sha256_file(src / "model.safetensors")
    assert set(entry.files) == {"config.json", "model.safetensors"}
    assert entry.size == sum(f.stat().st_size for f in src.iterdir())

    # the copy is a loadable model with identical weights, and the source is untouched
    path = store.resolve("knee-v1.0.0")
    assert path == store.root / "knee-v1.0.0" and path.is_dir()
    loaded = load_file(str(path / "model.safetensors"))
    for k, v in tiny_state_dict(0).items():
        assert (loaded[k] == v).all()
    assert (src / "model.safetensors").exists()

    catalog = json.loads(store.catalog_path.read_text())
    rec = catalog["models"]["knee-v1.0.0"]
    assert rec["weights_sha256"] == entry.weights_sha256
    assert rec["files"]["config.json"]["sha256"] == sha256_file(src / "config.json")
    assert rec["license"] == "Apache-2.0" and rec["source"] == str(src.resolve())

    assert [e.id for e in store.list()] == ["knee-v1.0.0"]
    assert store.info("knee").to_dict() == entry.to_dict()
    assert store.verify("knee-v1.0.0").id == "knee-v1.0.0"

    removed = store.remove("knee-v1.0.0")
    assert removed.id == "knee-v1.0.0"
    assert store.list() == [] and not (store.root / "knee-v1.0.0").exists()
    assert _store_content(store) == ["catalog.json"]
    with pytest.raises(ModelError, match="unknown model"):
        store.remove("knee-v1.0.0")


def test_name_and_version_options_and_defaults(store: ModelStore, tmp_path: Path) -> None:
    d = make_model_dir(tmp_path, "a", config=model_config(name="Knee MRI Seg", version=None))
    assert store.install(d).id == "knee-mri-seg-v1.0.0"  # meta name slugified, default version
    assert store.install(d, name="other", version="2.3.4").id == "other-v2.3.4"
    e = make_model_dir(tmp_path, "hip-v0.2.0", config=model_config(name=None, version=None))
    assert store.install(e).id == "hip-v0.2.0"  # from the folder name
    with pytest.raises(InputError, match="malformed model name"):
        store.install(d, name="bad name")
    with pytest.raises(InputError, match="semantic version"):
        store.install(d, version="1.0")
    f = make_model_dir(tmp_path, "b", config=model_config(version="latest"))
    with pytest.raises(ModelError, match="pass --version"):
        store.install(f)


def test_lone_safetensors_file(store: ModelStore, tmp_path: Path) -> None:
    f = make_lone_file(tmp_path / "dl" / "spine.safetensors", config=model_config(name="spine", version="0.3.0"))
    entry = store.install(f, expected_sha256=sha256_file(f))
    assert entry.id == "spine-v0.3.0" and entry.format == "safetensors"
    path = store.resolve("spine")
    assert path.is_file() and path.suffix == ".safetensors"
    assert store.verify("spine").id == "spine-v0.3.0"
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file(tiny_state_dict(), str(plain))
    with pytest.raises(ModelError, match="pumit_config"):
        store.install(plain)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archives(store: ModelStore, tmp_path: Path, kind: str) -> None:
    d = make_model_dir(tmp_path / "pkg", "liver-v1.1.0", config=model_config(name="liver", version="1.1.0"))
    archive = tmp_path / f"liver.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for f in d.iterdir():
                zf.write(f, f"liver-v1.1.0/{f.name}")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(d, arcname="liver-v1.1.0")
    entry = store.install(archive, expected_sha256=sha256_file(archive))
    assert entry.id == "liver-v1.1.0" and entry.source_sha256 == sha256_file(archive)
    assert set(entry.files) == {"config.json", "model.safetensors"}
    assert _store_content(store) == ["catalog.json", "liver-v1.1.0", "liver-v1.1.0/config.json",
                                     "liver-v1.1.0/model.safetensors"]


def test_unsafe_zip_refused(store: ModelStore, tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(ModelError, match="unsafe member"):
        store.install(archive)
    assert not (tmp_path / "escape.txt").exists() and not (store.root / "escape.txt").exists()


def test_expected_sha256_mismatch_leaves_nothing(store: ModelStore, src: Path) -> None:
    with pytest.raises(ModelError, match="checksum mismatch"):
        store.install(src, expected_sha256="0" * 64)
    assert store.list() == []
    assert _store_content(store) == []
    assert list((store.root / ".staging").iterdir()) == []
    with pytest.raises(InputError, match="64 hexadecimal"):
        store.install(src, expected_sha256="abc")
    # the weights' checksum is accepted for a folder (also with a sha256: prefix and upper case)
    assert store.install(src, expected_sha256="sha256:" + sha256_file(src / "model.safetensors").upper())


def test_source_checksums_json_checked(store: ModelStore, src: Path) -> None:
    sums = {n: sha256_file(src / n) for n in ("model.safetensors", "config.json")}
    (src / "checksums.json").write_text(json.dumps(sums))
    assert store.install(src).id == "knee-v1.0.0"
    # corrupt the weights after the checksums were recorded: refused, nothing left behind
    data = bytearray((src / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (src / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch for model.safetensors"):
        store.install(src, version="1.0.1")
    assert [e.id for e in store.list()] == ["knee-v1.0.0"]
    assert _store_content(store) == ["catalog.json", "knee-v1.0.0", "knee-v1.0.0/checksums.json",
                                     "knee-v1.0.0/config.json", "knee-v1.0.0/model.safetensors"]


def test_sidecar_sha256_for_lone_file(store: ModelStore, tmp_path: Path) -> None:
    f = make_lone_file(tmp_path / "m.safetensors")
    (tmp_path / "m.safetensors.sha256").write_text("f" * 64 + "  m.safetensors\n")
    with pytest.raises(ModelError, match="checksum mismatch"):
        store.install(f)
    (tmp_path / "m.safetensors.sha256").write_text(sha256_file(f) + "  m.safetensors\n")
    assert store.install(f).id == "knee-v1.0.0"


def test_install_from_another_store_checks_its_catalog(store: ModelStore, src: Path, tmp_path: Path) -> None:
    other = ModelStore(tmp_path / "other", builtin_dirs=[])
    other.install(src)
    (other.root / "knee-v1.0.0" / "config.json").write_text(json.dumps(model_config(license="stolen")))
    with pytest.raises(ModelError, match="catalog.json"):
        store.install(other.root / "knee-v1.0.0")


def test_never_overwrite(store: ModelStore, src: Path, tmp_path: Path) -> None:
    first = store.install(src)
    other = make_model_dir(tmp_path, "other", seed=1)
    with pytest.raises(ModelError, match="never overwritten.*1.0.1"):
        store.install(other)
    assert store.info("knee-v1.0.0").weights_sha256 == first.weights_sha256
    assert store.verify("knee-v1.0.0")


def test_bare_name_is_latest_and_next_version(store: ModelStore, tmp_path: Path) -> None:
    for i, v in enumerate(["1.2.0", "1.10.0", "1.9.3"]):
        store.install(make_model_dir(tmp_path, f"m{i}", seed=i), version=v)
    assert store.versions("knee") == ["1.2.0", "1.9.3", "1.10.0"]
    assert store.info("knee").id == "knee-v1.10.0"
    assert store.resolve("knee") == store.root / "knee-v1.10.0"
    assert store.resolve("KNEE-v1.2.0") == store.root / "knee-v1.2.0"
    assert store.next_version("knee") == "1.10.1" and store.next_version("new") == "1.0.0"
    tuned = make_model_dir(tmp_path, "tuned", seed=9)
    entry = register_new_version(tuned, "knee", store=store)
    assert entry.id == "knee-v1.10.1" and store.info("knee").id == "knee-v1.10.1"
    assert store.register_new_version(tuned, "knee").id == "knee-v1.10.2"
    with pytest.raises(InputError, match="full id"):
        store.remove("knee")


def test_resolve(store: ModelStore, src: Path, tmp_path: Path) -> None:
    assert store.resolve(src) == src.resolve()  # a model path works directly, store or not
    assert store.resolve(str(src)) == src.resolve()
    with pytest.raises(ModelError, match="no models are installed"):
        store.resolve("knee")
    store.install(src)
    with pytest.raises(ModelError, match="unknown model 'hip'; available: knee-v1.0.0"):
        store.resolve("hip")
    with pytest.raises(ModelError, match="unknown model.*available: knee-v1.0.0"):
        store.resolve("knee-v9.9.9")
    with pytest.raises(InputError, match="malformed model id.*available: knee-v1.0.0"):
        store.resolve("knee seg")
    with pytest.raises(InputError, match="model path not found"):
        store.resolve(tmp_path / "missing")
    with pytest.raises(ModelError, match="not a model folder"):
        store.resolve(tmp_path)
    shutil.rmtree(store.root / "knee-v1.0.0")
    with pytest.raises(ModelError, match="missing"):
        store.resolve("knee")


def test_pumit_home_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, src: Path) -> None:
    monkeypatch.setenv("PUMIT_HOME", str(tmp_path / "home"))
    assert default_store_root() == tmp_path / "home" / "models"
    store = ModelStore(builtin_dirs=[])
    assert store.root == tmp_path / "home" / "models"
    store.install(src)
    assert (tmp_path / "home" / "models" / "catalog.json").is_file()
    assert (tmp_path / "home" / "models" / "knee-v1.0.0" / "model.safetensors").is_file()


def test_default_root_without_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PUMIT_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    import sys

    if sys.platform.startswith("linux"):
        assert default_store_root() == tmp_path / ".local" / "share" / "pumit" / "models"


def test_verify_detects_tampering(store: ModelStore, src: Path) -> None:
    store.install(src)
    weights = store.root / "knee-v1.0.0" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4] ^= 0x01  # flip one bit of a weight: still a valid safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="model.safetensors: SHA-256 mismatch"):
        store.verify("knee")
    weights.write_bytes(bytes(data[:-4]) + (src / "model.safetensors").read_bytes()[-4:])
    assert store.verify("knee")
    (store.root / "knee-v1.0.0" / "extra.pt").write_bytes(b"x")
    with pytest.raises(ModelError, match="extra.pt: unexpected file"):
        store.verify("knee")
    (store.root / "knee-v1.0.0" / "extra.pt").unlink()
    (store.root / "knee-v1.0.0" / "config.json").unlink()
    with pytest.raises(ModelError, match="config.json: missing"):
        store.verify("knee")


@pytest.mark.parametrize("case", ["no-config", "bad-type", "pickle", "corrupt-weights", "bad-json"])
def test_invalid_models_refused(store: ModelStore, tmp_path: Path, case: str) -> None:
    d = make_model_dir(tmp_path, "bad")
    if case == "no-config":
        (d / "config.json").unlink()
    elif case == "bad-type":
        (d / "config.json").write_text(json.dumps({**model_config(), "model_type": "gan"}))
    elif case == "pickle":
        (d / "extra.pth").write_bytes(b"\x80\x04N.")
    elif case == "corrupt-weights":
        (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-10])
    else:
        (d / "config.json").write_text("{not json")
    with pytest.raises(ModelError):
        store.install(d)
    assert store.list() == [] and _store_content(store) == []


def test_missing_source_is_input_error(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model not found"):
        store.install(tmp_path / "nope")
    (tmp_path / "w.pt").write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelError, match="pickle"):
        store.install(tmp_path / "w.pt")


def test_corrupt_catalog_is_a_clear_error(store: ModelStore, src: Path) -> None:
    store.install(src)
    store.catalog_path.write_text("{broken")
    with pytest.raises(ModelError, match="catalog.*corrupt"):
        store.list()


def test_builtin_models(tmp_path: Path, src: Path) -> None:
    builtin = tmp_path / "assets" / "models"
    make_model_dir(builtin, "demo-knee-v0.1.0", config=model_config(name="demo-knee", version="0.1.0"))
    make_lone_file(builtin / "demo-spine-v0.1.0.safetensors", config=model_config(name="demo-spine"))
    (builtin / "not-a-model").mkdir()
    store = ModelStore(tmp_path / "store", builtin_dirs=[builtin])
    entries = {e.id: e for e in store.list()}
    assert set(entries) == {"demo-knee-v0.1.0", "demo-spine-v0.1.0"}
    assert all(e.builtin for e in entries.values())
    assert store.resolve("demo-spine") == builtin / "demo-spine-v0.1.0.safetensors"
    info = store.info("demo-knee")
    assert info.weights_sha256 == sha256_file(builtin / "demo-knee-v0.1.0" / "model.safetensors")
    assert store.verify("demo-knee").id == "demo-knee-v0.1.0"
    with pytest.raises(ModelError, match="built-in"):
        store.remove("demo-knee-v0.1.0")
    with pytest.raises(ModelError, match="built-in"):
        store.install(builtin / "demo-knee-v0.1.0")
    # fine-tuning a built-in model gets the next version in the user store
    tuned = store.register_new_version(src, "demo-knee")
    assert tuned.id == "demo-knee-v0.1.1" and not tuned.builtin
    assert store.info("demo-knee").id == "demo-knee-v0.1.1"


def test_resolve_prefers_ids_over_same_named_folders(store: ModelStore, src: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store.install(src)
    make_model_dir(tmp_path / "cwd", "knee", seed=3)
    make_model_dir(tmp_path / "cwd", "local", seed=4)
    monkeypatch.chdir(tmp_path / "cwd")
    assert store.resolve("knee") == store.root / "knee-v1.0.0"  # the id wins over ./knee
    assert store.resolve("local") == (tmp_path / "cwd" / "local").resolve()  # no such id: the folder
    assert store.resolve("./knee") == (tmp_path / "cwd" / "knee").resolve()
