"""``pumit segment``: label map of an image with a segmentation model, on exactly the input's grid."""

from __future__ import annotations

import argparse
import sys

from pumit.inference.cli_options import (
    EXIT_CODES,
    add_device_options,
    add_input_options,
    progress_from_args,
    settings_from_args,
)

_DESCRIPTION = """Segment INPUT (NIfTI, NRRD, MetaImage, a single DICOM file or a DICOM series folder)
with a segmentation model and write a label map with exactly INPUT's size, origin, spacing and
direction, plus a sidecar OUTPUT-stem.labels.json with label names and colors. The model runs at the
image's own spacing (spatially adaptive); the image is resampled only if its spacing is outside the
model's supported range (a warning says so, and the labels are mapped back with nearest neighbour)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment`` command."""
    p = subparsers.add_parser(
        "segment", help="segment an image with a model", description=_DESCRIPTION, epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="image file or DICOM series folder")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="label map to write (.nii.gz, .nii, .nrrd or .mha)")
    p.add_argument("-m", "--model", required=True, metavar="ID_OR_PATH",
                   help="model id NAME-vX.Y.Z or NAME (latest version) from the model store, or a model folder / "
                        ".safetensors file")
    p.add_argument("--probabilities", metavar="PATH", default=None,
                   help="also write the class probabilities (float32, one component per class) on the input grid")
    add_input_options(p)
    add_device_options(p, windows=True, roi_required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pumit segment``; returns the exit code (errors are raised as ``PumitError``)."""
    from pumit.inference.segment import segment

    settings = settings_from_args(args)
    with progress_from_args(args) as progress:
        result = segment(args.input, args.output, args.model, probabilities=args.probabilities,
                         settings=settings, progress=progress)
    if args.progress != "jsonl":
        extra = f" and {args.probabilities}" if args.probabilities else ""
        print(f"pumit: wrote {result.outputs[0]} (+ {result.outputs[1].name}){extra}", file=sys.stderr)
    return 0
