"""A stand-in for the ``pumit`` command line, implementing its contract with a known answer.

Used by the tests that need an exactly predictable result or a failure on demand, in a real child
process (the end-to-end tests use the real CLI):

* ``segment INPUT -o OUT --model M ...``: label 1 ("bright") where the input is above its mean, written
  with the input's exact geometry, plus the ``.labels.json`` sidecar;
* ``reconstruct INPUT -o OUT --tokenizer T [--error-map E] [--modality M]``: OUT = INPUT + 1, E = |OUT - INPUT|,
  and the ``<stem>.recon.json`` sidecar with the ``metrics`` of that answer (no ``ssim``);
* ``train segment --data D --name N --epochs K``: checks the MSD dataset, prints epoch/Dice lines,
  reports ``N-v1.0.0``.

Environment knobs: ``STANDIN_SLEEP`` seconds per progress step, ``STANDIN_CHILD=1`` spawns a sleeping
grandchild (prints ``{"stage": "child", "pid": ...}``), ``STANDIN_FAIL="CODE:MESSAGE"`` fails like pumit.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import SimpleITK as sitk


def progress(stage, fraction, message, **extra):
    print(json.dumps({"stage": stage, "fraction": fraction, "message": message, **extra}), flush=True)


def steps(n):
    delay = float(os.environ.get("STANDIN_SLEEP", "0"))
    for i in range(n):
        progress("run", i / n, f"step {i + 1}/{n}")
        time.sleep(delay)


def sidecar(path):
    name = path.name
    suffix = next((s for s in (".nii.gz", ".seg.nrrd") if name.endswith(s)), path.suffix)
    return path.with_name(name[: -len(suffix)] + ".labels.json")


def main():
    parser = argparse.ArgumentParser(prog="pumit")
    parser.add_argument("command")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    fail = os.environ.get("STANDIN_FAIL")
    if os.environ.get("STANDIN_CHILD") == "1":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        progress("child", 0.0, "spawned", pid=child.pid)
    if fail:
        code, message = fail.split(":", 1)
        steps(2)
        print(f"pumit: error: {message}", file=sys.stderr)
        return int(code)

    sub = argparse.ArgumentParser()
    if args.command == "segment":
        sub.add_argument("input")
        sub.add_argument("-o", dest="output", required=True)
        sub.add_argument("--model", required=True)
        sub.add_argument("--device", "--overlap", "--progress", "--sw-batch", dest="ignored", action="append")
        a = sub.parse_args(args.rest)
        image = sitk.ReadImage(a.input)
        array = sitk.GetArrayFromImage(image)
        steps(5)
        labels = sitk.GetImageFromArray((array > array.mean()).astype("uint8"))
        labels.CopyInformation(image)
        sitk.WriteImage(labels, a.output)
        sidecar(Path(a.output)).write_text(json.dumps(
            {"model": a.model, "labels": [{"value": 1, "name": "bright", "color": [250, 200, 20]}]}))
    elif args.command == "reconstruct":
        sub.add_argument("input")
        sub.add_argument("-o", dest="output", required=True)
        sub.add_argument("--tokenizer", required=True)
        sub.add_argument("--error-map", dest="error_map")
        sub.add_argument("--modality")
        sub.add_argument("--device", "--progress", dest="ignored", action="append")
        a = sub.parse_args(args.rest)
        image = sitk.Cast(sitk.ReadImage(a.input), sitk.sitkFloat32)
        steps(3)
        sitk.WriteImage(image + 1.0, a.output)
        if a.error_map:
            sitk.WriteImage(sitk.Abs((image + 1.0) - image), a.error_map)
        voxels = sitk.GetArrayFromImage(image).astype("float64")
        variance, peak = float(voxels.var()), float(voxels.max() - voxels.min())  # MSE of input + 1 is 1
        metrics = {"pearson": 1.0, "std_ratio": 1.0, "psnr_db": 20 * math.log10(peak),
                   "psnr_constant_db": 10 * math.log10(peak * peak / variance), "psnr_gain_db": 10 * math.log10(variance)}
        out = Path(a.output)
        stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.stem
        out.with_name(stem + ".recon.json").write_text(json.dumps({"model": a.tokenizer, "modality": a.modality,
                                                                   "metrics": metrics}))
    elif args.command == "train":
        sub.add_argument("task", choices=["segment"])
        sub.add_argument("--data", required=True)
        sub.add_argument("--base-model", required=True)
        sub.add_argument("--name", required=True)
        sub.add_argument("--epochs", type=int, required=True)
        sub.add_argument("--device", "--progress", dest="ignored", action="append")
        a = sub.parse_args(args.rest)
        dataset = json.loads((Path(a.data) / "dataset.json").read_text())
        for case in dataset["training"]:
            for key in ("image", "label"):
                assert (Path(a.data) / case[key]).is_file(), case[key]
        for epoch in range(1, a.epochs + 1):
            progress("train", epoch / a.epochs * 0.99, "training", epoch=epoch, epochs=a.epochs, dice=0.5 + 0.1 * epoch)
        progress("done", 1.0, "installed", model_id=f"{a.name}-v1.0.0")
        return 0
    else:
        print(f"pumit: error: unknown command {args.command}", file=sys.stderr)
        return 2
    progress("done", 1.0, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
