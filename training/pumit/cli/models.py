"""``pumit models``: manage the local model store (list, install, import-pumit, info, verify, remove, path).

Fully offline: models are installed from local folders, ``.safetensors`` files or archives;
``import-pumit`` converts a published PUMIT ``.ckpt`` the user downloaded by hand (read without executing
pickled code, see :mod:`pumit.store.import_pumit`).
"""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any

from pumit.store import ModelEntry, ModelStore

_DESCRIPTION = """Manage the local, versioned model store. Models are identified as NAME-vX.Y.Z
(e.g. knee-seg-v1.0.0); where an ID is expected, a bare NAME means its latest version.
The store is $PUMIT_HOME/models if PUMIT_HOME is set, else the platform user data folder
(~/.local/share/pumit/models, %LOCALAPPDATA%\\pumit\\models, ~/Library/Application Support/pumit/models).
Built-in models shipped with pumit are listed too (read-only)."""

_EPILOG = """exit codes: 0 success, 2 bad input (missing path, malformed id/version/checksum),
3 model problem (unknown id, id exists, checksum mismatch, invalid or tampered model), 4 disk full / store busy"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, 88)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command and its sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", metavar="DIR", default=None,
        help="model store folder (default: $PUMIT_HOME/models, else the platform user data folder)",
    )
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "models", help="list, install, inspect, verify and remove models", description=_DESCRIPTION,
        epilog=_EPILOG, formatter_class=fmt,
    )
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    sub.required = True

    q = sub.add_parser("list", parents=[common], help="list installed and built-in models",
                       description=_wrap("List the models of the store and the built-in ones."), epilog=_EPILOG,
                       formatter_class=fmt)
    q.add_argument("--json", action="store_true", help="print a JSON array of model entries instead of a table")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser(
        "install", parents=[common], help="copy a model into the store",
        description=_wrap("Copy a model into the store: a folder with config.json + model.safetensors, a lone "
        ".safetensors file with its config in the 'pumit_config' metadata, or a .zip/.tar.gz archive of "
        "either. Checksums in the model's checksums.json (or FILE.sha256) are checked. An existing id is "
        "never overwritten."), epilog=_EPILOG, formatter_class=fmt,
    )
    q.add_argument("path", metavar="FILE_OR_DIR", help="model folder, .safetensors file or .zip/.tar.gz archive")
    q.add_argument("--name", metavar="N", help="model name (default: meta.name of the config, else the file name)")
    q.add_argument("--version", metavar="X.Y.Z",
                   help="semantic version (default: meta.version, else from a NAME-vX.Y.Z file name, else 1.0.0)")
    q.add_argument("--sha256", metavar="HEX",
                   help="refuse to install unless the SHA-256 of FILE (or of the weights model.safetensors) is HEX")
    q.add_argument("--json", action="store_true", help="print the installed entry as JSON")
    q.set_defaults(func=cmd_install)

    q = sub.add_parser(
        "import-pumit", parents=[common], help="convert and install a published PUMIT checkpoint (.ckpt)",
        description=_wrap("Convert the authors' published PUMIT checkpoint (pumit-b.ckpt: Lightning, the MIM ViT-B; "
        "simple-soft.ckpt: Fabric, the soft tokenizer) into a pumit model and install it into the store as "
        "safetensors + config with provenance (source file name, SHA-256, licence). The file is read with "
        "torch.load(weights_only=True) and an allow-list: a checkpoint that needs any other pickled object is "
        "refused (exit 3) and nothing in it is executed. Loading is strict and every weight is verified."),
        epilog=_EPILOG, formatter_class=fmt,
    )
    q.add_argument("path", metavar="FILE.ckpt", help="pumit-b.ckpt or simple-soft.ckpt (downloaded by hand)")
    q.add_argument("--name", metavar="N", help="model name (default: pumit-vit-b or pumit-tokenizer)")
    q.add_argument("--version", metavar="X.Y.Z", help="semantic version (default: 1.0.0)")
    q.add_argument("--kind", choices=("vit", "tokenizer"), help="refuse the file unless it holds this model (default: detect)")
    q.add_argument("--channels", type=int, choices=(1, 3), default=1,
                   help="input channels of the installed model: 1 grey (default; RGB filters folded exactly) or 3 RGB")
    q.add_argument("--input-convention", choices=("imagenet", "signed"), default="imagenet",
                   help="ViT only: 'imagenet' (default) keeps the RGB filters and maps pumit's [-1, 1] input onto the "
                        "ImageNet-normalised RGB it was pre-trained on (reproduces the published features); 'signed' "
                        "sums the RGB filters (the authors' fine-tuning convention)")
    q.add_argument("--license", metavar="TEXT", help="licence recorded with the model (default: 'unspecified': the authors state none)")
    q.add_argument("--json", action="store_true", help="print the installed entry as JSON")
    q.set_defaults(func=cmd_import_pumit)

    q = sub.add_parser("remove", parents=[common], help="delete a model version from the store",
                       description=_wrap("Delete a model version (full ID NAME-vX.Y.Z) from the store. "
                                         "Built-in models cannot be removed."), epilog=_EPILOG, formatter_class=fmt)
    q.add_argument("id", metavar="ID", help="full model id NAME-vX.Y.Z")
    q.set_defaults(func=cmd_remove)

    q = sub.add_parser("info", parents=[common], help="show a model's details",
                       description=_wrap("Show a model's task, labels, input requirements, license, "
                                         "checksums and origin."),
                       epilog=_EPILOG, formatter_class=fmt)
    q.add_argument("id", metavar="ID", help="model id NAME-vX.Y.Z, or NAME for the latest version")
    q.add_argument("--json", action="store_true", help="print the entry as JSON")
    q.set_defaults(func=cmd_info)

    q = sub.add_parser("verify", parents=[common], help="recompute a model's checksums",
                       description=_wrap("Recompute the SHA-256 of every file of a model and compare with the catalog; "
                                         "fails (exit 3) on a modified, missing or unexpected file."), epilog=_EPILOG,
                       formatter_class=fmt)
    q.add_argument("id", metavar="ID", help="model id NAME-vX.Y.Z, or NAME for the latest version")
    q.set_defaults(func=cmd_verify)

    q = sub.add_parser("path", parents=[common], help="print the path to load a model from",
                       description=_wrap("Print the folder (or .safetensors file) a model id resolves to."),
                       epilog=_EPILOG, formatter_class=fmt)
    q.add_argument("id", metavar="ID", help="model id NAME-vX.Y.Z, NAME for the latest version, or a model path")
    q.set_defaults(func=cmd_path)


def _store(args: argparse.Namespace) -> ModelStore:
    return ModelStore(args.store)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def human_size(n: int) -> str:
    """``1536`` → ``1.5 KB`` (powers of 1024)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def cmd_list(args: argparse.Namespace) -> int:
    """``pumit models list``."""
    store = _store(args)
    entries = store.list()
    if args.json:
        _print_json([e.to_dict() for e in entries])
        return 0
    if not entries:
        print(f"no models in {store.root} (add one with: pumit models install FILE_OR_DIR)")
        return 0
    rows = [("ID", "TYPE", "TASK", "SIZE", "LICENSE", "WHERE")]
    rows += [(e.id, e.model_type, e.task or "-", human_size(e.size), e.license or "-",
              "built-in" if e.builtin else "store") for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    """``pumit models install``."""
    store = _store(args)
    entry = store.install(args.path, name=args.name, version=args.version, expected_sha256=args.sha256)
    if args.json:
        _print_json(entry.to_dict())
    else:
        print(f"installed {entry.id} ({human_size(entry.size)}) in {entry.folder}")
    return 0


def cmd_import_pumit(args: argparse.Namespace) -> int:
    """``pumit models import-pumit``."""
    from pumit.store.import_pumit import import_pumit_checkpoint

    entry = import_pumit_checkpoint(
        args.path, name=args.name, version=args.version, kind=args.kind, channels=args.channels,
        input_convention=args.input_convention, license=args.license, store=_store(args),
    )
    if args.json:
        _print_json(entry.to_dict())
    else:
        print(f"imported {entry.id} ({entry.model_type}, {human_size(entry.size)}) from {entry.source} in {entry.folder}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """``pumit models remove``."""
    entry = _store(args).remove(args.id)
    print(f"removed {entry.id}")
    return 0


def format_entry(e: ModelEntry) -> str:
    """Human-readable multi-line description of an entry."""
    lines = [
        ("id", e.id), ("type", e.model_type), ("task", e.task or "-"),
        ("where", "built-in (read-only)" if e.builtin else "store"), ("path", str(e.model_path)),
        ("license", e.license or "-"), ("description", e.description or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in e.labels.items()) or "-"),
        ("input", json.dumps(e.input, ensure_ascii=False) if e.input else "-"),
        ("size", human_size(e.size)), ("weights", f"{e.weights_file} sha256:{e.weights_sha256 or '-'}"),
        ("pumit", e.pumit_version or "-"), ("source", e.source or "-"), ("installed", e.installed_at or "-"),
    ]
    out = [f"{k + ':':13}{v}" for k, v in lines]
    out.append("files:")
    out += [f"  {rel}  {human_size(r.size)}  sha256:{r.sha256 or '-'}" for rel, r in sorted(e.files.items())]
    return "\n".join(out)


def cmd_info(args: argparse.Namespace) -> int:
    """``pumit models info``."""
    entry = _store(args).info(args.id)
    if args.json:
        _print_json(entry.to_dict())
    else:
        print(format_entry(entry))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``pumit models verify``."""
    entry = _store(args).verify(args.id)
    checked = sum(1 for r in entry.files.values() if r.sha256)
    note = "" if checked == len(entry.files) else f" ({len(entry.files) - checked} without recorded checksum)"
    print(f"OK {entry.id}: {checked} file(s) match their recorded SHA-256{note}")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    """``pumit models path``."""
    print(_store(args).resolve(args.id))
    return 0
