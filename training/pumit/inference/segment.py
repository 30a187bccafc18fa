"""Semantic segmentation of a volume or 2D image with a SPAD-ViT segmenter (``pumit segment``).

Pipeline (all arrays in model layout ``(C, D, H, W)``, ``D`` = slice axis, see :mod:`pumit.spacing`):

1. read the image (file or DICOM series folder) keeping its geometry (ITK/LPS);
2. transpose to model layout, normalize per channel as the model was trained
   (``meta.input.normalization``); resample only if the spacing is outside
   ``meta.input.spacing_range_mm``;
3. sliding-window inference (MONAI, Gaussian blending) at the image's own spacing, windows a multiple
   of :meth:`SpadViTSegmenter.required_divisor`; bf16/fp16 autocast on a GPU; out-of-memory fallbacks;
4. ``argmax`` on the accumulation device → ``uint8`` (``uint16`` above 256 classes); when the input was
   resampled, the logits are resampled trilinearly to the input's grid first (class chunks at a time,
   :func:`~pumit.inference.preprocess.upsampled_argmax`), so the labels are on the native grid with smooth
   boundaries, not blocks of the model grid;
5. transpose back and copy origin/spacing/direction from the input → a label map on exactly the
   input's grid, plus a ``.labels.json`` sidecar (names, colors, terminology).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from pumit.errors import InputError
from pumit.imageio import from_model_layout
from pumit.inference.common import run_task, stage_bounds, start_preprocess
from pumit.inference.engine import Attempt, plan_attempts, run_with_fallback
from pumit.inference.intended import check_intended_input
from pumit.inference.modelinfo import LabelInfo, LoadedModel, load_model
from pumit.inference.outputs import OutputTransaction, check_distinct, check_image_output, sidecar_path
from pumit.inference.preprocess import read_input, resample_array, upsampled_argmax
from pumit.inference.progress import Progress, ProgressLike, Span
from pumit.inference.settings import InferenceSettings
from pumit.inference.sliding import count_windows, default_roi, fit_roi, run_sliding_window, smaller_roi
from pumit.spacing import Spacing

_KNOBS = "lower --roi or --sw-batch, or use --device cuda"


@dataclass
class SegmentationResult:
    """Output of :func:`segment_image` / :func:`segment`.

    ``labels``: integer label map (``uint8``/``uint16``) with the input's size, origin, spacing and
    direction. ``probabilities``: float32 vector image with one component per class (``K``) on the
    same grid, when requested. ``spacing`` is the spacing the model ran at (model order
    ``(thickness, H, W)`` mm; differs from ``native_spacing`` only when ``resampled``).
    """

    labels: sitk.Image
    label_info: list[LabelInfo]
    model_id: str
    probabilities: sitk.Image | None = None
    spacing: Spacing = (1.0, 1.0, 1.0)
    native_spacing: Spacing = (1.0, 1.0, 1.0)
    resampled: bool = False
    roi: tuple[int, int, int] = (1, 1, 1)
    windows: int = 0
    execution: str = ""
    depth_axis: int = 0
    notes: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    input_notes: dict[str, str] = field(default_factory=dict)  # departures from the intended input (pumit.inference.intended)

    def sidecar(self) -> dict[str, Any]:
        """The ``.labels.json`` content: ``{"model": id, "labels": [{value, name, color, terminology?, terminology_modifier?}]}``
        for every foreground label (value 0, the background, is not listed)."""
        side = {"model": self.model_id, "labels": [li.to_dict() for li in self.label_info if li.value != 0]}
        if self.input_notes:
            side["input_notes"] = dict(self.input_notes)
        return side


def label_dtype(num_classes: int) -> tuple[type, torch.dtype]:
    """NumPy and torch integer types for ``num_classes`` labels (uint8 up to 256, else uint16)."""
    if num_classes <= 256:
        return np.uint8, torch.uint8
    if num_classes <= 65536:
        return np.uint16, torch.int32
    raise ValueError(f"too many classes for a label map: {num_classes}")


def check_segmentable(prep: Any, model: LoadedModel, prog: Progress) -> None:
    """Refuse a constant image (every voxel the same value: there is nothing to segment, yet a model would
    label a part of it) and warn when the input's modality (given, from the DICOM tag, or CT detected from the
    intensities by :func:`pumit.modality.detect_modality`) is not the one the model was trained on."""
    a = prep.array
    if a.size and float(a.max()) == float(a.min()):
        raise InputError("the image is constant (every voxel has the same value): there is nothing to segment; "
                         "check that the right file or series was given")
    from pumit.modality import canonical_modality

    want = canonical_modality(model.inputs.modality) if model.inputs.modality else None
    got = getattr(prep, "modality", None)
    why = getattr(prep, "normalization_reason", "") or ""
    # detection is evidence only when it finds Hounsfield units ("mri" is its default, e.g. for a CT crop
    # without air); a modality given (--modality) or from the DICOM tag always counts
    evidence = got == "ct" or "detected" not in why
    if want in ("ct", "mri") and got in ("ct", "mri") and got != want and evidence:
        prog.note(f"warning: model {model.model_id} was trained on {want.upper()} images but this input is {got.upper()} "
                  f"({why.split('; the model')[0]}); the labels are likely meaningless")


def segment_image(
    image: sitk.Image,
    model: LoadedModel,
    *,
    settings: InferenceSettings | None = None,
    probabilities: bool = False,
    progress: ProgressLike = None,
) -> SegmentationResult:
    """Segment an in-memory image (2D or 3D, scalar or multi-channel) with a loaded segmentation model.

    Progress is reported between the ``preprocess`` and ``postprocess`` stages (fractions 0.10-0.95).
    Raises :class:`~pumit.errors.InputError` (bad image/options), :class:`~pumit.errors.ResourceError`
    (out of memory after the fallbacks) and :class:`~pumit.errors.CancelledError`.
    """
    settings = settings or InferenceSettings()
    return run_task(progress, "segmenting", _KNOBS, lambda prog: _segment(image, model, settings, probabilities, prog))


def _segment(
    image: sitk.Image, model: LoadedModel, settings: InferenceSettings, want_probs: bool, prog: Progress
) -> SegmentationResult:
    device, pre, prep = start_preprocess(image, model, settings, prog)
    check_segmentable(prep, model, prog)
    input_notes = check_intended_input(prep, model)  # 2D given to a 3D model: InputError; a small crop: a note
    for kind, note in input_notes.items():
        if kind != "modality":  # check_segmentable has printed that warning
            prog.note(f"note: {note}")
    spacing = prep.spacing
    divisor = model.required_divisor(spacing)
    requested = settings.roi or model.inputs.roi or default_roi(spacing, prep.layout.planar)
    plan = fit_roi(requested, prep.shape, divisor)
    for note in plan.notes:
        prog.note(note)
    roi = plan.roi
    num_classes = model.num_classes
    _, torch_dtype = label_dtype(num_classes)
    values = np.array([li.value for li in model.labels])  # class -> label-map value (meta.label_values)
    np_dtype = label_dtype(int(values.max()) + 1)[0]
    lut = None if np.array_equal(values, np.arange(num_classes)) else values.astype(np_dtype)
    size = int(np.prod([max(n, r) for n, r in zip(prep.shape, roi)]))
    result_bytes = (num_classes + 1) * size * 4 + (num_classes * size * 4 if want_probs else 0)
    attempts = plan_attempts(device, precision=settings.precision, sw_batch=settings.sw_batch,
                             result_bytes=result_bytes, accumulate=settings.accumulate, progress=prog,
                             cpu_bf16=True, cpu_channels_last=True)  # measured defaults: docs/benchmarks.md
    x = torch.from_numpy(prep.array)[None]  # (1, C, D, H, W) on the CPU
    cval = float(prep.array.min())
    module = model.module
    pre.finish(f"input {prep.native_shape} (D, H, W) at {tuple(round(s, 4) for s in prep.native_spacing)} mm")
    used: list[Attempt] = []
    windows: list[tuple[int, int, int]] = []

    def job(attempt: Attempt, span: Span) -> tuple[np.ndarray, np.ndarray | None]:
        used.append(attempt)
        win = fit_roi(smaller_roi(roi, divisor), prep.shape, divisor).roi if attempt.smaller_window else roi
        windows.append(win)
        n_win = count_windows(prep.shape, win, settings.overlap)
        span.begin(f"{n_win} window(s) of {win} ({attempt.describe()})")

        def predictor(window: torch.Tensor) -> torch.Tensor:
            prog.check_cancelled()
            with attempt.autocast():
                out = module(window, spacing)
            return out.float()

        logits = run_sliding_window(
            x, predictor, roi=win, overlap=settings.overlap, sw_batch=attempt.sw_batch, blend=settings.blend,
            sigma_scale=settings.sigma_scale, sw_device=attempt.sw_device, device=attempt.out_device, cval=cval,
            on_windows=lambda d, t: span.update(d / t, f"window {d}/{t}"),
        )
        assert isinstance(logits, torch.Tensor)
        index = upsampled_argmax(logits[0], prep.native_shape)  # the plain argmax when nothing was resampled
        labels = index.to(torch_dtype).cpu().numpy()
        labels = lut[labels] if lut is not None else labels.astype(np_dtype, copy=False)
        probs = torch.softmax(logits[0], 0).float().cpu().numpy() if want_probs else None
        del logits
        return labels, probs

    inf = prog.span("inference", *stage_bounds("inference"))
    labels, probs = run_with_fallback(job, attempts, module=module, span=inf, progress=prog,
                                      what="sliding-window segmentation", knobs=f"{_KNOBS} (window now {roi}, D H W)")
    post = prog.span("postprocess", *stage_bounds("postprocess"))
    post.begin("restoring the input grid")
    if prep.resampled and probs is not None:  # the labels are already on the native grid (upsampled_argmax)
        probs = resample_array(probs, prep.native_shape)
    label_image = from_model_layout(labels, prep.layout, image, dtype=np_dtype)
    prob_image = from_model_layout(probs.astype(np.float32, copy=False), prep.layout, image) if probs is not None else None
    post.finish("done")
    return SegmentationResult(
        labels=label_image, label_info=model.labels, model_id=model.model_id, probabilities=prob_image,
        spacing=spacing, native_spacing=prep.native_spacing, resampled=prep.resampled, roi=windows[-1],
        windows=count_windows(prep.shape, windows[-1], settings.overlap),
        execution=used[-1].describe() if used else "", depth_axis=prep.layout.perm[0],
        notes=list(prog.notes), input_notes=input_notes,
    )


def segment(
    input: str | os.PathLike,
    output: str | os.PathLike,
    model: str | os.PathLike | LoadedModel,
    *,
    probabilities: str | os.PathLike | None = None,
    settings: InferenceSettings | None = None,
    progress: ProgressLike = "none",
    store: Any | None = None,
) -> SegmentationResult:
    """Segment the image file or DICOM series folder ``input`` and write the label map ``output``
    (``.nii.gz``, ``.nii``, ``.nrrd`` or ``.mha``) with the input's exact geometry, its sidecar
    :func:`~pumit.inference.sidecar_path` ``(output)`` and, if asked, the class ``probabilities``
    (float32, K components). All outputs are written together at the end, or none.

    ``model`` is a store id (``name-vX.Y.Z``), a bare name (latest version), a model folder or
    ``.safetensors`` file, or a :class:`LoadedModel`. ``progress``: ``"bar"``, ``"jsonl"``,
    ``"none"``, a callback ``(stage, fraction, message)`` or a :class:`Progress`.
    """
    settings = settings or InferenceSettings()

    def task(prog: Progress) -> SegmentationResult:
        out = check_image_output(output, "-o")
        prob_path = check_image_output(probabilities, "--probabilities") if probabilities is not None else None
        side = sidecar_path(out)
        check_distinct([("-o", out), ("sidecar", side), ("--probabilities", prob_path)], Path(input))
        prog.update("load", 0.0, f"loading model {model if not isinstance(model, LoadedModel) else model.model_id}")
        lm = model if isinstance(model, LoadedModel) else load_model(model, "segment", store=store)
        prog.update("read", stage_bounds("read")[0], f"reading {input}")
        image = read_input(input, spacing_override=settings.spacing is not None, progress=prog)
        result = _segment(image, lm, settings, prob_path is not None, prog)
        prog.update("write", stage_bounds("write")[0], f"writing {out.name}")
        with OutputTransaction(note=prog.note) as tx:
            tx.add_image(result.labels, out)
            tx.add_json(result.sidecar(), side)
            if prob_path is not None and result.probabilities is not None:
                tx.add_image(result.probabilities, prob_path)
            result.outputs = tx.commit()
        prog.done(f"wrote {out}")
        return result

    return run_task(progress, "segmenting", _KNOBS, task)
