"""``pumit data``: index heterogeneous image collections and pre-process them for training.

``pumit data index SOURCES... -o index.jsonl`` and ``pumit data preprocess index.jsonl -o OUTDIR``;
the manifest formats are documented in ``docs/data.md``. The heavy imports (torch, MONAI) happen only
when a command runs, so ``pumit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap

_EPILOG = """exit codes: 0 success (unreadable inputs are skipped and counted, not fatal),
2 bad input: missing source, bad option, or (with --check / preprocess) a label map that does not
match its image or holds undeclared values"""

_AXES = {"z": 0, "y": 1, "x": 2}


def _wrap(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), 88)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command with its ``index`` and ``preprocess`` actions."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "data", help="index and pre-process training data", formatter_class=fmt, epilog=_EPILOG,
        description=_wrap("""Build training data from heterogeneous collections: `index` lists images (MSD
        folders, MedMNIST .npz, folders of NIfTI/NRRD/MHA/PNG/JPEG, DICOM series) into a JSON Lines manifest;
        `preprocess` moves the slice axis first, crops to the foreground, shrinks large images and stores
        memory-mappable .npy arrays. See docs/data.md."""),
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    q = sub.add_parser(
        "index", help="index image collections into a manifest (JSON Lines)", formatter_class=fmt, epilog=_EPILOG,
        description=_wrap("""Index SOURCES into a JSON Lines manifest, one record per image: path, label,
        modality, spacing (thickness, in-plane H, in-plane W) mm, shape (C, D, H, W), depth axis, split,
        dataset. A source is an MSD folder (with dataset.json), a MedMNIST .npz, a folder searched
        recursively, an image file, a DICOM series folder, or a hand-written .jsonl list. Unreadable files
        are reported and skipped."""),
    )
    q.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="MSD folder or dataset.json, MedMNIST .npz, folder, image file, DICOM folder, or .jsonl list")
    q.add_argument("-o", "--output", required=True, metavar="MANIFEST",
                   help="manifest to write (JSON Lines, e.g. index.jsonl); written atomically")
    q.add_argument("--modality", metavar="NAME",
                   help="modality of every image (ct, mri, pet, xray, us, photo, or an alias such as MR, CR, T1w); "
                        "default: MSD dataset.json, DICOM tag, photo for PNG/JPEG, BIDS-like name suffix, else other")
    q.add_argument("--intensity", choices=("ct", "zscore", "percentile", "photo"),
                   help="intensity normalization of every image (default: per modality: ct window for CT, "
                        "z-score for MRI, x/255 for 8-bit photos and MedMNIST, percentiles otherwise)")
    q.add_argument("--depth-axis", choices=tuple(_AXES), metavar="{z,y,x}",
                   help="official slice axis of every 3D image, as an image array axis (default: NIfTI dim_info "
                        "or DICOM slice order, else the axis with clearly the largest spacing, else z)")
    q.add_argument("--val-fraction", type=float, default=None, metavar="F",
                   help="fraction of items put in 'val' for sources without an official validation split "
                        "(MSD, folders), by a seeded hash of their relative path (default 0.2)")
    q.add_argument("--split-seed", type=int, default=0, metavar="N",
                   help="seed of that hash split (default 0); the same seed gives the same split everywhere")
    q.add_argument("--dataset", metavar="NAME",
                   help="dataset name of every record (default: MSD name, .npz file name, or source folder name)")
    q.add_argument("--medmnist-spacing", type=float, metavar="MM",
                   help="voxel size of MedMNIST images in mm (default: 64 mm / side for AdrenalMNIST3D, "
                        "i.e. 2.29 mm at 28^3; 1 mm for other MedMNIST sets)")
    q.add_argument("--check", action="store_true",
                   help="also check every label map against its image (size, spacing, origin, direction) and its "
                        "values against the declared labels; on a problem print it, write nothing and exit 2")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_index)

    q = sub.add_parser(
        "preprocess", help="pre-process an index manifest into memory-mappable .npy arrays", formatter_class=fmt,
        epilog=_EPILOG,
        description=_wrap("""Pre-process every record of MANIFEST: slice axis first, crop to the foreground,
        normalize intensities to [-1, 1], shrink the shorter in-plane side to --max-side (area interpolation,
        spacing updated), and store float16 images / integer labels as .npy under OUTDIR with
        OUTDIR/manifest.jsonl (the processed manifest, with normalization stats). Label maps are checked
        first; unreadable images are reported and skipped."""),
    )
    q.add_argument("manifest", metavar="MANIFEST", help="index manifest written by `pumit data index`")
    q.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder (created); existing items with the same id are overwritten")
    q.add_argument("--max-side", type=int, default=512, metavar="N",
                   help="shrink images whose shorter in-plane side is larger than N pixels to N (default 512)")
    q.add_argument("--workers", type=int, default=0, metavar="N",
                   help="worker processes (default 0: work in this process)")
    q.add_argument("--no-crop", action="store_true",
                   help="keep the whole image (no foreground crop), e.g. for classification sets like MedMNIST")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_preprocess)


def _setup_logging() -> None:
    logger = logging.getLogger("pumit.data")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("pumit: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def cmd_index(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from pumit.data import index_sources, validate, write_manifest
    from pumit.data.splits import DEFAULT_VAL_FRACTION

    _setup_logging()
    with logging_redirect_tqdm(loggers=[logging.getLogger("pumit.data")]):
        records, report = index_sources(
            args.sources, modality=args.modality, intensity=args.intensity,
            depth_axis=_AXES[args.depth_axis] if args.depth_axis else None,
            val_fraction=DEFAULT_VAL_FRACTION if args.val_fraction is None else args.val_fraction,
            seed=args.split_seed, dataset=args.dataset, medmnist_spacing=args.medmnist_spacing,
            progress=not args.quiet,
        )
        if args.check:
            validate(records, check_values=True, progress=not args.quiet)
    path = write_manifest(args.output, records)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.split] = counts.get(r.split, 0) + 1
    splits = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"wrote {len(records)} records to {path} ({splits or 'empty'}); {report.n_skipped} unreadable inputs skipped"
          + ("; labels checked" if args.check else ""))
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from pumit.data import preprocess_manifest

    _setup_logging()
    with logging_redirect_tqdm(loggers=[logging.getLogger("pumit.data")]):
        records, report = preprocess_manifest(
            args.manifest, args.output, max_side=args.max_side, crop_foreground=not args.no_crop,
            workers=args.workers, progress=not args.quiet,
        )
    print(f"wrote {len(records)} items to {args.output}/manifest.jsonl; {report.n_skipped} unreadable inputs skipped")
    return 0
