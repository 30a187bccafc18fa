"""Ship v0.4's recipe trained twice as long as pumit-ref-tokenizer-v0.5.0 (the default ``pumit-ref-tokenizer``).

    python experiments/package_tokenizer_v5.py [--run runs/ref/tok5] [--eval runs/ref/recon-eval-tok5] \\
        [--previous-eval runs/ref/recon-eval-tok4]

* RUN/model (experiments/configs/tokenizer_v5.yaml) -> training/pumit/assets/models/pumit-ref-tokenizer-v0.5.0/
* metrics from EVAL/recon.json + summary.json (experiments/eval_reconstruction.py) on images it never saw; the
  card compares them with v0.4.0's evaluation (PREVIOUS_EVAL, same script, same images and settings)
* the held-out lists are v0.3's (same training list, runs/data/tok3/train.jsonl), recorded in ``meta.held_out``

v0.4.0 leaves the package (its folder is in the git history); v0.3.0 stays: it is the tokenizer whose soft tokens
the shipped MIM backbones (the brain parcellation model's, experiments/configs/brain_mim.yaml) were trained against.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from package_models import ASSETS, ROOT, write_folder
from tokenizer_card import Packaging, fmt, last_logged

VERSION = "0.5.0"


@dataclass(frozen=True)
class Release:
    """What differs between the releases of v0.4.0's recipe trained longer (this script: v0.5.0)."""

    version: str = VERSION
    config: str = "tokenizer_v5.yaml"
    section: str = "tokenizer v0.5"  # of experiments/run_all.sh
    longer: str = "instead of 3000"  # "trained for N steps ..."
    previous: str = "v0.4.0"  # the release the card compares with
    previous_neck_ssim: str = "0.14"
    minutes: str = "30"
    why: str = ("sharper on every held-out\ngroup, and the per-window offsets that lowered v0.4.0's SSIM on 2D CT slices "
                "are gone.")


def package(rel: Release, run_dir: str, eval_dir: str, previous_eval: str) -> None:
    """Package ``run_dir``/model with its evaluation ``eval_dir``, compared with ``previous_eval`` (same script)."""
    run = ROOT / run_dir
    pk = Packaging.load(run / "model", ROOT / eval_dir)
    src, cfg, summary, recon, records = pk.src, pk.cfg, pk.summary, pk.recon, pk.records
    old = json.loads((ROOT / previous_eval / "summary.json").read_text())
    VERSION, prev = rel.version, rel.previous  # noqa: N806 - the card template below reads them
    steps = cfg["meta"].get("training", {}).get("steps", "?")
    c = pk.arch
    stride = pk.stride
    entropy = last_logged(run, "train/token_entropy")

    def vs(group: str, key: str, f: str = ".2f") -> str:  # "this vs the previous release's" for a group mean
        return f"{summary[group][key + '_mean']:{f}} vs {old[group][key + '_mean']:{f}}"

    ixi_s = sum(r["seconds"] for r in recon if r["group"] == "ixi") / max(1, sum(r["group"] == "ixi" for r in recon))
    neck = next((r["metrics"] for r in recon if r["name"] == "ct_neck"), None)
    meta = pk.meta(VERSION, f"experiments/run_all.sh section '{rel.section}' (experiments/README.md)")
    card = f"""# pumit-ref-tokenizer v{VERSION}

Small reference **universal visual tokenizer** (SAC encoder, soft tokens, SAC decoder) shipped with pumit for
`pumit demo`, `pumit reconstruct` and the 3D Slicer Reconstruct tab (the bare name `pumit-ref-tokenizer` resolves
to this version). Trained on the CPU; much smaller than the paper's tokenizer. **v0.4.0's architecture, data and
loss trained for {steps} steps {rel.longer}** (docs/results.md, "Tokenizer v0.5"): {rel.why} v0.3.0 (stride 4) stays in
the package for the MIM chain trained against it.

| field | value |
|---|---|
| architecture | channels {c['channels']}, first stride {c['first_stride']}, total stride {stride} (token = {stride}×{stride} voxels in-plane, {stride} in depth at isotropic spacing), codebook K = {c['codebook_size']}, GroupNorm blocks (`norm: {c.get('norm', 'group')}`), {(src / 'model.safetensors').stat().st_size / 1e6:.1f} MB |
| training | `experiments/configs/{rel.config}`: seed 0, {steps} steps, batch 4, crops 16×48² (1×48² for 2D; 8×24² tokens), AdamW lr 2e-3 cosine; L1 + diversity 0.1; reconstruction only (the sharpness term is not switched on at this budget); no GAN and no perceptual loss (CPU budget, no pre-trained VGG offline); ≈ {rel.minutes} min on one CPU core |
| data | {len(records)} training items (repetitions included) from {pk.dataset_counts()}; the same list as v0.3.0 and v0.4.0 (`experiments/data/make_tokenizer_v3_index.py` / `make_tokenizer_v3_manifest.py`) |
{pk.common_card_rows()}

**Against {prev}** (the same evaluation, images and settings; this vs {prev}): Pearson IXI {vs('ixi', 'pearson', '.3f')},
hippocampus {vs('hippocampus', 'pearson', '.3f')}, CT {vs('ct', 'pearson', '.3f')}; SSIM IXI {vs('ixi', 'ssim')}, hippocampus
{vs('hippocampus', 'ssim')}, CT {vs('ct', 'ssim')} (the neck slice {fmt(neck and neck['ssim'], '.2f')}, {prev} {rel.previous_neck_ssim}); std
ratio IXI {vs('ixi', 'std_ratio')}, hippocampus {vs('hippocampus', 'std_ratio')}.

**Limitations (honest).** Still a **smoothed** image: fine cortical folding, thin bone and noise texture are
softened, and the contrast is slightly low (std ratio ≈ {summary['ixi']['std_ratio_mean']:.2f} on the IXI heads).
The head CT slice's std ratio stays low ({fmt(next((r['metrics']['std_ratio'] for r in recon if r['name'] == 'ct_head'), None), '.2f')}): its −2000 HU
out-of-field padding lies outside the CT window. AdrenalMNIST3D binary 28³ masks: Pearson
{summary['adrenal']['pearson_mean']:.2f}. Soft tokens are broad (mean per-token entropy {fmt(entropy, '.2f')} nats of
log 256 = 5.55 at the end of training): a continuous code for reconstruction, not near-discrete tokens (so a weak
MIM target, docs/results.md "The MIM / label-efficiency chain on v0.4"). A whole 2 mm IXI head takes {ixi_s:.1f} s on
one CPU thread (mean of the held-out subjects in the evaluation below).

{pk.metrics_sections()}"""
    write_folder(src, ASSETS / f"pumit-ref-tokenizer-v{VERSION}", meta, card)


def cli(rel: Release, run: str, eval_dir: str, previous_eval: str) -> None:
    """``--run``, ``--eval`` and ``--previous-eval`` (defaults: the arguments) on the command line, then :func:`package`."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=run)
    ap.add_argument("--eval", default=eval_dir)
    ap.add_argument("--previous-eval", default=previous_eval, help=f"{rel.previous}'s evaluation folder")
    a = ap.parse_args()
    package(rel, a.run, a.eval, a.previous_eval)


def main() -> None:
    cli(Release(), "runs/ref/tok5", "runs/ref/recon-eval-tok5", "runs/ref/recon-eval-tok4")


if __name__ == "__main__":
    main()
