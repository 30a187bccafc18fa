#!/usr/bin/env bash
# Whole-brain T1 parcellation experiments (issue 12): data -> MIM backbone -> learning-rate search -> label
# fractions, for three arms with the same steps, seed, schedule, roi, crops, loss and data:
#   pretrained  SPAD-ViT segmenter from the MIM backbone   (pumit train segment --base-model MIM)
#   scratch     the same network from random weights      (pumit train segment)
#   dynunet     MONAI DynUNet configured like nnU-Net 3d_fullres (experiments/decoder_compare.py --arms dynunet,
#               the code of pumit train segment with only the network swapped)
# Run from the repository root after `make install`:   bash experiments/run_brain.sh
#   SMOKE=1 bash experiments/run_brain.sh   3 steps per arm, 2 validation volumes, one lr, 10 % only: proves
#                                           every command end to end on the real data (minutes, not a result)
# Knobs (environment): STEPS (800), LRS ("0.0003 0.001 0.003 0.01"), FRACS ("010 025 100"),
#   LR_PRETRAINED / LR_SCRATCH / LR_DYNUNET (all three given: no search, these learning rates are used, and the
#     100 % runs are trained only if FRACS names 100: FRACS="010 025" adds the fractions to existing 100 % runs),
#   ARMS ("pretrained scratch dynunet": the arms steps 3, 4 and 6 train and evaluate; a DynUNet evaluation reads
#     the label table of the packaged scratch run of its fraction, so run scratch first or together),
#   SHIP_STEPS (1500: the longer pre-trained run that is packaged as the built-in model; 0: none),
#   MIM_MODEL (a MIM/ViT model folder; default: trained here with brain_mim.yaml into runs/brain/mim/model),
#   TOKENIZER (MIM target when MIM_MODEL is not given; default the newest built-in pumit-ref-tokenizer),
#   OUT (runs/brain), RESULTS (experiments/results). Seeds: 0 everywhere (subject lists: default_rng(0)).
# Learning-rate search (fair: the same grid, steps and data for every arm): every arm is trained at every lr of
# LRS on the 100 % training subjects; each arm's best lr by validation Dice (brain_val.txt, the same for all
# arms) is then used for its 10 % and 25 % runs. The selection uses the validation split (disclosed in docs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PUMIT=${PUMIT:-.venv/bin/pumit}
SHARED=${SHARED:-../shared/data}
OUT=${OUT:-runs/brain}
RESULTS=${RESULTS:-experiments/results}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
    STEPS=${STEPS:-3}; LRS=${LRS:-0.001}; FRACS=${FRACS:-010}; OUT=${OUT_SMOKE:-runs/brain-smoke}
    RESULTS=$OUT/results; MIM_STEPS=3
    EXTRA=(--limit-val-batches 2)            # 2 of the 30 validation volumes: a smoke run, not a result
else
    STEPS=${STEPS:-800}; LRS=${LRS:-"0.0003 0.001 0.003 0.01"}; FRACS=${FRACS:-"010 025 100"}; MIM_STEPS=
    EXTRA=()
fi
DATA=runs/data/brain
mkdir -p "$OUT" "$RESULTS" "$DATA"
DYN_CONFIG=experiments/configs/brain_dynunet.yaml
if [ "$SMOKE" = 1 ]; then   # decoder_compare.py takes limits from its config only
    DYN_CONFIG=$OUT/brain_dynunet_smoke.yaml
    sed 's/^limit_val_batches:.*/limit_val_batches: 2/' experiments/configs/brain_dynunet.yaml > "$DYN_CONFIG"
fi

# --- 1. data: MSD-style folder (labels renumbered to the label table's classes) -> index -> preprocess -> lists
$PY experiments/data/make_brain_dataset.py "$SHARED/ixi_t1_dlmuse" "$DATA/msd"
$PUMIT data index "$DATA/msd" --modality mri --split-seed 0 -o "$DATA/index.jsonl" --check
$PUMIT data preprocess "$DATA/index.jsonl" -o "$DATA/processed" --no-crop --workers 1
$PY experiments/data/make_brain_fractions.py "$DATA/processed/manifest.jsonl"   # brain_{val,train_XXX}.txt

# --- 2. MIM backbone (given, or pre-trained here on the 100 % training subjects only) ----------------------
if [ -z "${MIM_MODEL:-}" ]; then
    TOKENIZER=${TOKENIZER:-$($PUMIT models list 2>/dev/null | awk '$1 ~ /^pumit-ref-tokenizer-v/ {print $1}' | sort -V | tail -1)}
    # targets sharpened (T = 0.1): the v0.3 tokenizer's soft tokens are near uniform, and MIM at T = 1 stays at
    # the entropy floor (docs/results.md, "The MIM / label-efficiency chain on v0.3")
    $PUMIT train mim --config experiments/configs/brain_mim.yaml --data "$DATA/processed/manifest_mim.jsonl" \
        --tokenizer "$TOKENIZER" --target-temperature 0.1 --output "$OUT/mim" \
        --max-steps "${MIM_STEPS:-1000}" --val-check-interval "${MIM_STEPS:-1000}"
    MIM_MODEL=$OUT/mim/model
    echo "MIM backbone: $MIM_MODEL (tokenizer $TOKENIZER, target temperature 0.1)" | tee "$OUT/mim_used.txt"
fi

ARMS=${ARMS:-"pretrained scratch dynunet"}
arm_on() { case " $ARMS " in *" $1 "*) return 0;; *) return 1;; esac; }
# one run of a SPAD-ViT arm: arm frac lr [steps (default STEPS) tag (appended to the run folder's name)]
seg() {
    local arm=$1 f=$2 lr=$3 steps=${4:-$STEPS} tag=${5:-} base=()
    arm_on "$arm" || return 0
    [ "$arm" = pretrained ] && base=(--base-model "$MIM_MODEL")
    $PUMIT train segment --config experiments/configs/brain_segment.yaml --data "$DATA/processed/manifest_frac$f.jsonl" \
        "${base[@]}" --lr "$lr" --max-steps "$steps" --val-check-interval "$steps" "${EXTRA[@]}" \
        --output "$OUT/$arm-f$f-lr$lr$tag"
}
# one run of the DynUNet arm: frac lr [steps (default STEPS) tag (appended to the work folder and results names)]
dyn() {
    local f=$1 lr=$2 steps=${3:-$STEPS} tag=${4:-}
    arm_on dynunet || return 0
    $PY experiments/decoder_compare.py --config "$DYN_CONFIG" --arms dynunet \
        --data "$DATA/processed/manifest_frac$f.jsonl" --lrs "$lr" --max-steps "$steps" \
        --work "$OUT/dynunet-f$f$tag" --out "$RESULTS/brain-dynunet-f$f$tag.json"
}
# --- 3. learning-rate search on 100 % (SMOKE: the first fraction), unless all three rates are given --------
SEARCH=$([ "$SMOKE" = 1 ] && echo "${FRACS%% *}" || echo 100)
if [ -n "${LR_PRETRAINED:-}" ] && [ -n "${LR_SCRATCH:-}" ] && [ -n "${LR_DYNUNET:-}" ]; then
    BEST_PRE=$LR_PRETRAINED; BEST_SCR=$LR_SCRATCH; BEST_DYN=$LR_DYNUNET
    if [ "$SMOKE" = 1 ] || [[ " $FRACS " == *" $SEARCH "* ]]; then
        seg scratch "$SEARCH" "$BEST_SCR"
        seg pretrained "$SEARCH" "$BEST_PRE"
        dyn "$SEARCH" "$BEST_DYN"
    fi
    echo "given lr (no search): pretrained $BEST_PRE, scratch $BEST_SCR, dynunet $BEST_DYN" | tee "$OUT/best_lr.txt"
else
    for lr in $LRS; do
        seg pretrained "$SEARCH" "$lr"
        seg scratch "$SEARCH" "$lr"
        dyn "$SEARCH" "$lr"
    done
    BEST_PRE=$($PY experiments/brain_results.py best "$OUT" pretrained "$SEARCH" $LRS)
    BEST_SCR=$($PY experiments/brain_results.py best "$OUT" scratch "$SEARCH" $LRS)
    BEST_DYN=$($PY experiments/brain_results.py best-dynunet "$RESULTS/brain-dynunet-f$SEARCH.json")
    echo "best lr: pretrained $BEST_PRE, scratch $BEST_SCR, dynunet $BEST_DYN" | tee "$OUT/best_lr.txt"
fi

# --- 4. label fractions at each arm's best lr ----------------------------------------------------------------
for f in $FRACS; do
    [ "$f" = "$SEARCH" ] && continue
    seg pretrained "$f" "$BEST_PRE"
    seg scratch "$f" "$BEST_SCR"
    dyn "$f" "$BEST_DYN"
done

# --- 5. collect: one JSON with every run's validation Dice on the 3 mm training grid ----------------------
$PY experiments/brain_results.py collect "$OUT" "$RESULTS" -o "$RESULTS/brain_results.json"

# --- 6. the numbers that are reported: `pumit segment` on the native 2 mm grid of the validation subjects ----
# (experiments/eval_brain.py; each SPAD-ViT run packaged first; the DynUNet through the same packaged metadata)
EVAL=(); [ "$SMOKE" = 1 ] && EVAL=(--limit 2)
for f in $FRACS; do
    for arm in pretrained scratch; do
        arm_on "$arm" || continue
        lr=$([ "$arm" = pretrained ] && echo "$BEST_PRE" || echo "$BEST_SCR")
        $PY experiments/brain_package.py --model "$OUT/$arm-f$f-lr$lr/model" --out "$OUT/packaged/$arm-f$f"
        $PY experiments/eval_brain.py --model "$OUT/packaged/$arm-f$f" --name "$arm-f$f" "${EVAL[@]}" \
            --out "$RESULTS/brain-eval-$arm-f$f.json"
    done
    if arm_on dynunet; then
        $PY experiments/eval_brain.py --model "$OUT/packaged/scratch-f$f" --name "dynunet-f$f" "${EVAL[@]}" \
            --baseline "$OUT/dynunet-f$f/dynunet-lr${BEST_DYN}-s0" --out "$RESULTS/brain-eval-dynunet-f$f.json"
    fi
done

# --- 7. the shipped model: the pre-trained arm trained longer (SHIP_STEPS), packaged and evaluated the same way
SHIP_STEPS=${SHIP_STEPS:-$([ "$SMOKE" = 1 ] && echo 0 || echo 1500)}
if [ "$SHIP_STEPS" -gt 0 ]; then
    $PUMIT train segment --config experiments/configs/brain_segment.yaml --data "$DATA/processed/manifest_frac100.jsonl" \
        --base-model "$MIM_MODEL" --lr "$BEST_PRE" --max-steps "$SHIP_STEPS" --val-check-interval "$SHIP_STEPS" \
        --output "$OUT/long-pretrained-f100-lr$BEST_PRE"
    $PY experiments/brain_package.py --model "$OUT/long-pretrained-f100-lr$BEST_PRE/model" --out "$OUT/packaged/shipped"
    $PY experiments/eval_brain.py --model "$OUT/packaged/shipped" --name "shipped (pre-trained, $SHIP_STEPS steps)" \
        --out "$RESULTS/brain-eval-shipped.json"
fi

# --- 8. issue 13's decoder arms on this task (100 %, same steps, data and evaluation; EXTRA_ARMS=0 skips them):
# MONAI UNETR at its best hippocampus lr, and our scratch arm with 2 blocks per light level (the new default)
if [ "${EXTRA_ARMS:-1}" = 1 ] && [ "$SMOKE" != 1 ]; then
    $PY experiments/decoder_compare.py --config "$DYN_CONFIG" --arms unetr --data "$DATA/processed/manifest_frac100.jsonl" \
        --lrs "${LR_UNETR:-0.01}" --max-steps "$STEPS" --work "$OUT/unetr-f100" --out "$RESULTS/brain-unetr-f100.json"
    $PY experiments/eval_brain.py --model "$OUT/packaged/scratch-f100" --dynunet "$OUT/unetr-f100/unetr-lr${LR_UNETR:-0.01}-s0" \
        --baseline-arm unetr --name unetr-f100 --out "$RESULTS/brain-eval-unetr-f100.json"
    $PUMIT train segment --config experiments/configs/brain_segment.yaml --data "$DATA/processed/manifest_frac100.jsonl" \
        --lr "$BEST_SCR" --max-steps "$STEPS" --val-check-interval "$STEPS" --blocks-per-level 2 \
        --output "$OUT/scratch-rb2-f100-lr$BEST_SCR"
    $PY experiments/brain_package.py --model "$OUT/scratch-rb2-f100-lr$BEST_SCR/model" --out "$OUT/packaged/scratch-rb2-f100"
    $PY experiments/eval_brain.py --model "$OUT/packaged/scratch-rb2-f100" --name scratch-rb2-f100 \
        --out "$RESULTS/brain-eval-scratch-rb2-f100.json"
fi

# continue_shipped BASE STEPS RUN VERSION FROM: the continuation recipe of steps 9 and 10. The model folder BASE
# trained STEPS more steps at lr 0.003 on the same data into $OUT/RUN, packaged as shipped-VERSION and evaluated
continue_shipped() {
    local base=$1 steps=$2 run=$3 version=$4 from=$5
    $PUMIT train segment --config experiments/configs/brain_segment.yaml --data "$DATA/processed/manifest_frac100.jsonl" \
        --base-model "$base" --lr 0.003 --max-steps "$steps" --val-check-interval "$steps" --output "$OUT/$run"
    $PY experiments/brain_package.py --model "$OUT/$run/model" --out "$OUT/packaged/shipped-$version"
    $PY experiments/eval_brain.py --model "$OUT/packaged/shipped-$version" \
        --name "shipped $version ($from + $steps steps, lr 0.003)" --out "$RESULTS/brain-eval-shipped-$version.json"
}

# --- 9. the shipped v0.2.0: the v0.1.0 model (step 7's run; V010=MODEL_DIR names another) trained CONTINUE_STEPS
# (3000) more steps at lr 0.003 on the same data, packaged and evaluated the same way (CONTINUE_STEPS=0 skips it)
CONTINUE_STEPS=${CONTINUE_STEPS:-$([ "$SMOKE" = 1 ] && echo 0 || echo 3000)}
if [ "$CONTINUE_STEPS" -gt 0 ]; then
    V010=${V010:-$OUT/long-pretrained-f100-lr$BEST_PRE/model}
    [ -d "$V010" ] || { echo "step 9 needs the v0.1.0 model: $V010 not found (run step 7 or set V010)" >&2; exit 1; }
    continue_shipped "$V010" "$CONTINUE_STEPS" "cont-v010-lr0.003-$CONTINUE_STEPS" v0.2.0 v0.1.0
fi

# --- 10. the shipped v0.3.0: v0.2.0 (step 9's run; V020=MODEL_DIR names another) trained CONTINUE2_STEPS (4000)
# more steps at lr 0.003, the same recipe as step 9, packaged and evaluated the same way (CONTINUE2_STEPS=0 skips it)
CONTINUE2_STEPS=${CONTINUE2_STEPS:-$([ "$SMOKE" = 1 ] && echo 0 || echo 4000)}
if [ "$CONTINUE2_STEPS" -gt 0 ]; then
    V020=${V020:-$OUT/cont-v010-lr0.003-3000/model}
    [ -d "$V020" ] || { echo "step 10 needs the v0.2.0 model: $V020 not found (run step 9 or set V020)" >&2; exit 1; }
    continue_shipped "$V020" "$CONTINUE2_STEPS" "cont-v020-lr0.003-$CONTINUE2_STEPS" v0.3.0 v0.2.0
fi

# --- 11. the shipped v0.4.0: v0.3.0 (step 10's run; V030=MODEL_DIR names another: v0.4.0 was trained from the
# shipped folder training/pumit/assets/models/pumit-ref-brain-parcellation-v0.3.0, the same weights, in the git
# history at commit b707498) trained
# CONTINUE3_STEPS (3000) more steps at lr 0.003, the recipe of steps 9-10 (CONTINUE3_STEPS=0 skips it)
CONTINUE3_STEPS=${CONTINUE3_STEPS:-$([ "$SMOKE" = 1 ] && echo 0 || echo 3000)}
if [ "$CONTINUE3_STEPS" -gt 0 ]; then
    V030=${V030:-$OUT/cont-v020-lr0.003-$CONTINUE2_STEPS/model}
    [ -d "$V030" ] || { echo "step 11 needs the v0.3.0 model: $V030 not found (run step 10 or set V030)" >&2; exit 1; }
    continue_shipped "$V030" "$CONTINUE3_STEPS" "cont-v030-lr0.003-$CONTINUE3_STEPS" v0.4.0 v0.3.0
fi

# --- 12. the shipped v0.5.0: v0.4.0 (step 11's run; V040=MODEL_DIR names another: v0.5.0 was trained from the
# shipped folder training/pumit/assets/models/pumit-ref-brain-parcellation-v0.4.0, the same weights, in the git
# history at commit d534e07) trained CONTINUE4_STEPS (3000) more steps at lr 0.003, the recipe of steps 9-11
# (CONTINUE4_STEPS=0 skips it)
CONTINUE4_STEPS=${CONTINUE4_STEPS:-$([ "$SMOKE" = 1 ] && echo 0 || echo 3000)}
if [ "$CONTINUE4_STEPS" -gt 0 ]; then
    V040=${V040:-$OUT/cont-v030-lr0.003-$CONTINUE3_STEPS/model}
    [ -d "$V040" ] || { echo "step 12 needs the v0.4.0 model: $V040 not found (run step 11 or set V040)" >&2; exit 1; }
    continue_shipped "$V040" "$CONTINUE4_STEPS" "cont-v040-lr0.003-$CONTINUE4_STEPS" v0.5.0 v0.4.0
fi

# --- 13. like-for-like at a longer budget (issue 12 "ahead of the DynUNet at every label fraction"): LONG_STEPS
# (1500, v0.1.0's budget) for the DynUNet at 100 % and for both the MIM pre-trained arm and the DynUNet at each of
# LONG_FRACS ("010 025"), each at its best 800-step lr (ours 0.01, DynUNet 0.003), seed 0, evaluated as in step 6.
# Ours at 100 % and 1500 steps is the v0.1.0 run (step 7). LONG_STEPS=0 skips it. (Run on 2026-12-04 with a MIM
# backbone re-trained by step 2's command, as for the 800-step fractions: experiments/results/brain-mim-2026-12-04.json)
LONG_STEPS=${LONG_STEPS:-$([ "$SMOKE" = 1 ] && echo 0 || echo 1500)}
if [ "$LONG_STEPS" -gt 0 ]; then
    LR_DYN_LONG=${LR_DYNUNET:-0.003}; LR_PRE_LONG=${LR_PRETRAINED:-0.01}
    for f in 100 ${LONG_FRACS:-010 025}; do
        dyn "$f" "$LR_DYN_LONG" "$LONG_STEPS" "-$LONG_STEPS"
        $PY experiments/eval_brain.py --model "$OUT/packaged/shipped" --name "dynunet-f$f-$LONG_STEPS" \
            --baseline "$OUT/dynunet-f$f-$LONG_STEPS/dynunet-lr$LR_DYN_LONG-s0" --out "$RESULTS/brain-eval-dynunet-f$f-$LONG_STEPS.json"
        [ "$f" = 100 ] && continue
        seg pretrained "$f" "$LR_PRE_LONG" "$LONG_STEPS" "-$LONG_STEPS"
        $PY experiments/brain_package.py --model "$OUT/pretrained-f$f-lr$LR_PRE_LONG-$LONG_STEPS/model" \
            --out "$OUT/packaged/pretrained-f$f-$LONG_STEPS"
        $PY experiments/eval_brain.py --model "$OUT/packaged/pretrained-f$f-$LONG_STEPS" --name "pretrained-f$f-$LONG_STEPS" \
            --out "$RESULTS/brain-eval-pretrained-f$f-$LONG_STEPS.json"
    done
fi

# continue_dyn BASE_RUN LR STEPS WORK RESULT VARIANT TOTAL: the DynUNet continuation of steps 14 and 15. The
# decoder_compare run folder BASE_RUN (its model.safetensors) trained STEPS more steps at LR with a new warm-up and
# cosine schedule, seed 0, into $OUT/WORK ($RESULTS/brain-RESULT.json, VARIANT recorded with it), then evaluated as
# in step 6 as dynunet-f100-TOTAL (TOTAL: the steps in all)
continue_dyn() {
    local base=$1 lr=$2 steps=$3 work=$4 result=$5 variant=$6 total=$7
    [ -f "$base/model.safetensors" ] || { echo "the DynUNet continuation needs $base (not found)" >&2; exit 1; }
    $PY experiments/decoder_compare.py --config "$DYN_CONFIG" --arms dynunet --data "$DATA/processed/manifest_frac100.jsonl" \
        --lrs "$lr" --max-steps "$steps" --init-weights "$base/model.safetensors" \
        --config-override checkpoint_every_n_steps=250 log_every_n_steps=50 \
        --variant "$variant" --work "$OUT/$work" --out "$RESULTS/brain-$result.json"
    $PY experiments/eval_brain.py --model "$OUT/packaged/shipped" --name "dynunet-f100-$total" \
        --baseline "$OUT/$work/dynunet-lr$lr-s0" --out "$RESULTS/brain-eval-dynunet-f100-$total.json"
}

# --- 14. the DynUNet at v0.2.0's budget (4500 steps): step 13's 1500-step run at 100 % trained DYN_CONTINUE_STEPS
# (3000) more steps at lr 0.001 (0.3x its 0.003: the rule of our continuations, 0.003 after 0.01), evaluated as in
# step 6 (DYN_CONTINUE_STEPS=0 skips it; run in a seventh session)
DYN_CONTINUE_STEPS=${DYN_CONTINUE_STEPS:-$([ "$SMOKE" = 1 ] && echo 0 || echo 3000)}
DYN_STEPS14=$((LONG_STEPS + DYN_CONTINUE_STEPS))  # the steps of step 14's DynUNet in all
if [ "$DYN_CONTINUE_STEPS" -gt 0 ] && arm_on dynunet; then
    continue_dyn "$OUT/dynunet-f100-$LONG_STEPS/dynunet-lr${LR_DYNUNET:-0.003}-s0" 0.001 "$DYN_CONTINUE_STEPS" \
        dynunet-f100-cont "dynunet-f100-cont$DYN_CONTINUE_STEPS" \
        "continued from dynunet-f100-$LONG_STEPS (lr 0.003, $LONG_STEPS steps)" "$DYN_STEPS14"
fi

# --- 15. the DynUNet at 7500 steps: step 14's run trained DYN_CONTINUE2_STEPS (3000) more steps at lr 0.0003 (0.3x
# step 14's 0.001), evaluated as in step 6 (DYN_CONTINUE2_STEPS=0 skips it; the seventh session)
DYN_CONTINUE2_STEPS=${DYN_CONTINUE2_STEPS:-$([ "$SMOKE" = 1 ] && echo 0 || echo 3000)}
if [ "$DYN_CONTINUE_STEPS" -gt 0 ] && [ "$DYN_CONTINUE2_STEPS" -gt 0 ] && arm_on dynunet; then
    continue_dyn "$OUT/dynunet-f100-cont/dynunet-lr0.001-s0" 0.0003 "$DYN_CONTINUE2_STEPS" dynunet-f100-cont2 \
        "dynunet-f100-cont2-$DYN_CONTINUE2_STEPS" \
        "continued from dynunet-f100-$DYN_STEPS14 ($LONG_STEPS at lr 0.003 + $DYN_CONTINUE_STEPS at lr 0.001)" \
        "$((DYN_STEPS14 + DYN_CONTINUE2_STEPS))"
fi
