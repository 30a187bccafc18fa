#!/usr/bin/env bash
# The decoder comparison of docs/results.md ("Segmentation decoders"), rounds 2 and 3 (2026-12-02): every command
# that produced experiments/results/decoder2-*.json and decoder3-*.json, one run per core (OMP_NUM_THREADS=1). Round 1 (decoder-*.json,
# lr 0.0003-0.003 only) is reproduced exactly by the same seed here. Runs are appended to their --out file and a
# run already there is skipped, so the script can be stopped and restarted. Then:
#   python experiments/collect_decoder_results.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SHARED:-../shared/data}
export OMP_NUM_THREADS=1
R=experiments/results
if [ ! -f runs/data/hippo13/manifest.jsonl ]; then
  .venv/bin/pumit data index "$SHARED/msd_task04_hippocampus" -o runs/data/index_hippo.jsonl --split-seed 0 --val-fraction 0.2 --check -q
  .venv/bin/pumit data preprocess runs/data/index_hippo.jsonl -o runs/data/hippo13 --no-crop -q
fi
[ -d runs/data/brain26 ] || $PY experiments/data/make_brain_subset.py "$SHARED/ixi_t1_dlmuse" runs/data/brain26 --n 26
DH="$PY experiments/decoder_compare.py --config experiments/configs/decoder_hippocampus.yaml --data runs/data/hippo13/manifest.jsonl"
DB="$PY experiments/decoder_compare.py --config experiments/configs/decoder_brain.yaml --data runs/data/brain26 --max-steps 600"
C2="--variant conv2 --config-override light_conv_levels=2"
# 1. hippocampus, 300 steps, seed 0: the learning-rate grid extended to 0.01 and 0.03 (round 1's best was its largest)
$DH --out $R/decoder2-hippocampus-light.json --work runs/dc/work-light --arms light --lrs 0.001 0.003 0.01 0.03
$DH --out $R/decoder2-hippocampus-light-conv2.json --work runs/dc/work-lightc2 --arms light --lrs 0.003 0.01 0.03 $C2
$DH --out $R/decoder2-hippocampus-light-conv3.json --work runs/dc/work-lightc3 --arms light --lrs 0.003 0.01 \
    --variant conv3 --config-override light_conv_levels=3
$DH --out $R/decoder2-hippocampus-light-conv2-wide.json --work runs/dc/work-lightc2w --arms light --lrs 0.003 0.01 \
    --variant conv2-wide --config-override light_conv_levels=2 "light_adapter_channels=[32,64,96,128]" "light_stem_channels=[16]"
$DH --out $R/decoder2-hippocampus-light-conv2-xwide.json --work runs/dc/work-lightc2x --arms light --lrs 0.01 \
    --variant conv2-xwide --config-override light_conv_levels=2 "light_adapter_channels=[64,128,128,128]" "light_stem_channels=[32]"
$DH --out $R/decoder2-hippocampus-unet.json --work runs/dc/work-unet --arms unet --lrs 0.01 0.03
$DH --out $R/decoder2-hippocampus-unetr.json --work runs/dc/work-unetr --arms unetr --lrs 0.01 0.03
$DH --out $R/decoder2-hippocampus-dynunet.json --work runs/dc/work-dynunet --arms dynunet --lrs 0.001 0.003 0.01 0.03
# 2. seeds 1 and 2 at each arm's best seed-0 learning rate
$DH --out $R/decoder2-hippocampus-light-conv2.json --work runs/dc/work-lightc2 --arms light --lrs 0.01 --seeds 1 2 $C2
$DH --out $R/decoder2-hippocampus-light-conv2-wide.json --work runs/dc/work-lightc2w --arms light --lrs 0.01 --seeds 1 2 \
    --variant conv2-wide --config-override light_conv_levels=2 "light_adapter_channels=[32,64,96,128]" "light_stem_channels=[16]"
$DH --out $R/decoder2-hippocampus-unetr.json --work runs/dc/work-unetr --arms unetr --lrs 0.01 --seeds 1 2
$DH --out $R/decoder2-hippocampus-dynunet.json --work runs/dc/work-dynunet --arms dynunet --lrs 0.003 --seeds 1 2
# 3. longer budgets: 1000 steps; and the light decoder for the CPU time of one 300-step DynUNet run (2700 steps)
$DH --out $R/decoder2-hippocampus-1000-light-conv2.json --work runs/dc/work-h1000-lightc2 --arms light --lrs 0.01 \
    --seeds 0 1 2 --max-steps 1000 $C2
$DH --out $R/decoder2-hippocampus-1000-unetr.json --work runs/dc/work-h1000-unetr --arms unetr --lrs 0.01 --max-steps 1000
$DH --out $R/decoder2-hippocampus-1000-dynunet.json --work runs/dc/work-h1000-dynunet --arms dynunet --lrs 0.003 --max-steps 1000
$DH --out $R/decoder2-hippocampus-2700-light-conv2.json --work runs/dc/work-h2700-lightc2 --arms light --lrs 0.01 \
    --max-steps 2700 $C2
# 4. brain parcellation subset (148 labels), 600 steps, each arm at its best hippocampus learning rate
$DB --out $R/decoder2-brain-light-conv2.json --work runs/dc/work-brain-lightc2 --arms light --lrs 0.01 $C2
$DB --out $R/decoder2-brain-unet.json --work runs/dc/work-brain-unet --arms unet --lrs 0.01
$DB --out $R/decoder2-brain-unetr.json --work runs/dc/work-brain-unetr --arms unetr --lrs 0.01
$DB --out $R/decoder2-brain-dynunet.json --work runs/dc/work-brain-dynunet --arms dynunet --lrs 0.003
# --- round 3: blocks per light level (the extra ones residual): light_blocks_per_level (1 = rounds 1-2's design)
B2="--config-override light_conv_levels=2 light_blocks_per_level=2"
$DH --out $R/decoder3-hippocampus-light-conv2-rerun.json --work runs/dc/work-repro --arms light --lrs 0.01 \
    --variant conv2-rerun $C2
$DH --out $R/decoder3-hippocampus-light-conv2-b2plain.json --work runs/dc/work-v1 --arms light --lrs 0.01 \
    --variant conv2-b2 $B2 light_plain_extra_blocks=true
$DH --out $R/decoder3-hippocampus-light-conv2-rb2.json --work runs/dc/work-v2 --arms light --lrs 0.003 0.01 0.03 \
    --variant conv2-rb2 $B2
$DH --out $R/decoder3-hippocampus-light-conv2-rb2.json --work runs/dc/work-v2 --arms light --lrs 0.01 --seeds 1 2 \
    --variant conv2-rb2 $B2
$DH --out $R/decoder3-hippocampus-light-variants.json --work runs/dc/work-v3 --arms light --lrs 0.01 \
    --variant conv2-rb3 --config-override light_conv_levels=2 light_blocks_per_level=3
$DH --out $R/decoder3-hippocampus-light-variants.json --work runs/dc/work-v3 --arms light --lrs 0.01 \
    --variant conv3-rb2 --config-override light_conv_levels=3 light_blocks_per_level=2
$DH --out $R/decoder3-hippocampus-light-variants.json --work runs/dc/work-v3 --arms light --lrs 0.01 \
    --variant conv2-rb2-wide $B2 "light_adapter_channels=[32,64,96,128]" "light_stem_channels=[16]"
$DH --out $R/decoder3-hippocampus-1000-light-conv2-rb2.json --work runs/dc/work-v4-1000 --arms light --lrs 0.01 \
    --seeds 0 1 2 --max-steps 1000 --variant conv2-rb2 $B2
# --- round 4 (a third CPU, Intel Xeon; 2 runs at a time, one per core): more seeds for the 1000-step baselines,
# the full-resolution stem width of the default, and the default re-run on this CPU
$DH --out $R/decoder3-hippocampus-1000-unetr.json --work runs/dc/work-h1000-unetr --arms unetr --lrs 0.01 --seeds 1 --max-steps 1000
$DH --out $R/decoder3-hippocampus-1000-unetr-s2.json --work runs/dc/work-h1000-unetr-s2 --arms unetr --lrs 0.01 --seeds 2 --max-steps 1000
$DH --out $R/decoder3-hippocampus-1000-dynunet-s1.json --work runs/dc/work-h1000-dynunet-s1 --arms dynunet --lrs 0.003 --seeds 1 --max-steps 1000
$DH --out $R/decoder3-hippocampus-1000-dynunet-s2.json --work runs/dc/work-h1000-dynunet-s2 --arms dynunet --lrs 0.003 --seeds 2 --max-steps 1000
for s in 16 32; do
    $DH --out $R/decoder3-hippocampus-light-stem-conv2-rb2-stem$s.json --work runs/dc/work-stem-conv2-rb2-stem$s --arms light \
        --lrs 0.01 --variant conv2-rb2-stem$s $B2 "light_stem_channels=[$s]"
done
$DH --out $R/decoder3-hippocampus-light-conv2-rb2-rerun4.json --work runs/dc/work-stem-conv2-rb2-rerun --arms light --lrs 0.01 \
    --variant conv2-rb2-rerun $B2
# --- round 5 (round 4's Xeon, one run per core): do the variants that lost at 300 steps plateau higher at 1000?
# And the default's learning rate searched at the 1000-step budget, and drop path against its train/val gap
$DH --out $R/decoder5-hippocampus-1000-light-conv3-rb2.json --work runs/dc/work5-conv3 --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv3-rb2 --config-override light_conv_levels=3 light_blocks_per_level=2
$DH --out $R/decoder5-hippocampus-1000-light-conv2-rb2-wide.json --work runs/dc/work5-wide --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-wide $B2 "light_adapter_channels=[32,64,96,128]" "light_stem_channels=[16]"
$DH --out $R/decoder5-hippocampus-1000-light-conv2-rb2-lr.json --work runs/dc/work5-lr --arms light --lrs 0.003 \
    --max-steps 1000 --variant conv2-rb2 $B2
$DH --out $R/decoder5-hippocampus-1000-light-conv2-rb2-dp01.json --work runs/dc/work5-dp --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-dp0.1 $B2 drop_path=0.1
# --- round 6 (round 4's Xeon, one run per core, beside the brain model's training): mirroring augmentation
# (pumit train segment --mirror-prob 0.5). Every axis, as nnU-Net does, cost the light decoder 0.08 Dice at 1000
# steps (A-P and S-I flips are not plausible anatomy, and the labels are anterior / posterior), so the DynUNet
# was not run with it; then Left-Right only (mirror_axes 2: the other side's hippocampus) for both arms
$DH --out $R/decoder6-hippocampus-1000-light-mirror.json --work runs/dc/work6-light --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-mirror $B2 mirror_prob=0.5
M="mirror_prob=0.5 mirror_axes=[2]"
$DH --out $R/decoder6-hippocampus-1000-light-mirror-lr.json --work runs/dc/work6-light-lr --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-mirror-lr $B2 $M
$DH --out $R/decoder6-hippocampus-1000-dynunet-mirror-lr.json --work runs/dc/work6-dyn-lr --arms dynunet --lrs 0.003 \
    --max-steps 1000 --variant mirror-lr --config-override $M
# ... and whether Left-Right mirroring pays at a longer budget: the default light decoder at 3000 steps, with and without
$DH --out $R/decoder6-hippocampus-3000-light-mirror-lr.json --work runs/dc/work6-light-lr-3000 --arms light --lrs 0.01 \
    --max-steps 3000 --variant conv2-rb2-mirror-lr $B2 mirror_prob=0.5 mirror_axes=2
$DH --out $R/decoder6-hippocampus-3000-light.json --work runs/dc/work6-light-3000 --arms light --lrs 0.01 \
    --max-steps 3000 --variant conv2-rb2 $B2
# --- round 7 (2026-12-03, Intel Xeon, one run per core): is the ViT the bottleneck of the default light decoder?
# A wider ViT (embed 192, 6 heads: 2.44 M parameters, 1.65 GFLOP per training window) and a deeper one (8 blocks:
# 1.44 M, 1.47 GFLOP), each against the default's seed-0 run (0.884, round 4); same 1000 steps, lr 0.01
$DH --out $R/decoder7-hippocampus-1000-light-vit192.json --work runs/dc/work7-vit192 --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-vit192 $B2 embed_dim=192 num_heads=6
$DH --out $R/decoder7-hippocampus-1000-light-depth8.json --work runs/dc/work7-depth8 --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-depth8 $B2 depth=8
$DH --out $R/decoder7-hippocampus-1000-light-rerun7.json --work runs/dc/work7-rerun7 --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-rerun7 $B2
# ... and round 4's full-resolution stem widths (16, 32 channels; 8 is the default) at 1000 steps instead of 300
for s in 16 32; do
  $DH --out $R/decoder7-hippocampus-1000-light-stem$s.json --work runs/dc/work7-stem$s --arms light --lrs 0.01 \
      --max-steps 1000 --variant conv2-rb2-stem$s $B2 "light_stem_channels=[$s]"
done
# --- round 8 (2026-12-04, AMD EPYC, one run per core, beside the brain model's training): the last two differences
# from the DynUNet that rounds 2-7 left untried: nnU-Net's instance norm (GroupNorm(C, C)) in place of GroupNorm(8)
# in the stem and decoder, and a finer token grid (ViT patch 4); and the default re-run to calibrate this CPU
$DH --out $R/decoder8-hippocampus-1000-light-instnorm.json --work runs/dc/work8-in --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-instnorm $B2 light_instance_norm=true
$DH --out $R/decoder8-hippocampus-1000-light-patch4.json --work runs/dc/work8-p4 --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-patch4 $B2 patch_size=4
$DH --out $R/decoder8-hippocampus-1000-light-rerun8.json --work runs/dc/work8-rerun8 --arms light --lrs 0.01 \
    --max-steps 1000 --variant conv2-rb2-rerun8 $B2
