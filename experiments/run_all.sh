#!/usr/bin/env bash
# Reproduce every reference model and result of docs/results.md from the repository (CPU; see README.md here).
# Run from the repository root after `make install`:   bash experiments/run_all.sh
# Outputs go to runs/ (git-ignored); results are collected into experiments/results/ and benchmarks/results/reference/.
# Seeds: 0 everywhere (data split seed 0, label-fraction order seed 0, training seed 0).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PUMIT=${PUMIT:-.venv/bin/pumit}
SHARED=${SHARED:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p runs/data runs/ref

# --- 1. data ----------------------------------------------------------------------------------------------
# pre-training list of every real image reachable offline (package test images), committed as pretrain_sources.jsonl
$PY experiments/data/make_pretrain_list.py
$PUMIT data index experiments/data/pretrain_sources.jsonl "$SHARED/msd_task04_hippocampus" \
    "$SHARED/adrenalmnist3d/adrenalmnist3d.npz" -o runs/data/index_all.jsonl --split-seed 0 --val-fraction 0.2
# keep AdrenalMNIST3D train + Hippocampus train (hash split) + all package images; drop labels
$PY experiments/data/filter_pretrain_index.py runs/data/index_all.jsonl runs/data/index_pretrain.jsonl
$PUMIT data preprocess runs/data/index_pretrain.jsonl -o runs/data/pretrain --max-side 256 --workers 2
$PY experiments/data/harmonize_planar.py runs/data/pretrain/manifest.jsonl runs/data/pretrain/manifest_2d.jsonl
# hippocampus: seeded hash split (seed 0, 20 % val), no foreground crop (as at inference), label fractions
$PUMIT data index "$SHARED/msd_task04_hippocampus" -o runs/data/index_hippo.jsonl --split-seed 0 --val-fraction 0.2 --check
$PUMIT data preprocess runs/data/index_hippo.jsonl -o runs/data/hippo --no-crop
$PY experiments/data/make_label_fractions.py runs/data/hippo/manifest.jsonl

# --- 2. pre-training --------------------------------------------------------------------------------------
$PUMIT train tokenizer --config experiments/configs/tokenizer.yaml --data runs/data/pretrain/manifest_2d.jsonl \
    --output runs/ref/tokenizer
$PUMIT train mim --config experiments/configs/mim.yaml --data runs/data/pretrain/manifest_2d.jsonl \
    --tokenizer runs/ref/tokenizer/model --output runs/ref/mim
# stage 2: continue the tokenizer with a reconstruction-focused objective -> the shipped demo tokenizer
$PUMIT train tokenizer --config experiments/configs/tokenizer_stage2.yaml --data runs/data/pretrain/manifest_2d.jsonl \
    --base-model runs/ref/tokenizer/model --output runs/ref/tokenizer2
$PY experiments/eval_reconstruction.py --tokenizer runs/ref/tokenizer/model --output runs/ref/recon-eval-stage1
$PY experiments/eval_reconstruction.py --tokenizer runs/ref/tokenizer2/model --output runs/ref/recon-eval

# --- 3. label efficiency on MSD Hippocampus (same steps / seed / schedule for every arm) -------------------
for f in 020 050 100; do
  $PUMIT train segment --config experiments/configs/segment.yaml --data runs/data/hippo/manifest_frac$f.jsonl \
      --output runs/ref/seg-scratch-f$f
  $PUMIT train segment --config experiments/configs/segment.yaml --data runs/data/hippo/manifest_frac$f.jsonl \
      --output runs/ref/seg-pretrained-f$f --base-model runs/ref/mim/model
done

# --- 4. AdrenalMNIST3D classification (official splits; best val AUC -> test once) -------------------------
$PUMIT train classify --config experiments/configs/classify.yaml --data "$SHARED/adrenalmnist3d/adrenalmnist3d.npz" \
    --output runs/ref/cls-scratch
$PUMIT train classify --config experiments/configs/classify.yaml --data "$SHARED/adrenalmnist3d/adrenalmnist3d.npz" \
    --output runs/ref/cls-pretrained --base-model runs/ref/mim/model
$PY experiments/baseline_resnet3d.py --data "$SHARED/adrenalmnist3d/adrenalmnist3d.npz" --output runs/ref/cls-resnet18
# independent re-evaluation of the exported classifiers on val/test (cross-check of the trainer's numbers)
for arm in scratch pretrained; do $PY experiments/eval_classifier.py runs/ref/cls-$arm/model > runs/ref/cls-$arm/eval.json; done

# --- 5. results, plots, shipped models ---------------------------------------------------------------------
$PY experiments/collect_results.py
$PY experiments/package_models.py

# tokenizer follow-up, shipped as pumit-ref-tokenizer-v0.2.0 (docs/results.md "Tokenizer follow-up")
$PY experiments/data/make_stage3_manifest.py
$PUMIT train tokenizer --config experiments/configs/tokenizer_followup.yaml --data runs/data/pretrain/manifest_stage3.jsonl \
    --output runs/ref/tokenizer-bal
$PUMIT train tokenizer --config experiments/configs/tokenizer_followup2.yaml --data runs/data/pretrain/manifest_stage3.jsonl \
    --base-model runs/ref/tokenizer-bal/model --output runs/ref/tokenizer-bal2
$PY experiments/eval_reconstruction.py --tokenizer runs/ref/tokenizer-bal2/model --output runs/ref/recon-eval-bal2
$PY experiments/package_tokenizer_v2.py

# tokenizer v0.3, shipped as pumit-ref-tokenizer-v0.3.0 (docs/results.md "Tokenizer v0.3"): every real image of
# ../shared/data (IXI T1 whole head, hippocampus, AdrenalMNIST3D) + the package images; evaluation images held out
$PUMIT data index "$SHARED/ixi_t1_dlmuse/t1" --modality mri --dataset ixi_t1 --val-fraction 0.1 --split-seed 0 \
    -o runs/data/index_ixi.jsonl -q
$PY experiments/data/make_tokenizer_v3_index.py runs/data/index_all.jsonl runs/data/index_ixi.jsonl -o runs/data/index_tok3.jsonl
$PUMIT data preprocess runs/data/index_tok3.jsonl -o runs/data/tok3 --max-side 256 --workers 1 -q
$PY experiments/data/renormalize_tokenizer_v3.py runs/data/index_tok3.jsonl runs/data/tok3/manifest.jsonl \
    runs/data/tok3/manifest_renorm.jsonl
# --exclude itk-examples: the shipped list (538 items) was made without Debian's insighttoolkit5-examples
$PY experiments/data/make_tokenizer_v3_manifest.py runs/data/tok3/manifest_renorm.jsonl runs/data/tok3/train.jsonl \
    --exclude itk-examples
$PUMIT train tokenizer --config experiments/configs/tokenizer_v3.yaml --data runs/data/tok3/train.jsonl --output runs/ref/tok3
$PY experiments/eval_reconstruction.py --tokenizer runs/ref/tok3/model --output runs/ref/recon-eval-tok3 --montages 3
$PY experiments/package_tokenizer_v3.py --run runs/ref/tok3 --eval runs/ref/recon-eval-tok3
bash experiments/tokenizer_ablations.sh 800

# decoder comparison round 2 (issue 13; docs/results.md "Segmentation decoders"): conv_levels, wider lr grid, seeds
bash experiments/decoder_compare.sh
$PY experiments/collect_decoder_results.py

# the MIM / label-efficiency chain on tokenizer v0.3 (issue 10 item 6; docs/results.md): MIM with the published soft
# targets (T = 1) and sharpened ones (T = 0.1), then hippocampus label efficiency (search, then seeds 1-2)
$PUMIT train mim --config experiments/configs/mim_v3.yaml --data runs/data/tok3/train.jsonl \
    --tokenizer pumit-ref-tokenizer-v0.3.0 --output runs/ref/mim3
$PUMIT train mim --config experiments/configs/mim_v3.yaml --data runs/data/tok3/train.jsonl \
    --tokenizer pumit-ref-tokenizer-v0.3.0 --target-temperature 0.1 --name pumit-ref-vit-mim3-t01 --output runs/ref/mim3-t01
$PY experiments/collect_mim_v3.py
$PY experiments/data/make_label_fractions.py runs/data/hippo13/manifest.jsonl
for stage in search seeds; do
  ARMS=light LE_STAGE=$stage bash experiments/label_efficiency.sh
  ARMS=dynunet LE_STAGE=$stage bash experiments/label_efficiency.sh
done

# tokenizer v0.4, shipped as pumit-ref-tokenizer-v0.4.0 until v0.5.0 (docs/results.md "Tokenizer v0.4"): first the probes that
# showed v0.3's stride-4 tokens cap 1 mm reconstruction (decoder trained alone, encoder + codebook frozen), then
# stride 2 on the same data list, its two MIM backbones, hippocampus label efficiency and AdrenalMNIST3D
# (scratch, DynUNet and ResNet arms do not depend on the tokenizer: shared with the v0.3 chain)
$PY experiments/tokenizer_decoder_probe.py --arm same --steps 10000 --eval-every 2000 --output runs/ref/decprobe-same
$PY experiments/tokenizer_decoder_probe.py --arm wide --steps 4000 --eval-every 1000 --output runs/ref/decprobe-wide
$PY experiments/tokenizer_decoder_probe.py --arm wide --width 64 32 16 --steps 4000 --eval-every 1000 --output runs/ref/decprobe-wide64
$PUMIT train tokenizer --config experiments/configs/tokenizer_v4.yaml --data runs/data/tok3/train.jsonl --output runs/ref/tok4
$PY experiments/eval_reconstruction.py --tokenizer runs/ref/tok4/model --output runs/ref/recon-eval-tok4 --montages 1
$PY experiments/package_tokenizer_v4.py --run runs/ref/tok4 --eval runs/ref/recon-eval-tok4
$PUMIT train mim --config experiments/configs/mim_v3.yaml --data runs/data/tok3/train.jsonl \
    --tokenizer runs/ref/tok4/model --name pumit-ref-vit-mim4 --output runs/ref/mim4
$PUMIT train mim --config experiments/configs/mim_v3.yaml --data runs/data/tok3/train.jsonl \
    --tokenizer runs/ref/tok4/model --target-temperature 0.1 --name pumit-ref-vit-mim4-t01 --output runs/ref/mim4-t01
for stage in search seeds; do ARMS=light LE_VARIANTS="mim4 mim4-t01" LE_STAGE=$stage bash experiments/label_efficiency.sh; done
$PY experiments/collect_label_efficiency.py
# ... and AdrenalMNIST3D on the T = 0.1 MIM backbones (v0.3 and v0.4): scratch / pre-trained SPAD-ViT and the ResNet-18 baseline,
# lr searched at seed 0 by validation AUC, then seeds 1-2 (docs/results.md "AdrenalMNIST3D on the v0.3 chain")
for stage in search seeds; do $PY experiments/adrenal_chain.py --stage $stage; done
$PY experiments/adrenal_chain.py --table --update docs/results.md

# tokenizer v0.5 and v0.6 (docs/results.md "Tokenizer v0.5 and v0.6"): v0.4's recipe for 6000 steps (v0.5.0),
# and the per-voxel normalization candidate (not shipped) at 3000 and 6000 steps; the candidate's rows in 32x512x512
# windows (results/reconstruction_v0.5.0.json) were measured with commit ac63875's reconstruct.py, whose default
# ran a channel-norm tokenizer in windows of that size clamped to the volume (withdrawn in the next commits)
$PUMIT train tokenizer --config experiments/configs/tokenizer_v5.yaml --data runs/data/tok3/train.jsonl --output runs/ref/tok5
$PUMIT train tokenizer --config experiments/configs/tokenizer_v5_channel.yaml --data runs/data/tok3/train.jsonl --output runs/ref/tok5-channel-3k
$PUMIT train tokenizer --config experiments/configs/tokenizer_v5_channel.yaml --data runs/data/tok3/train.jsonl --max-steps 6000 \
    --output runs/ref/tok5-channel-6k
for t in tok5 tok5-channel-3k tok5-channel-6k; do
    $PY experiments/eval_reconstruction.py --tokenizer runs/ref/$t/model --output runs/ref/recon-eval-$t --montages 1
done
# (v0.5.0, shipped until v0.6.0:) $PY experiments/package_tokenizer_v5.py --run runs/ref/tok5 --eval runs/ref/recon-eval-tok5 --previous-eval runs/ref/recon-eval-tok4
# v0.6.0, shipped: the same recipe for 12000 steps
$PUMIT train tokenizer --config experiments/configs/tokenizer_v6.yaml --data runs/data/tok3/train.jsonl --output runs/ref/tok6
$PY experiments/eval_reconstruction.py --tokenizer runs/ref/tok6/model --output runs/ref/recon-eval-tok6 --montages 1
$PY experiments/package_tokenizer_v6.py --run runs/ref/tok6 --eval runs/ref/recon-eval-tok6 --previous-eval runs/ref/recon-eval-tok5
