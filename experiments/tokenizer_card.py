"""What the tokenizer packagers (package_tokenizer_v3.py, _v4.py, _v5.py) share: the training list and
held-out sets, the evaluation they read (experiments/eval_reconstruction.py), the ``meta`` fields and the metric
tables and closing sections of the model card. Each packager keeps only what is its version's own."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from collect_results import metrics_rows
from package_models import MSD_ATTRIBUTION, ROOT

from pumit.data import read_processed_manifest
from pumit.training.datamodules import common_intensity, intensity_by_modality

MANIFEST = ROOT / "runs/data/tok3/train.jsonl"
IXI_ATTRIBUTION = ("IXI dataset (Hammersmith Hospital T1, 2 mm subset from CBICA NiChart_Project), CC BY-SA 3.0; "
                   "distributed with the UPenn SBIA Contribution and Software License Agreement v1.1 (Part B)")
HELD_OUT = {
    "ixi_t1": [l for l in (ROOT / "experiments/data/ixi_t1_holdout.txt").read_text().split() if l],
    "msd_hippocampus": [l for l in (ROOT / "experiments/data/hippocampus_val.txt").read_text().split() if l],
    "ct": ["pydicom/data/test_files/J2K_pixelrep_mismatch.dcm", "data_store/data/explicit_VR-UN.dcm",
           "data_store/data/bad_sequence.dcm"],
    "adrenalmnist3d": ["official val and test splits"],
}


def fmt(v: float | None, f: str) -> str:
    return "–" if v is None else format(v, f)


def last_logged(run: Path, key: str) -> float | None:
    """The last logged value of ``key`` in the run's CSV log."""
    rows = [r for r in metrics_rows(run) if key in r]
    return float(rows[-1][key]) if rows else None


@dataclass
class Packaging:
    """A trained tokenizer (``src`` = RUN/model), its evaluation and its training list, read once."""

    src: Path
    cfg: dict[str, Any]
    records: list
    recon: list[dict]
    summary: dict[str, dict]

    @classmethod
    def load(cls, src: Path, eval_dir: Path) -> Packaging:
        recon = [r for r in json.loads((eval_dir / "recon.json").read_text()) if "metrics" in r]
        return cls(src, json.loads((src / "config.json").read_text()), read_processed_manifest(MANIFEST), recon,
                   json.loads((eval_dir / "summary.json").read_text()))

    @cached_property
    def by_modality(self) -> dict[str, dict[str, Any]]:
        """The training list's normalization per modality (as training used it)."""
        return intensity_by_modality(self.records)

    @property
    def arch(self) -> dict[str, Any]:
        return self.cfg["config"]

    @property
    def stride(self) -> int:
        return self.arch["first_stride"] * 2 ** (len(self.arch["channels"]) - 1)

    def meta(self, version: str, reproduce: str) -> dict[str, Any]:
        """The model-card fields of ``config.json`` ``meta``."""
        inputs = dict(self.cfg["meta"].get("input", {}))
        inputs.update(normalization=common_intensity(self.records), normalization_by_modality=self.by_modality)
        return {
            "name": "pumit-ref-tokenizer", "version": version,
            "task": "universal visual tokenizer (soft tokens): reconstruction",
            "license": "CC-BY-SA-4.0",
            "description": f"Small CPU-trained reference tokenizer (stride {self.stride}, K={self.arch['codebook_size']}), "
                           "trained on every real image available offline: IXI whole-head T1 (2 mm), MSD Hippocampus, "
                           "AdrenalMNIST3D and the package test images (2D and 3D CT, MRI, X-ray, ultrasound). "
                           "Share-alike licence inherited from MSD (CC BY-SA 4.0) and IXI (CC BY-SA 3.0). A "
                           "demo/reference model, not a clinical tool.",
            "data_license": {"MSD Task04 Hippocampus": "CC BY-SA 4.0", "IXI T1 (NiChart subset)": "CC BY-SA 3.0 + SBIA v1.1",
                             "AdrenalMNIST3D (MedMNIST)": "CC BY 4.0", "tptbox samples": "Apache-2.0",
                             "pydicom / pydicom-data, nibabel test data": "MIT"},
            "input": inputs,
            "normalization": inputs["normalization"],
            "metrics": {"reconstruction_held_out": self.summary,
                        "reconstruction": {r["name"]: r["metrics"] for r in self.recon}},
            "held_out": HELD_OUT,
            "attribution": MSD_ATTRIBUTION + "; " + IXI_ATTRIBUTION,
            "reproduce": reproduce,
        }

    def modalities(self) -> str:
        """``ct: ct [-1024.0, 2048.0], mri: zscore, ...`` for the card."""
        return ", ".join(f"{m}: {s['scheme']}" + (f" {s['window']}" if s["scheme"] == "ct" else "")
                         for m, s in self.by_modality.items())

    def dataset_counts(self) -> str:
        """``Hippocampus (157), adrenalmnist3d (120), ...``: training items per dataset."""
        datasets = sorted({r.dataset for r in self.records})
        return ", ".join(f"{d} ({sum(1 for r in self.records if r.dataset == d)})" for d in datasets)

    def held_out_row(self) -> str:
        return (f"IXI subjects of `experiments/data/ixi_t1_holdout.txt` ({len(HELD_OUT['ixi_t1'])}), MSD Hippocampus "
                f"cases of `experiments/data/hippocampus_val.txt` ({len(HELD_OUT['msd_hippocampus'])}), AdrenalMNIST3D "
                f"val/test, CT slices {', '.join(Path(p).name for p in HELD_OUT['ct'])}")

    def common_card_rows(self) -> str:
        """The card's table rows from "held out" to "intended use" and its paragraph on the inference window (the
        GroupNorm tokenizers of v0.4's recipe: windows of the training crop)."""
        return f"""| held out (never trained on) | {self.held_out_row()} |
| input normalization | per modality as in training ({self.modalities()}); CT uses the full window [-1024, 2048] HU so that air and bone come back. `--modality` or the DICOM Modality tag selects it; a file without one (NIfTI) is classified from its intensities (CT from Hounsfield units, else MRI z-score) |
| license | **CC BY-SA 4.0** (share-alike from MSD CC BY-SA 4.0 and IXI CC BY-SA 3.0); other data CC BY 4.0, Apache-2.0, MIT |
| intended use | demo, tests, reconstruction viewing, MIM targets for small experiments; **not for clinical use** |

**Inference window.** The encoder and decoder blocks use GroupNorm, whose statistics are those of the whole window
the network sees; `pumit reconstruct` therefore runs it in Gaussian-blended windows of the training crop
(`meta.input.crop_tokens` × token size, here 16×48×48 voxels) unless `--roi` says otherwise."""

    def metrics_sections(self) -> str:
        """The card's closing sections: the held-out metric tables (per group, per image) and the attribution."""
        grp = "\n".join(
            f"| {g} | {s['n']} | {s['pearson_mean']:.3f} (min {s['pearson_min']:.3f}) | {s['ssim_mean']:.3f} | "
            f"{s['std_ratio_mean']:.2f} [{s['std_ratio_min']:.2f}, {s['std_ratio_max']:.2f}] | {s['psnr_db_mean']:.1f} | "
            f"{s['psnr_constant_db_mean']:.1f} |" for g, s in self.summary.items())
        rows = "\n".join(
            f"| {r['name']} | {r['modality']} | {'yes' if r['seen'] else 'no'} | {fmt(r['metrics']['pearson'], '.3f')} | "
            f"{fmt(r['metrics']['ssim'], '.3f')} | {fmt(r['metrics']['std_ratio'], '.2f')} | {fmt(r['metrics']['psnr_db'], '.1f')} | "
            f"{fmt(r['metrics']['psnr_constant_db'], '.1f')} |" for r in self.recon)
        return f"""## Reconstruction on images it never saw (and a few it saw)

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
