"""Command-line options shared by ``pumit segment``, ``pumit reconstruct`` and ``pumit classify``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pumit.inference.constants import ACCUMULATE_MODES, BLEND_MODES, PRECISIONS, PROGRESS_MODES

if TYPE_CHECKING:  # heavy modules (torch, MONAI) are imported only when a command runs
    from pumit.inference.progress import Progress
    from pumit.inference.settings import InferenceSettings

EXIT_CODES = """exit codes: 0 success, 1 internal error (bug), 2 bad input or option (unreadable/corrupt
file, 4D or wrong channel count, NaN/Inf voxels, zero/missing spacing), 3 model problem (unknown id,
corrupt checkpoint, model of another task), 4 out of memory after the automatic fallbacks,
130 cancelled. On any error no output file is left behind."""


def add_input_options(p: argparse.ArgumentParser) -> None:
    """``--spacing``, ``--depth-axis`` and ``--modality``."""
    g = p.add_argument_group("input")
    g.add_argument("--spacing", nargs="+", type=float, metavar="MM", default=None,
                   help="override the header's voxel spacing, in image axis order X Y [Z] (mm); only what the "
                        "model sees changes, outputs keep the input's geometry")
    g.add_argument("--depth-axis", choices=("auto", "z", "y", "x"), default="auto",
                   help="image axis holding the slices (default auto: the clearly thickest axis, else z)")
    g.add_argument("--modality", default=None, metavar="NAME",
                   help="the input's modality (ct, mri, xray, us, pet, photo, ...): selects the intensity "
                        "normalization of models trained on several modalities (e.g. the tokenizer). Default: "
                        "the DICOM Modality tag when there is one, else the model's default normalization")


def add_device_options(p: argparse.ArgumentParser, *, windows: bool = True, roi_required: bool = False) -> None:
    """``--device``, ``--precision``, ``--progress`` and (with ``windows``) the sliding-window knobs."""
    g = p.add_argument_group("execution")
    g.add_argument("--device", default="auto", metavar="DEV",
                   help="auto (default: the GPU if there is one), cpu, cuda, cuda:N or mps (Apple GPU; without one "
                        "pumit notes it and runs on the CPU). On GPU out-of-memory pumit retries with CPU accumulation, "
                        "one window per batch, then the CPU")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="autocast precision: auto (default) = bf16 (or fp16) on a GPU; on the CPU bf16 for segmentation "
                        "where the CPU computes bf16 natively (AVX512-BF16/AMX; PUMIT_CPU_BF16=0 turns it off), else fp32")
    if windows:
        g.add_argument("--roi", nargs="+", type=int, metavar="N", default=None,
                       help="sliding-window size D H W in voxels (D along the slice axis; one number = a cube); "
                            "rounded up to a multiple of the model's divisor at the image's spacing. "
                            + ("Default: one pass over the whole volume" if not roi_required else
                               "Default: the model's meta.input.roi, else ~128 voxels in-plane"))
        g.add_argument("--overlap", type=float, default=0.25, metavar="F",
                       help="overlap of neighbouring windows, 0 <= F < 1 (default 0.25: on the hippocampus validation set "
                            "0.5 changes no label and needs ~3x more windows on a CT; see docs/benchmarks.md)")
        g.add_argument("--sw-batch", type=int, default=None, metavar="N",
                       help="windows per forward pass (default 4 on a GPU, 1 on the CPU)")
        g.add_argument("--blend", choices=BLEND_MODES, default="gaussian",
                       help="how overlapping windows are blended (default gaussian)")
        g.add_argument("--accumulate-on", choices=ACCUMULATE_MODES, default="auto", dest="accumulate",
                       help="where the full-volume result is accumulated: auto (default: the GPU if it fits in "
                            "half its free memory), device, or cpu")
    g.add_argument("--progress", choices=PROGRESS_MODES, default="bar",
                   help="bar (default): a progress bar on stderr; jsonl: one JSON object per line on stdout "
                        '{"stage", "fraction", "message"}, ending with stage "done" at fraction 1.0; none')


def settings_from_args(args: argparse.Namespace) -> InferenceSettings:
    """An :class:`InferenceSettings` from parsed arguments (validated; raises ``InputError``)."""
    from pumit.inference.settings import InferenceSettings

    return InferenceSettings(
        device=args.device,
        precision=args.precision,
        roi=getattr(args, "roi", None),
        overlap=getattr(args, "overlap", 0.25),
        sw_batch=getattr(args, "sw_batch", None),
        blend=getattr(args, "blend", "gaussian"),
        accumulate=getattr(args, "accumulate", "auto"),
        depth_axis=None if args.depth_axis == "auto" else args.depth_axis,
        spacing=tuple(args.spacing) if args.spacing else None,
        modality=args.modality,
    )


def progress_from_args(args: argparse.Namespace) -> Progress:
    """The :class:`Progress` for ``--progress`` (the CLI owns and closes it).

    Also silences ITK's own warnings on stderr for the command's process: the problems they hint at
    are checked and reported by pumit itself, in one line.
    """
    import SimpleITK as sitk

    from pumit.inference.progress import Progress

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return Progress(args.progress)
