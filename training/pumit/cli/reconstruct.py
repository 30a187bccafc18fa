"""``pumit reconstruct``: an image passed through the universal tokenizer, in the input's units and grid."""

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

_DESCRIPTION = """Encode INPUT into soft tokens with a tokenizer and decode it again, to see what the
tokens keep. OUTPUT has INPUT's geometry and intensity units (float32). Optional: the token-index
map on the token grid (--tokens; spacing = token spacing, the input's direction, origin at the centre
of the first token so that the token grid's corner is the input's first voxel corner), the absolute
error |input - reconstruction| (--error-map) and a PNG montage input | reconstruction | error with
the metrics (--montage). Always written next to OUTPUT: OUTPUT-STEM.recon.json with the quality
metrics (Pearson correlation, SSIM, std ratio, PSNR and the PSNR of a constant image at the input's
mean, on the whole input in its units: CT in HU) and the intensity normalization used and why (a file
that names no modality, e.g. NIfTI, gets one detected from its intensities: CT from Hounsfield units,
else MRI; --modality overrides)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reconstruct`` command."""
    p = subparsers.add_parser(
        "reconstruct", help="reconstruct an image through the tokenizer", description=_DESCRIPTION,
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="image file or DICOM series folder")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="reconstruction to write (.nii.gz, .nii, .nrrd or .mha)")
    p.add_argument("-t", "--tokenizer", required=True, metavar="ID_OR_PATH",
                   help="tokenizer id NAME-vX.Y.Z or NAME from the model store, or a model folder / .safetensors file")
    p.add_argument("--tokens", metavar="PATH", default=None, help="also write the token-index map (argmax) on the token grid")
    p.add_argument("--error-map", metavar="PATH", default=None, help="also write |input - reconstruction| (float32)")
    p.add_argument("--montage", metavar="PNG", default=None,
                   help="also write a PNG: middle slices of input | reconstruction | error, metrics in the title")
    add_input_options(p)
    add_device_options(p, windows=True, roi_required=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pumit reconstruct``."""
    from pumit.inference.reconstruct import reconstruct

    settings = settings_from_args(args)
    with progress_from_args(args) as progress:
        result = reconstruct(args.input, args.output, args.tokenizer, tokens=args.tokens, error_map=args.error_map,
                             montage=args.montage, settings=settings, progress=progress)
    if args.progress != "jsonl":
        from pumit.metrics import describe

        print(f"pumit: wrote {', '.join(str(p) for p in result.outputs)}; {describe(result.metrics)}", file=sys.stderr)
    return 0
