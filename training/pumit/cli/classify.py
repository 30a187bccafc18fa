"""``pumit classify``: class probabilities of an image as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from pumit.inference.cli_options import (
    EXIT_CODES,
    add_device_options,
    add_input_options,
    progress_from_args,
    settings_from_args,
)

_DESCRIPTION = """Classify INPUT (image file or DICOM series folder) with a classification model and
print the class probabilities as JSON on stdout, or write them to -o FILE.json:
{"model": ID, "input": INPUT, "prediction": {"value", "name", "probability"},
 "probabilities": [{"value", "name", "probability"}, ...]}.
With --progress jsonl and no -o, stdout carries the progress lines and the final "done" line holds
the result under the key "result"."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``classify`` command."""
    p = subparsers.add_parser(
        "classify", help="classify an image with a model", description=_DESCRIPTION, epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="image file or DICOM series folder")
    p.add_argument("-m", "--model", required=True, metavar="ID_OR_PATH",
                   help="model id NAME-vX.Y.Z or NAME from the model store, or a model folder / .safetensors file")
    p.add_argument("-o", "--output", metavar="FILE.json", default=None, help="write the JSON here instead of stdout")
    add_input_options(p)
    add_device_options(p, windows=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pumit classify``."""
    from pumit.inference.classify import classify

    settings = settings_from_args(args)
    with progress_from_args(args) as progress:
        result = classify(args.input, args.model, output=args.output, settings=settings, progress=progress)
    if args.output is None and args.progress != "jsonl":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        sys.stdout.flush()
    elif args.output is not None and args.progress != "jsonl":
        best = result.predicted
        print(f"pumit: {best.name} ({result.probabilities[best.value]:.3f}); wrote {args.output}", file=sys.stderr)
    return 0
