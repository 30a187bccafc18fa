"""Every bad input gives one line ``pumit: error: ...``, its exit code, and leaves no output file."""

from __future__ import annotations

import errno
import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from inference_helpers import CT, ct_crop, files_in, make_segmenter
from pumit.errors import InputError, ModelError, ResourceError
from pumit.inference import OutputTransaction
from pumit.inference.preprocess import read_input


def _make_input(kind: str, folder: Path) -> Path:
    """A real bad input file of the given kind in ``folder``."""
    if kind == "corrupt":
        p = folder / "corrupt.nii.gz"
        p.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    elif kind == "truncated":
        p = folder / "truncated.nii.gz"
        data = CT.read_bytes()
        p.write_bytes(data[: len(data) // 3])
    elif kind == "truncated-nii":
        p = folder / "truncated.nii"
        sitk.WriteImage(ct_crop(), str(p))
        p.write_bytes(p.read_bytes()[:-1000])
    elif kind == "truncated-nrrd":
        p = folder / "truncated.nrrd"
        sitk.WriteImage(ct_crop(), str(p), useCompression=True)
        p.write_bytes(p.read_bytes()[:-1000])
    elif kind == "empty":
        p = folder / "empty.nii.gz"
        p.write_bytes(b"")
    elif kind == "missing":
        p = folder / "does-not-exist.nii.gz"
    elif kind == "4d":
        p = folder / "fmri.nii.gz"
        nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 16, 3)).astype(np.float32), np.eye(4)), p)
    elif kind == "rgb":
        p = folder / "rgb.nii.gz"
        comp = [sitk.Cast(ct_crop(), sitk.sitkFloat32)] * 3
        sitk.WriteImage(sitk.Compose(comp), str(p))
    elif kind in ("nan", "inf"):
        p = folder / f"{kind}.nii.gz"
        arr = sitk.GetArrayFromImage(ct_crop()).astype(np.float32)
        arr[3, 4, 5] = np.nan if kind == "nan" else np.inf
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(ct_crop())
        sitk.WriteImage(img, str(p))
    elif kind == "zero-spacing":
        p = folder / "zero.mha"
        p.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 16 16 16\nElementSpacing = 1 1 0\n"
                      b"ElementType = MET_UCHAR\nElementDataFile = LOCAL\n" + bytes(16**3))
    elif kind == "no-spacing-nrrd":
        p = folder / "nospacing.nrrd"
        p.write_bytes(b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 16 16 16\nencoding: raw\n\n" + bytes(range(256)) * 16)
    elif kind == "no-spacing-dicom":
        from pydicom.data import get_testdata_file

        p = folder / "emri_small.dcm"  # a real 10-frame enhanced MR without PixelSpacing
        shutil.copy(get_testdata_file("emri_small.dcm"), p)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return p


BAD_INPUTS = {
    "corrupt": ("cannot read image", 2),
    "truncated": ("truncated", 2),
    "truncated-nii": ("truncated", 2),
    "truncated-nrrd": ("cannot read image", 2),
    "empty": ("empty", 2),
    "missing": ("not found", 2),
    "4d": ("4D image", 2),
    "rgb": ("3 component", 2),
    "nan": ("NaN or infinite", 2),
    "inf": ("NaN or infinite", 2),
    "zero-spacing": ("spacing", 2),
    "no-spacing-nrrd": ("has no voxel spacing", 2),
    "no-spacing-dicom": ("has no voxel spacing", 2),
}


def _assert_one_line_error(code: int, stdout: str, stderr: str, expected_code: int, fragment: str) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("pumit: error: ")]
    assert code == expected_code, stderr
    assert len(errors) == 1, stderr
    assert fragment.lower() in errors[0].lower(), errors[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_segment(tmp_path, models, run_cli, kind):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    src = _make_input(kind, inputs)
    fragment, expected = BAD_INPUTS[kind]
    code, stdout, stderr = run_cli("segment", src, "-o", outputs / "seg.nii.gz", "--model", models["seg"],
                                   "--probabilities", outputs / "p.nii.gz", "--device", "cpu", "--progress", "jsonl")
    _assert_one_line_error(code, stdout, stderr, expected, fragment)
    assert not outputs.exists() or files_in(outputs) == []


@pytest.mark.parametrize("kind", ["truncated", "4d", "nan", "no-spacing-nrrd"])
def test_bad_input_reconstruct_and_classify(tmp_path, models, run_cli, kind):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    src = _make_input(kind, inputs)
    fragment, expected = BAD_INPUTS[kind]
    code, out, err = run_cli("reconstruct", src, "-o", outputs / "rec.nii.gz", "--tokenizer", models["tok"],
                             "--tokens", outputs / "tok.nii.gz", "--montage", outputs / "m.png", "--device", "cpu")
    _assert_one_line_error(code, out, err, expected, fragment)
    code, out, err = run_cli("classify", src, "--model", models["cls"], "-o", outputs / "c.json", "--device", "cpu")
    _assert_one_line_error(code, out, err, expected, fragment)
    assert not outputs.exists() or files_in(outputs) == []


def test_missing_spacing_can_be_overridden(tmp_path, models, run_cli):
    src = _make_input("no-spacing-nrrd", tmp_path)
    out = tmp_path / "out" / "seg.nii.gz"
    code, _, err = run_cli("segment", src, "-o", out, "--model", models["seg"], "--spacing", "0.8", "0.8", "2.5",
                           "--device", "cpu", "--progress", "none")
    assert code == 0, err
    assert sitk.ReadImage(str(out)).GetSpacing() == (1.0, 1.0, 1.0)  # output keeps the file's own grid


@pytest.mark.parametrize(
    "model_key, command, fragment",
    [
        ("tok", "segment", "tokenizer model, but a segmentation model"),
        ("cls", "segment", "classification model, but a segmentation model"),
        ("seg", "reconstruct", "segmentation model, but a tokenizer model"),
        ("seg", "classify", "segmentation model, but a classification model"),
        ("unknown-id", "segment", "unknown model"),
        ("nope-v1.2.3", "classify", "unknown model"),
    ],
)
def test_wrong_or_unknown_model(tmp_path, models, run_cli, model_key, command, fragment):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    outputs = tmp_path / "out"
    model = models.get(model_key, model_key)
    flag = "--tokenizer" if command == "reconstruct" else "--model"
    argv = [command, src, flag, model, "--device", "cpu"]
    argv += ["-o", outputs / ("x.json" if command == "classify" else "x.nii.gz")]
    code, out, err = run_cli(*argv)
    _assert_one_line_error(code, out, err, 3, fragment)
    assert not outputs.exists() or files_in(outputs) == []


def test_corrupt_checkpoint(tmp_path, run_cli):
    folder = make_segmenter(tmp_path / "broken")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    code, out, err = run_cli("segment", src, "-o", tmp_path / "out" / "s.nii.gz", "--model", folder, "--device", "cpu")
    _assert_one_line_error(code, out, err, 3, "corrupt")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--roi", "0"], "--roi"),
        (["--roi", "32", "32"], "--roi"),
        (["--overlap", "1.0"], "--overlap"),
        (["--sw-batch", "0"], "--sw-batch"),
        (["--device", "tpu"], "unknown device"),
        (["--spacing", "1", "0", "1"], "spacing"),
        (["--probabilities", "{out}"], "also the -o output"),
        (["-o", "{in}"], "overwrite the input"),
        (["-o", "{dir}/seg.png"], "unsupported output format"),
    ],
)
def test_bad_options(tmp_path, models, run_cli, extra, fragment):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    out = tmp_path / "out" / "seg.nii.gz"
    subst = {"{out}": str(out), "{in}": str(src), "{dir}": str(tmp_path / "out")}
    extra = [subst.get(e, e.replace("{dir}", str(tmp_path / "out"))) for e in extra]
    argv = ["segment", src, "--model", models["seg"]]
    if "-o" not in extra:
        argv += ["-o", out]
    argv += extra if "--device" in extra else extra + ["--device", "cpu"]
    code, stdout, stderr = run_cli(*argv)
    _assert_one_line_error(code, stdout, stderr, 2, fragment)
    assert not (tmp_path / "out").exists() or files_in(tmp_path / "out") == []


def test_cuda_requested_without_gpu(tmp_path, models, run_cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct_crop(), str(src))
    code, out, err = run_cli("segment", src, "-o", tmp_path / "o.nii.gz", "--model", models["seg"], "--device", "cuda:0")
    _assert_one_line_error(code, out, err, 2, "CUDA is not available")
    assert not (tmp_path / "o.nii.gz").exists()


def test_zero_spacing_message_is_clear(tmp_path):
    with pytest.raises(InputError, match="zero or invalid voxel spacing"):
        read_input(_make_input("zero-spacing", tmp_path))


def test_transaction_is_all_or_nothing(tmp_path):
    """A failing later write removes the staged earlier ones; existing files are untouched."""
    img = ct_crop()
    keep = tmp_path / "existing.nii.gz"
    keep.write_bytes(b"old")

    def full_disk(_tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ResourceError, match="disk full"), OutputTransaction() as tx:
        tx.add_image(img, tmp_path / "seg.nii.gz")
        tx.add_json({"a": 1}, tmp_path / "seg.labels.json")
        tx.add_file(full_disk, tmp_path / "probs.nii.gz")
        tx.commit()
    assert files_in(tmp_path) == ["existing.nii.gz"]
    assert keep.read_bytes() == b"old"

    # a rename that fails (target is a folder) rolls back the files already renamed
    (tmp_path / "b.json").mkdir()
    with pytest.raises(InputError), OutputTransaction() as tx:
        tx.add_json({"a": 1}, tmp_path / "a.json")
        tx.add_json({"b": 2}, tmp_path / "b.json")
        tx.commit()
    assert files_in(tmp_path) == ["existing.nii.gz"]


def test_error_classes_have_documented_exit_codes():
    assert (InputError.exit_code, ModelError.exit_code, ResourceError.exit_code) == (2, 3, 4)
