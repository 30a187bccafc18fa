#!/usr/bin/env bash
# Tokenizer recipe ablations (docs/results.md "Tokenizer v0.3: ablations"): same data (runs/data/tok3/train.jsonl),
# same seed 0, same number of steps (STEPS, default 800), same schedule; only the named option differs from
# experiments/configs/tokenizer_v3.yaml. Each run is scored on held-out images (4 IXI, 4 hippocampus, CT slices,
# adrenal masks) by experiments/eval_reconstruction.py; collected into experiments/results/tokenizer_v3_ablations.json.
#   bash experiments/tokenizer_ablations.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
PUMIT=${PUMIT:-.venv/bin/pumit}
PY=${PY:-.venv/bin/python}
STEPS=${1:-800}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
COMMON=(--config experiments/configs/tokenizer_v3.yaml --data runs/data/tok3/train.jsonl --max-steps "$STEPS"
        --val-check-interval "$STEPS" --checkpoint-every-n-steps "$STEPS" --warmup-steps 50)
declare -A ARMS=(
  [s8_sharp0.2]="--first-stride 4 --sharpness-weight 0.2 --sharpness-start 0 --sharpness-ramp 0 --diversity-weight 1.0"
  [s8_recon_first]="--first-stride 4 --sharpness-weight 0"
  [s4_sharp0.2]="--first-stride 2 --sharpness-weight 0.2 --sharpness-start 0 --sharpness-ramp 0 --diversity-weight 1.0"
  [s4_recon_first]="--first-stride 2 --sharpness-weight 0"
  [s4_annealed]="--first-stride 2 --sharpness-weight 0.05 --sharpness-start $((STEPS * 2 / 3)) --sharpness-ramp $((STEPS / 6))"
  [s4_gan_from_0]="--first-stride 2 --sharpness-weight 0 --gan-weight 0.003 --gan-start 0 --disc-lr 0.001"
)
ORDER=(${ARMS_ORDER:-s8_sharp0.2 s8_recon_first s4_sharp0.2 s4_recon_first s4_annealed s4_gan_from_0})
for arm in "${ORDER[@]}"; do
  out=runs/ref/tok3-abl-$arm
  if [ ! -f "$out/model/config.json" ]; then
    # shellcheck disable=SC2086
    $PUMIT train tokenizer "${COMMON[@]}" ${ARMS[$arm]} --output "$out" > "$out.log" 2>&1
  fi
  if [ ! -f "runs/ref/recon-abl-$arm/summary.json" ]; then
    $PY experiments/eval_reconstruction.py --tokenizer "$out/model" --output "runs/ref/recon-abl-$arm" \
        --ixi 4 --hippocampus 4 --montages 0 > "runs/ref/recon-abl-$arm.log" 2>&1
  fi
  echo "$arm done"
done
$PY experiments/collect_tokenizer_ablations.py "${ORDER[@]}"
