#!/usr/bin/env bash
# Hippocampus label efficiency on the tokenizer-v0.3 chain (issue 10, item 6); docs/results.md "Label efficiency".
# Arms: SPAD-ViT + light decoder (conv_levels 2) from scratch, from the MIM backbone pre-trained against
# pumit-ref-tokenizer-v0.3.0 (soft targets T = 1, and sharpened T = 0.1), and MONAI DynUNet (nnU-Net 3d_fullres
# rules). 300 steps of batch 2, the decoder comparison's settings (experiments/configs/decoder_hippocampus.yaml).
# Learning rates searched at seed 0 per fraction, then seeds 1 and 2 at the best one (LE_STAGE=search|seeds).
# One run per core: ARMS=light (the three SPAD-ViT arms) or ARMS=dynunet. Results: experiments/results/le2-*.json.
# The tokenizer-v0.4 chain (stride 2; docs/results.md "Tokenizer v0.4"): LE_VARIANTS="mim4" and "mim4-t01" (one per
# core), the MIM backbones runs/ref/mim4{,-t01} trained against pumit-ref-tokenizer-v0.4.0; the scratch and DynUNet
# arms do not depend on the tokenizer and are shared with the v0.3 chain.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
ARMS=${ARMS:-light}
STAGE=${LE_STAGE:-search}
R=experiments/results
DH="$PY experiments/decoder_compare.py --config experiments/configs/decoder_hippocampus.yaml"
C2="light_conv_levels=2"
best_lr() {  # best seed-0 learning rate of arm/variant in a results file
  $PY - "$1" "$2" <<'PY'
import json, sys
runs = [r for r in json.load(open(sys.argv[1]))["runs"] if r.get("variant", "") == sys.argv[2] and r["seed"] == 0]
print(max(runs, key=lambda r: r["dice_mean"])["lr"])
PY
}
for f in 020 050 100; do
  data=runs/data/hippo13/manifest_frac$f.jsonl
  if [ "$ARMS" = light ]; then
    for v in ${LE_VARIANTS:-scratch mim3 mim3-t01}; do
      case $v in
        scratch) over="$C2" ;;
        mim3) over="$C2 base_model=runs/ref/mim3/model" ;;
        mim3-t01) over="$C2 base_model=runs/ref/mim3-t01/model" ;;
        mim4) over="$C2 base_model=runs/ref/mim4/model" ;;
        mim4-t01) over="$C2 base_model=runs/ref/mim4-t01/model" ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
      esac
      out=$R/le2-hippocampus-f$f-$v.json
      base=${over#*base_model=}
      if [ "$base" != "$over" ]; then  # a pre-trained arm: wait for its MIM run to export the backbone
        until [ -f "$base/config.json" ]; do sleep 10; done
      fi
      if [ "$STAGE" = search ]; then
        $DH --data $data --out $out --work runs/le2/f$f-$v --arms light --lrs 0.003 0.01 0.03 --variant $v --config-override $over
      else
        $DH --data $data --out $out --work runs/le2/f$f-$v --arms light --lrs "$(best_lr $out $v)" --seeds 1 2 --variant $v --config-override $over
      fi
    done
  else
    out=$R/le2-hippocampus-f$f-dynunet.json
    if [ "$f" = 100 ]; then continue; fi  # 100 %: the decoder comparison's DynUNet runs (decoder2-hippocampus-dynunet.json)
    if [ "$STAGE" = search ]; then
      $DH --data $data --out $out --work runs/le2/f$f-dynunet --arms dynunet --lrs 0.003 0.01
    else
      $DH --data $data --out $out --work runs/le2/f$f-dynunet --arms dynunet --lrs "$(best_lr $out "")" --seeds 1 2
    fi
  fi
done
