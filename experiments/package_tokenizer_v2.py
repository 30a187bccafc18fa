"""Ship the follow-up tokenizer as pumit-ref-tokenizer-v0.2.0 (replacing v0.1.0 in the package).

    python experiments/package_tokenizer_v2.py

* runs/ref/tokenizer-bal2/model (configs tokenizer_followup.yaml then tokenizer_followup2.yaml)
  -> training/pumit/assets/models/pumit-ref-tokenizer-v0.2.0/
* metrics from runs/ref/recon-eval-bal2/recon.json (experiments/eval_reconstruction.py)

v0.1.0 normalized every input with the CT window recorded from its first training item; v0.2.0 records
the normalization of each training modality (``input.normalization_by_modality``), which `pumit reconstruct`
selects with ``--modality`` or the DICOM Modality tag, and the modality-agnostic percentile scheme otherwise.
v0.1.0 stays reproducible with experiments/run_all.sh (it is the MIM target of the reference ViT).
"""

from __future__ import annotations

import json
import shutil

from package_models import ASSETS, MSD_ATTRIBUTION, ROOT, write_folder

from pumit.data import read_processed_manifest
from pumit.training.datamodules import common_intensity, intensity_by_modality

VERSION = "0.2.0"
SRC = ROOT / "runs/ref/tokenizer-bal2/model"
MANIFEST = ROOT / "runs/data/pretrain/manifest_stage3.jsonl"
RECON = ROOT / "runs/ref/recon-eval-bal2/recon.json"


def main() -> None:
    records = read_processed_manifest(MANIFEST)
    by_modality = intensity_by_modality(records)
    recon = [r for r in json.loads(RECON.read_text()) if "psnr_db" in r]
    cfg = json.loads((SRC / "config.json").read_text())
    steps = cfg["meta"].get("training", {}).get("steps", "?")
    inputs = dict(cfg["meta"].get("input", {}))
    inputs.update(normalization=common_intensity(records), normalization_by_modality=by_modality)
    meta = {
        "name": "pumit-ref-tokenizer", "version": VERSION,
        "task": "universal visual tokenizer (soft tokens): reconstruction",
        "license": "CC-BY-SA-4.0",
        "description": "Small CPU-trained reference tokenizer (stride 8, K=256), trained on the real package test images "
                       "and the MSD Hippocampus train split. Inherits CC BY-SA 4.0 from the MSD training data. "
                       "A demo/reference model, not a clinical tool.",
        "data_license": {"MSD Task04 Hippocampus": "CC BY-SA 4.0", "tptbox samples, ITK examples": "Apache-2.0",
                         "pydicom / pydicom-data, nibabel test data": "MIT"},
        "input": inputs,
        "normalization": inputs["normalization"],
        "metrics": {"reconstruction_psnr_db": {r["name"]: r["psnr_db"] for r in recon}},
        "attribution": MSD_ATTRIBUTION,
        "reproduce": "python experiments/data/make_stage3_manifest.py; pumit train tokenizer --config "
                     "experiments/configs/tokenizer_followup.yaml ...; then tokenizer_followup2.yaml --base-model <it> "
                     "(commands in the config headers and experiments/README.md)",
    }
    rows = "\n".join(f"| {r['name']} | {r['modality']} | {'yes' if r['seen'] else 'no'} | {r['psnr_db']:.2f} |" for r in recon)
    mods = ", ".join(f"{m}: {s['scheme']}" for m, s in by_modality.items())
    card = f"""# pumit-ref-tokenizer v{VERSION}

Small reference **universal visual tokenizer** (SAC encoder, soft tokens, SAC decoder) shipped with pumit for the
demo (`pumit demo`, `pumit reconstruct`). Trained on CPU in about 20 minutes: far smaller and less trained than
the paper's tokenizer; reconstructions are blurry.

| field | value |
|---|---|
| architecture | channels {cfg['config'].get('channels')}, first stride {cfg['config'].get('first_stride')}, total stride 8, codebook K = {cfg['config'].get('codebook_size')} |
| training | fresh: `experiments/configs/tokenizer_followup.yaml` (seed 2, 1500 steps, lr 2e-3), then `tokenizer_followup2.yaml` (seed 3, {steps} more steps, lr 1e-3); batch 4, crops 16×64² (1×64² for 2D); L1 + prior regularization (diversity 1.0, sharpness 0.2); no GAN, no perceptual loss (no pre-trained VGG offline) |
| data | {len(records)} images: MSD Hippocampus **train** split (T1 MRI) and the package test images (tptbox spine CT + MRI, pydicom/pydicom-data CT, MR, CR, US, NM, nibabel MRI/fMRI, ITK example MRI/photos); list `runs/data/pretrain/manifest_stage3.jsonl` from `experiments/data/make_stage3_manifest.py` |
| input normalization | per modality as in training ({mods}); `pumit reconstruct --modality NAME` or the DICOM Modality tag selects it; otherwise percentile clipping |
| license | **CC BY-SA 4.0**, inherited from the MSD training data (share-alike); other data Apache-2.0, MIT |
| intended use | demo, tests, a starting point; **not for clinical use** |

## Reconstruction PSNR (dB, input value range as peak)

| image | modality | seen in training | PSNR |
|---|---|---|---|
{rows}

## Attribution
{MSD_ATTRIBUTION}.
"""
    write_folder(SRC, ASSETS / f"pumit-ref-tokenizer-v{VERSION}", meta, card)
    old = ASSETS / "pumit-ref-tokenizer-v0.1.0"
    if old.exists():
        shutil.rmtree(old)
        print(f"removed {old.relative_to(ROOT)} (superseded; reproducible with experiments/run_all.sh)")


if __name__ == "__main__":
    main()
