"""Copy the reference models into the package as built-in models, with model cards and checksums.

    python experiments/package_models.py [--seg-run runs/ref/seg-pretrained-f100]

* runs/ref/tokenizer2/model (stage 2) -> training/pumit/assets/models/pumit-ref-tokenizer-v0.1.0/
* SEG_RUN/model             -> training/pumit/assets/models/pumit-ref-hippocampus-seg-v0.1.0/
  (default: the 100 % arm, pre-trained or scratch, whichever has the higher validation mean Dice; the choice
  and both numbers are written to the card)

The weights are copied byte for byte. config.json keeps the trained architecture and gets the model-card
fields in ``meta`` (name, version, license, labels with their MSD names, metrics, data). Each folder gets
MODEL_CARD.md and checksums.json (SHA-256 of every other file).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "training/pumit/assets/models"
RESULTS = ROOT / "benchmarks/results/reference/results.json"
VERSION = "0.1.0"

MSD_ATTRIBUTION = ("Medical Segmentation Decathlon Task04_Hippocampus (Vanderbilt University Medical Center), "
                   "CC BY-SA 4.0; Simpson et al. arXiv:1902.09063; Antonelli et al. Nat. Commun. 13, 4128 (2022)")


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def write_folder(src: Path, dst: Path, meta_update: dict, card: str) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    shutil.copyfile(src / "model.safetensors", dst / "model.safetensors")
    cfg = json.loads((src / "config.json").read_text())
    meta = cfg.get("meta", {})
    training = meta.get("training", {})
    # keep the training record but drop absolute paths of this machine
    if isinstance(training.get("data"), dict):
        training["data"] = {k: v for k, v in training["data"].items() if k != "sources"}
    if isinstance(training.get("config"), dict):
        training["config"] = {k: v for k, v in training["config"].items() if k not in ("output", "store")}
    meta["training"] = training
    meta.update(meta_update)
    cfg["meta"] = meta
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (dst / "MODEL_CARD.md").write_text(card)
    files = {n: {"sha256": sha256(dst / n)} for n in ("config.json", "model.safetensors", "MODEL_CARD.md")}
    (dst / "checksums.json").write_text(json.dumps({"files": files}, indent=2) + "\n")
    shown = dst.resolve().relative_to(ROOT) if dst.resolve().is_relative_to(ROOT) else dst
    print(f"{shown}: {sum(f.stat().st_size for f in dst.iterdir()) / 1e6:.2f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seg-run", default=None)
    a = ap.parse_args()
    res = json.loads(RESULTS.read_text())
    seg = {r["arm"] + "-" + r["fraction_tag"]: r for r in res["segmentation"]["runs"]}
    if a.seg_run:
        seg_run = ROOT / a.seg_run
    else:
        cands = [k for k in ("pretrained-100", "scratch-100") if k in seg]
        best = max(cands, key=lambda k: seg[k]["dice"]["mean"])
        arm, tag = best.split("-")
        seg_run = ROOT / "runs/ref" / f"seg-{arm}-f{tag}"
    arm_key = seg_run.name.replace("seg-", "").replace("-f", "-")  # seg-pretrained-f100 -> pretrained-100
    chosen = seg[arm_key]
    recon = res.get("reconstruction", {}).get("items", [])

    # ---- tokenizer
    tok_cfg = json.loads((ROOT / "runs/ref/tokenizer2/model/config.json").read_text())
    psnr_rows = "\n".join(f"| {r['name']} | {r['modality']} | {'yes' if r['seen'] else 'no'} | {r['psnr_db']:.2f} |"
                          for r in recon if "psnr_db" in r)
    tok_meta = {
        "name": "pumit-ref-tokenizer", "version": VERSION,
        "task": "universal visual tokenizer (soft tokens): reconstruction and MIM targets",
        "license": "CC-BY-SA-4.0",
        "description": "Small CPU-trained reference tokenizer (stride 8, K=256) trained on every real image reachable "
                       "offline (MSD Hippocampus train split, AdrenalMNIST3D train split, package test images). "
                       "Inherits CC BY-SA 4.0 from the MSD training data. A demo/reference model, not a clinical tool.",
        "data_license": {"MSD Task04 Hippocampus": "CC BY-SA 4.0", "AdrenalMNIST3D": "CC BY 4.0",
                         "tptbox samples, ITK examples": "Apache-2.0", "pydicom / pydicom-data, nibabel test data": "MIT"},
        "metrics": {"reconstruction_psnr_db": {r["name"]: r["psnr_db"] for r in recon if "psnr_db" in r}},
        "attribution": MSD_ATTRIBUTION,
        "reproduce": "bash experiments/run_all.sh (steps 1-2); configs experiments/configs/tokenizer.yaml (stage 1, seed 0) "
                     "then tokenizer_stage2.yaml (seed 1)",
    }
    tc = tok_cfg["config"]
    tok_card = f"""# pumit-ref-tokenizer v{VERSION}

Small reference **universal visual tokenizer** (SAC encoder, soft tokens, SAC decoder) shipped with pumit for the
demo (`pumit demo`) and as the MIM target of the reference SPAD-ViT. Trained on CPU in minutes: it shows that the
pipeline works end to end on real data; it is far smaller and less trained than the paper's tokenizer.

| field | value |
|---|---|
| architecture | channels {tc.get('channels')}, first stride {tc.get('first_stride')}, total stride 8, codebook K = {tc.get('codebook_size')}; weights {(ROOT / 'runs/ref/tokenizer2/model/model.safetensors').stat().st_size / 1e6:.2f} MB |
| training | stage 1: `pumit train tokenizer --config experiments/configs/tokenizer.yaml` (seed 0, 80 steps, batch 4, crops 32×64² / 1×64² for 2D, L1 + prior regularization + gated GAN; no perceptual loss: no pre-trained VGG offline) — the MIM target of the reference ViT; stage 2 (this model): `--config experiments/configs/tokenizer_stage2.yaml --base-model <stage 1>` (seed 1, {tok_cfg['meta'].get('training', {}).get('steps', '?')} more steps, batch 4, crops 16×64², L1 + weak diversity term, no GAN) |
| data | 1,396 images: MSD Hippocampus **train** split (157 T1 MRI), AdrenalMNIST3D **train** split (1,188 masks), 51 images/frames from package test data (tptbox spine CT + MRI, pydicom/pydicom-data CT, MR, CR, US, NM, nibabel MRI/fMRI, ITK example MRI/photos). List: `experiments/data/pretrain_sources.jsonl` |
| license | **CC BY-SA 4.0** — inherited from the MSD training data (share-alike); other data: CC BY 4.0 (MedMNIST), Apache-2.0, MIT |
| intended use | demo, tests, a starting point; **not for clinical use** |

## Reconstruction PSNR (dB, input value range as peak; `benchmarks/results/reference/`)

| image | modality | seen in training | PSNR |
|---|---|---|---|
{psnr_rows}

## Attribution
{MSD_ATTRIBUTION}. MedMNIST v2: Yang et al., Scientific Data 2023 (CC BY 4.0).
"""
    write_folder(ROOT / "runs/ref/tokenizer2/model", ASSETS / f"pumit-ref-tokenizer-v{VERSION}", tok_meta, tok_card)

    # ---- segmentation
    seg_cfg = json.loads((seg_run / "model/config.json").read_text())
    table = "\n".join(
        f"| {r['arm']} | {int(r['fraction'] * 100)} % ({r['n_train']}) | {r['dice']['anterior']:.4f} | {r['dice']['posterior']:.4f} | {r['dice']['mean']:.4f} |"
        for r in res["segmentation"]["runs"])
    seg_meta = {
        "name": "pumit-ref-hippocampus-seg", "version": VERSION,
        "task": "hippocampus segmentation (anterior / posterior) in T1 MRI crops",
        "labels": {"0": "background", "1": "anterior", "2": "posterior"},
        "colors": {"1": [230, 60, 60], "2": [60, 150, 250]},
        "license": "CC-BY-SA-4.0",
        "description": "Small CPU-trained SPAD-ViT segmenter for MSD Task04 Hippocampus crops (T1 MRI, ~1 mm). "
                       "Trained on the MSD training cases of the seeded split; inherits CC BY-SA 4.0 from MSD. "
                       "A demo/reference model, not a clinical tool.",
        "metrics": {"validation_split": "experiments/data/hippocampus_val.txt (51 cases)",
                    "dice": chosen["dice"], "arm": chosen["arm"], "training_cases": chosen["n_train"]},
        "attribution": MSD_ATTRIBUTION,
        "reproduce": f"bash experiments/run_all.sh; this is runs/ref/{seg_run.name}",
    }
    seg_card = f"""# pumit-ref-hippocampus-seg v{VERSION}

Small reference **hippocampus segmentation** model (SPAD-ViT + adapter + SAC U-Net decoder) shipped with pumit
for the demo (`pumit demo`, `pumit segment IMAGE -o SEG --model pumit-ref-hippocampus-seg`). It is the
**{chosen['arm']}** arm at 100 % of the training cases of the label-efficiency experiment (the arm with the higher
validation Dice). Labels: 0 background, 1 anterior (hippocampus head), 2 posterior (body + tail).

| field | value |
|---|---|
| input | one T1 MRI crop around the hippocampus (MSD Task04 style), resampled to 1 mm, z-scored; sliding window 32×48×32 |
| architecture | ViT width {seg_cfg['config'].get('vit', {}).get('embed_dim', '?')}, depth {seg_cfg['config'].get('vit', {}).get('depth', '?')}, patch 8; weights {(seg_run / 'model/model.safetensors').stat().st_size / 1e6:.2f} MB |
| training | `pumit train segment --config experiments/configs/segment.yaml` on {chosen['n_train']} cases (seed 0, 500 steps, batch 2, DiceCE){' from the MIM-pre-trained ViT (pumit-ref-tokenizer targets)' if chosen['arm'] == 'pretrained' else ' from random weights'} |
| data | MSD Task04 Hippocampus, 208 labeled cases available here; split by the data pipeline's seeded hash (seed 0, 20 % val): 157 train / 51 validation (`experiments/data/hippocampus_*.txt`) |
| license | **CC BY-SA 4.0**: the model is derived from MSD data released under CC BY-SA 4.0 and inherits its share-alike terms. Keep the attribution below. |
| intended use | demo, tests, a starting point for fine-tuning; **not for clinical use** |

## Validation Dice (51 cases never trained on; last checkpoint, no selection on validation)

| arm | training cases | anterior | posterior | mean |
|---|---|---|---|---|
{table}

## Attribution
{MSD_ATTRIBUTION}.
"""
    write_folder(seg_run / "model", ASSETS / f"pumit-ref-hippocampus-seg-v{VERSION}", seg_meta, seg_card)


if __name__ == "__main__":
    main()
