"""Reconstruction through the universal tokenizer (``pumit reconstruct``): a visual check of what the
tokens keep of an image.

Pipeline (model layout ``(C, D, H, W)``, ``D`` = slice axis):

1. read, transpose, normalize per channel (keeping the per-image statistics), resample only outside
   ``meta.input.spacing_range_mm``;
2. pad at the high end of each axis (edge values) to a multiple of the tokenizer's
   :meth:`~pumit.models.UniversalTokenizer.required_divisor`; one pass over the whole volume, or
   Gaussian-blended windows with ``--roi`` (window steps kept on the token grid);
3. crop back, clamp to the model range ``[-1, 1]``, map back to the native grid (trilinear) if
   resampled, **denormalize** to the input's intensity units, and copy the input's geometry.
   Intensities the normalization clipped (e.g. HU outside a CT window) cannot come back: the error
   map shows them.

Outputs: the reconstruction (float32), a JSON sidecar ``<stem>.recon.json`` (:func:`recon_sidecar_path`)
with the model, the quality metrics and the normalization used and why, optionally the absolute error
map ``|input − reconstruction|``, the token-index map (argmax of the soft tokens) and a PNG montage.

Metrics (:mod:`pumit.metrics`): Pearson correlation, SSIM, std ratio and PSNR beside the PSNR of a
constant image at the input's mean, all on the same voxels: the whole native input in its own units
(CT in HU, including what the model's window clipped), never only inside the window. A PSNR alone
is never reported (a flat image already scores 19–25 dB on typical scans).

Token map geometry: one voxel per token, spacing = token spacing (``g`` input voxels per token on each
axis), the input's direction, and an origin shifted so the token grid's first corner is the input's
first voxel corner: ``origin_tok = origin + Dir · ((g − 1)/2 · spacing)`` (per image axis; LPS).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from pumit.imageio import ModelLayout, from_model_layout
from pumit.inference.common import run_task, stage_bounds, start_preprocess
from pumit.inference.engine import Attempt, plan_attempts, run_with_fallback
from pumit.inference.modelinfo import LoadedModel, load_model
from pumit.inference.outputs import OutputTransaction, check_distinct, check_file_output, check_image_output
from pumit.inference.preprocess import denormalize_channels, pad_to_multiple, read_input, resample_array
from pumit.inference.progress import Progress, ProgressLike, Span
from pumit.inference.settings import InferenceSettings
from pumit.inference.sliding import aligned_overlap, count_windows, fit_roi, run_sliding_window, smaller_roi
from pumit.imageio import full_suffix
from pumit.metrics import describe, reconstruction_metrics, rounded
from pumit.spacing import Spacing

#: Suffix of the reconstruction sidecar (``recon.nii.gz`` → ``recon.recon.json``).
RECON_SIDECAR_SUFFIX = ".recon.json"


def recon_sidecar_path(output: str | os.PathLike) -> Path:
    """The JSON sidecar of a reconstruction: the output's full suffix replaced by ``.recon.json``."""
    p = Path(output)
    suffix = full_suffix(p)
    stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
    return p.with_name(stem + RECON_SIDECAR_SUFFIX)

_KNOBS = "pass --roi to reconstruct in windows (or a smaller one), or use --device cuda"


@dataclass
class ReconstructionResult:
    """Output of :func:`reconstruct_image` / :func:`reconstruct`.

    ``reconstruction`` and ``error`` (float32, input units) have the input's exact grid; ``tokens``
    (``uint16``/``int32`` codebook indices) is on the token grid (see the module docstring).
    ``original``/``reconstructed`` are the first channel as ``(D, H, W)`` arrays in model layout
    (for montages and metrics). ``metrics`` are :func:`pumit.metrics.reconstruction_metrics` over the
    whole native input in its units; ``psnr`` (dB, the input's range as peak) is ``metrics["psnr_db"]``,
    only meaningful beside ``metrics["psnr_constant_db"]``. ``normalization`` records the intensity
    normalization used and why (:meth:`PreparedInput.normalization_record`).
    """

    reconstruction: sitk.Image
    error: sitk.Image
    model_id: str
    psnr: float
    tokens: sitk.Image | None = None
    token_spacing: Spacing | None = None
    original: np.ndarray | None = None
    reconstructed: np.ndarray | None = None
    spacing: Spacing = (1.0, 1.0, 1.0)
    native_spacing: Spacing = (1.0, 1.0, 1.0)
    resampled: bool = False
    execution: str = ""
    notes: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    normalization: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (the sidecar's content)."""
        return {"model": self.model_id, "metrics": rounded(self.metrics), "normalization": self.normalization,
                "spacing_mm": [round(float(v), 6) for v in self.native_spacing], "resampled": self.resampled,
                "execution": self.execution, "notes": list(self.notes), "outputs": [str(p) for p in self.outputs]}


def token_image(
    tokens: np.ndarray,
    layout: ModelLayout,
    reference: sitk.Image,
    voxels_per_token: tuple[float, float, float],
) -> sitk.Image:
    """Token-index map ``(d, h, w)`` (model layout) as an image on the token grid of ``reference``.

    ``voxels_per_token`` (model order) is how many input voxels one token spans on each axis. The
    direction is the reference's; the spacing is ``reference spacing × voxels per token``; the origin
    puts the first token's corner on the first input voxel's corner.
    """
    inv = tuple(int(i) for i in np.argsort(layout.perm))
    flips = tuple(slice(None, None, -1) if f else slice(None) for f in layout.flip)
    arr = np.ascontiguousarray(tokens[flips].transpose(inv))  # numpy (z, y, x)
    g_np, off_np = [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
    size_np = tuple(reversed(reference.GetSize())) if reference.GetDimension() == 3 else (1,) + tuple(reversed(reference.GetSize()))
    for k, a in enumerate(layout.perm):
        g_np[a] = float(voxels_per_token[k])
        if layout.flip[k]:  # a reversed axis: the token grid ends at the last voxel, so it starts before voxel 0
            off_np[a] = size_np[a] - tokens.shape[k] * g_np[a]
    dim = reference.GetDimension()
    if dim == 2:
        arr = arr[0]
        g_img, off_img = [g_np[2], g_np[1]], [off_np[2], off_np[1]]  # image axes (x, y)
    else:
        g_img, off_img = [g_np[2], g_np[1], g_np[0]], [off_np[2], off_np[1], off_np[0]]  # image axes (x, y, z)
    out = sitk.GetImageFromArray(arr)
    sp = np.asarray(reference.GetSpacing(), dtype=np.float64)
    direction = np.asarray(reference.GetDirection(), dtype=np.float64).reshape(dim, dim)
    g = np.asarray(g_img, dtype=np.float64)
    shift = direction @ (((g - 1.0) / 2.0 + np.asarray(off_img)) * sp)
    out.SetSpacing(tuple(float(v) for v in sp * g))
    out.SetDirection(reference.GetDirection())
    out.SetOrigin(tuple(float(v) for v in np.asarray(reference.GetOrigin(), dtype=np.float64) + shift))
    return out


def reconstruct_image(
    image: sitk.Image,
    model: LoadedModel,
    *,
    settings: InferenceSettings | None = None,
    tokens: bool = False,
    progress: ProgressLike = None,
) -> ReconstructionResult:
    """Reconstruct an in-memory image with a loaded tokenizer (see the module docstring)."""
    settings = settings or InferenceSettings()
    return run_task(progress, "reconstructing", _KNOBS, lambda prog: _reconstruct(image, model, settings, tokens, prog))


def training_window(meta: dict[str, Any], divisor: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """The default reconstruction window ``(D, H, W)`` voxels (model order): the tokenizer's training crop,
    ``meta.input.crop_tokens`` ``(TZ, TXY)`` tokens times the token size ``divisor`` at this spacing; ``None``
    when the model does not record it (the whole volume in one pass).

    The tokenizer's blocks use GroupNorm, whose statistics are taken over the whole window: a network trained
    on 16×48×48 crops and run on a whole 90×120×120 head halves the reconstruction's contrast (std ratio 0.5
    instead of 0.97 for pumit-ref-tokenizer-v0.3.0, docs/results.md), so windows of the training size are used.
    The same holds for a tokenizer normalized per voxel (``config.norm == "channel"``), whose output does not
    depend on the window away from its borders: trained on crops whose depth (8 tokens) is within its receptive
    field, it has never seen a voxel far from a zero-padded border, and in 32-deep windows its held-out IXI
    Pearson fell from 0.95 to 0.85 (docs/results.md, "Tokenizer v0.5").
    """
    ct = (meta.get("input") or {}).get("crop_tokens")
    if not ct or len(ct) < 2:
        return None
    tz, txy = int(ct[0]), int(ct[-1])
    return (tz * int(divisor[0]), txy * int(divisor[1]), txy * int(divisor[2]))


def _reconstruct(
    image: sitk.Image, model: LoadedModel, settings: InferenceSettings, want_tokens: bool, prog: Progress
) -> ReconstructionResult:
    device, pre, prep = start_preprocess(image, model, settings, prog, keep_raw=True)
    spacing = prep.spacing
    divisor = model.required_divisor(spacing)
    padded = pad_to_multiple(prep.array, divisor, mode="edge")
    pshape: tuple[int, int, int] = tuple(padded.shape[1:])  # type: ignore[assignment]
    requested = settings.roi if settings.roi is not None else training_window(model.meta, divisor)
    if settings.roi is None and requested is not None:
        requested = tuple(min(r, n) for r, n in zip(requested, pshape))  # type: ignore[assignment]
    if requested is None:
        roi, overlap, blend = pshape, 0.0, "constant"
    else:
        if settings.roi is None:
            prog.note(f"note: reconstructing in windows of the tokenizer's training crop {requested} (D, H, W) voxels: it "
                      "was trained on crops of that size; pass --roi to change")
        plan = fit_roi(requested, pshape, divisor)
        for note in plan.notes:
            prog.note(note)
        roi, overlap, blend = plan.roi, aligned_overlap(plan.roi, divisor, settings.overlap), settings.blend
    size = int(np.prod(pshape))
    codebook = int(getattr(model.module, "codebook_size", 0) or 0)
    result_bytes = (padded.shape[0] + 1) * size * 4 + (codebook * size * 4 // int(np.prod(divisor)) if want_tokens else 0)
    attempts = plan_attempts(device, precision=settings.precision, sw_batch=settings.sw_batch,
                             result_bytes=result_bytes, accumulate=settings.accumulate, progress=prog)
    x = torch.from_numpy(np.ascontiguousarray(padded))[None]
    module = model.module
    token_spacing: list[Spacing] = []
    pre.finish(f"input {prep.native_shape} (D, H, W) at {tuple(round(s, 4) for s in prep.native_spacing)} mm")
    used: list[Attempt] = []

    def job(attempt: Attempt, span: Span) -> tuple[np.ndarray, np.ndarray | None]:
        used.append(attempt)
        win, ov, mode = roi, overlap, blend
        if attempt.smaller_window:  # out-of-memory fallback: Gaussian-blended windows, half as large in-plane
            win = fit_roi(smaller_roi(roi, divisor), pshape, divisor).roi
            ov, mode = aligned_overlap(win, divisor, settings.overlap), settings.blend
        n_win = count_windows(pshape, win, ov)
        span.begin(f"{n_win} window(s) of {win} ({attempt.describe()})")

        def predictor(window: torch.Tensor):
            prog.check_cancelled()
            with attempt.autocast():
                out = module(window, spacing)
            if not token_spacing:
                token_spacing.append(tuple(float(v) for v in out.token_spacing))  # type: ignore[arg-type]
            recon = out.recon.float()
            if want_tokens:
                return recon, out.probs.float().movedim(-1, 1)  # (n, K, d, h, w)
            return recon

        res = run_sliding_window(
            x, predictor, roi=win, overlap=ov, sw_batch=attempt.sw_batch, blend=mode,
            sigma_scale=settings.sigma_scale, sw_device=attempt.sw_device, device=attempt.out_device,
            cval=0.0, on_windows=lambda d, t: span.update(d / t, f"window {d}/{t}"),
        )
        recon_t, probs_t = (res if isinstance(res, tuple) else (res, None))
        d, h, w = prep.shape
        # the model range is [-1, 1]: clamp before mapping back to the input's units
        recon = recon_t[0, :, :d, :h, :w].float().clamp_(-1.0, 1.0).cpu().numpy()
        tok = None
        if probs_t is not None:
            tok = probs_t[0].argmax(0).to(torch.int32).cpu().numpy()
        return recon, tok

    inf = prog.span("inference", *stage_bounds("inference"))
    recon, tok = run_with_fallback(job, attempts, module=module, span=inf, progress=prog,
                                   what="tokenizer reconstruction", knobs=_KNOBS)
    post = prog.span("postprocess", *stage_bounds("postprocess"))
    post.begin("denormalizing")
    if prep.resampled:
        recon = resample_array(recon, prep.native_shape)
    recon = denormalize_channels(recon, prep.stats)
    raw = prep.raw
    assert raw is not None
    error = np.abs(raw - recon)
    metrics = reconstruction_metrics(raw, recon)
    value = metrics["psnr_db"]
    vector = recon.shape[0] > 1
    recon_img = from_model_layout(recon if vector else recon[0], prep.layout, image, dtype=np.float32)
    error_img = from_model_layout(error if vector else error[0], prep.layout, image, dtype=np.float32)
    tokens_img = None
    tsp = token_spacing[0] if token_spacing else None
    if tok is not None and tsp is not None:
        per_token_model = tuple(t / s for t, s in zip(tsp, spacing))  # model-grid voxels per token
        keep = tuple(math.ceil(n / f - 1e-6) for n, f in zip(prep.shape, per_token_model))
        tok = tok[: keep[0], : keep[1], : keep[2]]
        scale = tuple(n / m for n, m in zip(prep.native_shape, prep.shape))  # native voxels per model voxel
        per_token_native = tuple(f * s for f, s in zip(per_token_model, scale))
        if prep.layout.planar:
            per_token_native = (1.0,) + per_token_native[1:]
        dtype = np.uint16 if int(tok.max(initial=0)) < 65536 else np.int32
        tokens_img = token_image(tok.astype(dtype), prep.layout, image, per_token_native)  # type: ignore[arg-type]
    post.finish(describe(metrics))
    return ReconstructionResult(
        reconstruction=recon_img, error=error_img, model_id=model.model_id, psnr=value, tokens=tokens_img,
        token_spacing=tsp, original=raw[0], reconstructed=recon[0], spacing=spacing,
        native_spacing=prep.native_spacing, resampled=prep.resampled,
        execution=used[-1].describe() if used else "", notes=list(prog.notes), metrics=metrics,
        normalization=prep.normalization_record(),
    )


def reconstruct(
    input: str | os.PathLike,
    output: str | os.PathLike,
    tokenizer: str | os.PathLike | LoadedModel,
    *,
    tokens: str | os.PathLike | None = None,
    error_map: str | os.PathLike | None = None,
    montage: str | os.PathLike | None = None,
    settings: InferenceSettings | None = None,
    progress: ProgressLike = "none",
    store: Any | None = None,
) -> ReconstructionResult:
    """Reconstruct ``input`` through ``tokenizer`` and write ``output`` (input units and geometry) and its
    sidecar :func:`recon_sidecar_path` (metrics, normalization), plus optionally the token map ``tokens``,
    the ``error_map`` and a ``montage`` PNG; all or nothing."""
    settings = settings or InferenceSettings()

    def task(prog: Progress) -> ReconstructionResult:
        out = check_image_output(output, "-o")
        tok_path = check_image_output(tokens, "--tokens") if tokens is not None else None
        err_path = check_image_output(error_map, "--error-map") if error_map is not None else None
        png_path = check_file_output(montage, (".png",), "--montage") if montage is not None else None
        side = recon_sidecar_path(out)
        check_distinct([("-o", out), ("sidecar", side), ("--tokens", tok_path), ("--error-map", err_path),
                        ("--montage", png_path)], Path(input))
        name = tokenizer.model_id if isinstance(tokenizer, LoadedModel) else tokenizer
        prog.update("load", 0.0, f"loading tokenizer {name}")
        lm = tokenizer if isinstance(tokenizer, LoadedModel) else load_model(tokenizer, "reconstruct", store=store)
        prog.update("read", stage_bounds("read")[0], f"reading {input}")
        image = read_input(input, spacing_override=settings.spacing is not None, progress=prog)
        result = _reconstruct(image, lm, settings, tok_path is not None, prog)
        prog.update("write", stage_bounds("write")[0], f"writing {out.name}")
        with OutputTransaction() as tx:
            tx.add_image(result.reconstruction, out)
            tx.add_json({"input": str(input), **result.summary()}, side)
            if tok_path is not None and result.tokens is not None:
                tx.add_image(result.tokens, tok_path)
            if err_path is not None:
                tx.add_image(result.error, err_path)
            if png_path is not None:
                from pumit.inference.montage import save_montage

                assert result.original is not None and result.reconstructed is not None
                tx.add_file(lambda tmp: save_montage(
                    tmp, result.original, result.reconstructed, result.native_spacing,
                    title=f"{Path(input).name} · {result.model_id}", metrics=result.metrics), png_path)
            result.outputs = tx.commit()
        prog.done(f"wrote {out} ({describe(result.metrics)})")
        return result

    return run_task(progress, "reconstructing", _KNOBS, task)
