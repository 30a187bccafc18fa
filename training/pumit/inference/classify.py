"""Whole-image classification with a SPAD-ViT classifier (``pumit classify``).

The image is read, transposed to model layout ``(C, D, H, W)``, normalized, resampled only when its
spacing is outside the model's range, padded at the high end to a multiple of the adaptive patch
(constant: the normalized minimum) and passed through the classifier once at its native spacing.
The result is a JSON object::

    {"model": "chest-cls-v1.0.0", "input": "ct.nii.gz",
     "prediction": {"value": 1, "name": "abnormal", "probability": 0.83},
     "probabilities": [{"value": 0, "name": "normal", "probability": 0.17}, ...]}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from pumit.inference.common import run_task, stage_bounds, start_preprocess
from pumit.inference.engine import Attempt, plan_attempts, run_with_fallback
from pumit.inference.modelinfo import LabelInfo, LoadedModel, load_model
from pumit.inference.outputs import OutputTransaction, check_distinct, check_file_output
from pumit.inference.preprocess import pad_to_multiple, read_input
from pumit.inference.progress import Progress, ProgressLike, Span
from pumit.inference.settings import InferenceSettings
from pumit.spacing import Spacing

_KNOBS = "use --device cuda, or crop/downsample the image"


@dataclass
class ClassificationResult:
    """Class probabilities (softmax, in label order) of one image."""

    model_id: str
    labels: list[LabelInfo]
    probabilities: list[float]
    input: str = "image"
    spacing: Spacing = (1.0, 1.0, 1.0)
    resampled: bool = False
    execution: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> LabelInfo:
        return self.labels[int(np.argmax(self.probabilities))]

    def to_dict(self) -> dict[str, Any]:
        best = self.predicted
        return {
            "model": self.model_id,
            "input": self.input,
            "prediction": {"value": best.value, "name": best.name, "probability": self.probabilities[best.value]},
            "probabilities": [
                {"value": li.value, "name": li.name, "probability": p} for li, p in zip(self.labels, self.probabilities)
            ],
        }


def classify_image(
    image: sitk.Image,
    model: LoadedModel,
    *,
    settings: InferenceSettings | None = None,
    progress: ProgressLike = None,
    name: str = "image",
) -> ClassificationResult:
    """Classify an in-memory image with a loaded classifier."""
    settings = settings or InferenceSettings()
    return run_task(progress, "classifying", _KNOBS, lambda prog: _classify(image, model, settings, prog, name))


def _classify(
    image: sitk.Image, model: LoadedModel, settings: InferenceSettings, prog: Progress, name: str
) -> ClassificationResult:
    device, pre, prep = start_preprocess(image, model, settings, prog)
    spacing = prep.spacing
    divisor = model.required_divisor(spacing)
    padded = pad_to_multiple(prep.array, divisor, mode="constant", value=float(prep.array.min()))
    if padded.shape != prep.array.shape:
        prog.note(f"note: padded {prep.shape} → {tuple(padded.shape[1:])} voxels (D, H, W) "
                  f"to a multiple of the patch {divisor}")
    x = torch.from_numpy(np.ascontiguousarray(padded))[None]
    attempts = plan_attempts(device, precision=settings.precision, sw_batch=1, accumulate="device", progress=prog)
    module = model.module
    pre.finish(f"input {prep.native_shape} (D, H, W)")
    used: list[Attempt] = []

    def job(attempt: Attempt, span: Span) -> list[float]:
        used.append(attempt)
        span.begin(f"classifying ({attempt.describe()})")
        prog.check_cancelled()
        with attempt.autocast():
            logits = module(x.to(attempt.sw_device), spacing)
        probs = torch.softmax(logits.float(), dim=-1)[0].cpu().tolist()
        span.finish("classified")
        return [float(p) for p in probs]

    inf = prog.span("inference", *stage_bounds("inference"))
    probs = run_with_fallback(job, attempts, module=module, span=inf, progress=prog, what="classification", knobs=_KNOBS)
    return ClassificationResult(
        model_id=model.model_id, labels=model.labels, probabilities=probs, input=name, spacing=spacing,
        resampled=prep.resampled, execution=used[-1].describe() if used else "", notes=list(prog.notes),
    )


def classify(
    input: str | os.PathLike,
    model: str | os.PathLike | LoadedModel,
    *,
    output: str | os.PathLike | None = None,
    settings: InferenceSettings | None = None,
    progress: ProgressLike = "none",
    store: Any | None = None,
) -> ClassificationResult:
    """Classify the image file or DICOM folder ``input``; write the JSON to ``output`` if given."""
    settings = settings or InferenceSettings()

    def task(prog: Progress) -> ClassificationResult:
        out = check_file_output(output, (".json",), "-o") if output is not None else None
        check_distinct([("-o", out)], Path(input))
        name = model.model_id if isinstance(model, LoadedModel) else model
        prog.update("load", 0.0, f"loading model {name}")
        lm = model if isinstance(model, LoadedModel) else load_model(model, "classify", store=store)
        prog.update("read", stage_bounds("read")[0], f"reading {input}")
        image = read_input(input, spacing_override=settings.spacing is not None, progress=prog)
        result = _classify(image, lm, settings, prog, str(input))
        if out is not None:
            prog.update("write", stage_bounds("write")[0], f"writing {out.name}")
            with OutputTransaction() as tx:
                tx.add_text(json.dumps(result.to_dict(), indent=2) + "\n", out)
                tx.commit()
        best = result.predicted
        message = f"{best.name} ({result.probabilities[best.value]:.3f})" + (f"; wrote {out}" if out is not None else "")
        # Without an output file the JSON-lines 'done' event carries the result (stdout holds the progress).
        prog.done(message, **({} if out is not None else {"result": result.to_dict()}))
        return result

    return run_task(progress, "classifying", _KNOBS, task)
