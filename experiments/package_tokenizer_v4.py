"""Ship the stride-2 tokenizer as pumit-ref-tokenizer-v0.4.0 (the default ``pumit-ref-tokenizer``).

    python experiments/package_tokenizer_v4.py [--run runs/ref/tok4] [--eval runs/ref/recon-eval-tok4]

* RUN/model (experiments/configs/tokenizer_v4.yaml) -> training/pumit/assets/models/pumit-ref-tokenizer-v0.4.0/
* metrics from EVAL/recon.json + summary.json (experiments/eval_reconstruction.py) on images it never saw
* the held-out lists are v0.3's (same training list, runs/data/tok3/train.jsonl), recorded in ``meta.held_out``

v0.3.0 stays in the package: it is the tokenizer whose soft tokens the shipped MIM backbones (the brain
parcellation model's, experiments/configs/brain_mim.yaml) and the v0.3 label-efficiency chain were trained against.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from package_models import ASSETS, MSD_ATTRIBUTION, ROOT, write_folder
from package_tokenizer_v3 import HELD_OUT, IXI_ATTRIBUTION, MANIFEST, _fmt

from pumit.data import read_processed_manifest
from pumit.training.datamodules import common_intensity, intensity_by_modality

VERSION = "0.4.0"


def last_logged(run: Path, key: str) -> float | None:
    """The last logged value of ``key`` in the run's CSV log."""
    rows = [r for r in csv.DictReader((run / "logs/csv/version_0/metrics.csv").open()) if r.get(key)]
    return float(rows[-1][key]) if rows else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/ref/tok4")
    ap.add_argument("--eval", default="runs/ref/recon-eval-tok4")
    a = ap.parse_args()
    run = ROOT / a.run
    src = run / "model"
    ev = ROOT / a.eval
    records = read_processed_manifest(MANIFEST)
    by_modality = intensity_by_modality(records)
    recon = [r for r in json.loads((ev / "recon.json").read_text()) if "metrics" in r]
    summary = json.loads((ev / "summary.json").read_text())
    cfg = json.loads((src / "config.json").read_text())
    steps = cfg["meta"].get("training", {}).get("steps", "?")
    c = cfg["config"]
    stride = c["first_stride"] * 2 ** (len(c["channels"]) - 1)
    inputs = dict(cfg["meta"].get("input", {}))
    inputs.update(normalization=common_intensity(records), normalization_by_modality=by_modality)
    datasets = sorted({r.dataset for r in records})
    entropy = last_logged(run, "train/token_entropy")
    v3 = json.loads((ASSETS / "pumit-ref-tokenizer-v0.3.0/config.json").read_text())["meta"]["metrics"]
    old = v3["reconstruction_held_out"]

    def vs(group: str, key: str) -> str:  # "this (v0.3.0's)" for a group mean
        return f"{summary[group][key + '_mean']:.2f} vs {old[group][key + '_mean']:.2f}"

    ixi_s = sum(r["seconds"] for r in recon if r["group"] == "ixi") / max(1, sum(r["group"] == "ixi" for r in recon))
    neck = next((r["metrics"] for r in recon if r["name"] == "ct_neck"), None)
    meta = {
        "name": "pumit-ref-tokenizer", "version": VERSION,
        "task": "universal visual tokenizer (soft tokens): reconstruction",
        "license": "CC-BY-SA-4.0",
        "description": f"Small CPU-trained reference tokenizer (stride {stride}, K={c['codebook_size']}), trained on every "
                       "real image available offline: IXI whole-head T1 (2 mm), MSD Hippocampus, AdrenalMNIST3D and the "
                       "package test images (2D and 3D CT, MRI, X-ray, ultrasound). Share-alike licence inherited "
                       "from MSD (CC BY-SA 4.0) and IXI (CC BY-SA 3.0). A demo/reference model, not a clinical tool.",
        "data_license": {"MSD Task04 Hippocampus": "CC BY-SA 4.0", "IXI T1 (NiChart subset)": "CC BY-SA 3.0 + SBIA v1.1",
                         "AdrenalMNIST3D (MedMNIST)": "CC BY 4.0", "tptbox samples": "Apache-2.0",
                         "pydicom / pydicom-data, nibabel test data": "MIT"},
        "input": inputs,
        "normalization": inputs["normalization"],
        "metrics": {"reconstruction_held_out": summary,
                    "reconstruction": {r["name"]: r["metrics"] for r in recon}},
        "held_out": HELD_OUT,
        "attribution": MSD_ATTRIBUTION + "; " + IXI_ATTRIBUTION,
        "reproduce": "experiments/run_all.sh section 'tokenizer v0.4' (experiments/README.md)",
    }
    rows = "\n".join(
        f"| {r['name']} | {r['modality']} | {'yes' if r['seen'] else 'no'} | {_fmt(r['metrics']['pearson'], '.3f')} | "
        f"{_fmt(r['metrics']['ssim'], '.3f')} | {_fmt(r['metrics']['std_ratio'], '.2f')} | {_fmt(r['metrics']['psnr_db'], '.1f')} | "
        f"{_fmt(r['metrics']['psnr_constant_db'], '.1f')} |" for r in recon)
    grp = "\n".join(
        f"| {g} | {s['n']} | {s['pearson_mean']:.3f} (min {s['pearson_min']:.3f}) | {s['ssim_mean']:.3f} | "
        f"{s['std_ratio_mean']:.2f} [{s['std_ratio_min']:.2f}, {s['std_ratio_max']:.2f}] | {s['psnr_db_mean']:.1f} | "
        f"{s['psnr_constant_db_mean']:.1f} |" for g, s in summary.items())
    mods = ", ".join(f"{m}: {s['scheme']}" + (f" {s['window']}" if s["scheme"] == "ct" else "") for m, s in by_modality.items())
    counts = {d: sum(1 for r in records if r.dataset == d) for d in datasets}
    card = f"""# pumit-ref-tokenizer v{VERSION}

Small reference **universal visual tokenizer** (SAC encoder, soft tokens, SAC decoder) shipped with pumit for
`pumit demo`, `pumit reconstruct` and the 3D Slicer Reconstruct tab (the bare name `pumit-ref-tokenizer` resolves
to this version). Trained on the CPU; much smaller than the paper's tokenizer. **Stride 2** where v0.3.0 has 4:
the stride-4 tokens of v0.3.0 cap the reconstruction of 1 mm images at Pearson ≈ 0.87 however long its decoder
is trained (docs/results.md, "Tokenizer v0.4"). v0.3.0 stays in the package for the MIM chain trained against it.

| field | value |
|---|---|
| architecture | channels {c['channels']}, first stride {c['first_stride']}, total stride {stride} (token = {stride}×{stride} voxels in-plane, {stride} in depth at isotropic spacing), codebook K = {c['codebook_size']}, {(src / 'model.safetensors').stat().st_size / 1e6:.1f} MB |
| training | `experiments/configs/tokenizer_v4.yaml`: seed 0, {steps} steps, batch 4, crops 16×48² (1×48² for 2D; 8×24² tokens), AdamW lr 2e-3 cosine; L1 + diversity 0.1; reconstruction only (the sharpness term is not switched on at this budget); no GAN and no perceptual loss (CPU budget, no pre-trained VGG offline); ≈ 13 min on one CPU core |
| data | {len(records)} training items (repetitions included) from {', '.join(f'{d} ({n})' for d, n in counts.items())}; the same list as v0.3.0 (`experiments/data/make_tokenizer_v3_index.py` / `make_tokenizer_v3_manifest.py`) |
| held out (never trained on) | IXI subjects of `experiments/data/ixi_t1_holdout.txt` ({len(HELD_OUT['ixi_t1'])}), MSD Hippocampus cases of `experiments/data/hippocampus_val.txt` ({len(HELD_OUT['msd_hippocampus'])}), AdrenalMNIST3D val/test, CT slices {', '.join(Path(p).name for p in HELD_OUT['ct'])} |
| input normalization | per modality as in training ({mods}); CT uses the full window [-1024, 2048] HU so that air and bone come back. `--modality` or the DICOM Modality tag selects it; a file without one (NIfTI) is classified from its intensities (CT from Hounsfield units, else MRI z-score) |
| license | **CC BY-SA 4.0** (share-alike from MSD CC BY-SA 4.0 and IXI CC BY-SA 3.0); other data CC BY 4.0, Apache-2.0, MIT |
| intended use | demo, tests, reconstruction viewing, MIM targets for small experiments; **not for clinical use** |

**Inference window.** The encoder and decoder blocks use GroupNorm, whose statistics are those of the whole window
the network sees; `pumit reconstruct` therefore runs it in Gaussian-blended windows of the training crop
(`meta.input.crop_tokens` × token size, here 16×48×48 voxels) unless `--roi` says otherwise.

**Limitations (honest).** Sharper than v0.3.0 (SSIM on the held-out IXI heads {vs('ixi', 'ssim')}, hippocampus
{vs('hippocampus', 'ssim')}; v0.3.0's card figures) but still **smoothed**: fine cortical folding, thin bone and noise
texture are softened, and the std ratio is ≈ {summary['ixi']['std_ratio_mean']:.1f} (a slight loss of contrast). On
the 2D CT slices the SSIM is lower than v0.3.0's ({vs('ct', 'ssim')}; the neck slice {_fmt(neck and neck['ssim'], '.2f')}
at Pearson {_fmt(neck and neck['pearson'], '.3f')}) although the Pearson correlation is not ({vs('ct', 'pearson')}): the
error map shows the **inference window grid**, an offset of up to ≈ 80 HU per 48×48 window (GroupNorm statistics
are per window), visible in flat soft tissue at a narrow window width; v0.3.0 has the same grid, fainter. AdrenalMNIST3D binary 28³ masks: Pearson
{summary['adrenal']['pearson_mean']:.2f}. Soft tokens are broad (mean per-token entropy
{_fmt(entropy, '.2f')} nats of log 256 = 5.55 at the end of training): a continuous code for reconstruction, not
near-discrete tokens. A whole 2 mm IXI head takes {ixi_s:.1f} s on one CPU thread (mean of the held-out
subjects in the evaluation below; ≈ 2.5× v0.3.0's: 8× the tokens, a smaller network).

## Reconstruction on images it never saw (and a few it saw)

Measured by `experiments/eval_reconstruction.py` on the whole input in its own units (CT in HU): Pearson correlation,
SSIM, std(reconstruction)/std(input), PSNR with the input's range as peak **and the PSNR a constant image at the
input's mean scores** on the same voxels.

| group | n | Pearson | SSIM | std ratio [min, max] | PSNR (dB) | PSNR of a flat image (dB) |
|---|---|---|---|---|---|---|
{grp}

| image | modality | seen in training | Pearson | SSIM | std ratio | PSNR | flat-image PSNR |
|---|---|---|---|---|---|---|---|
{rows}

## Attribution
{MSD_ATTRIBUTION}. {IXI_ATTRIBUTION}. AdrenalMNIST3D: Yang et al., MedMNIST v2, Sci. Data 10, 41 (2023), CC BY 4.0.
"""
    write_folder(src, ASSETS / f"pumit-ref-tokenizer-v{VERSION}", meta, card)


if __name__ == "__main__":
    main()
