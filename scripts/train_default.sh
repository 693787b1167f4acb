#!/bin/bash
# Reproduce the shipped default model (src/selfswap/weights/default.md): prepare LFW train
# and the CelebA subset, merge them, train configs/samae-128.yaml (first on LFW train alone,
# as the shipped model was, then on both sets), and export it. Resumable: re-run the script
# after an interruption and every stage continues where it stopped.
#
#   scripts/train_default.sh [FINAL_STEP]      # outputs under $SELFSWAP_HOME (~/.cache/selfswap)
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR=${SELFSWAP_HOME:-$HOME/.cache/selfswap}
DATA=${SELFSWAP_DATA:-$(cd .. && pwd)/shared/data}
FINAL=${1:-9000}
LFW_ONLY_STEPS=3606 # the shipped model's first two CPU hours saw LFW train only
D=$HOME_DIR/datasets
R=$HOME_DIR/runs/samae-128
SELFSWAP=.venv/bin/selfswap

prepare() { # NAME, then `selfswap prepare` arguments (a finished folder is skipped)
  local name=$1
  shift
  [ -f "$D/$name/manifest.json" ] || $SELFSWAP prepare --output "$D/$name" --size 128 --workers 2 "$@"
}
prepare lfw_train --input "$DATA/splits/lfw_train.txt" --root "$DATA/lfw" --identity-from folder
prepare celeba_small --input "$DATA/celeba-aligned-small" \
  --identity-from "csv:$DATA/splits/celeba-aligned-small_identity.csv"
[ -f "$D/lfw_celeba/manifest.json" ] ||
  $SELFSWAP prepare --merge "$D/lfw_train" "$D/celeba_small" --output "$D/lfw_celeba"

latest_step() {
  local last
  last=$(ls "$R/checkpoints" 2>/dev/null | grep '^step-' | sort | tail -1 || true)
  last=${last#step-}
  echo $((10#${last:-0}))
}
train() { # DATASET STOP_STEP
  local resume=""
  [ -d "$R/checkpoints" ] && resume=--resume
  $SELFSWAP train --config configs/samae-128.yaml --data "$D/$1" --out "$R" $resume \
    --set threads=2 --set checkpoint.every=200 --set sample_every=200 --stop-at "$2"
}
[ "$(latest_step)" -ge $LFW_ONLY_STEPS ] || train lfw_train $LFW_ONLY_STEPS
[ "$(latest_step)" -ge "$FINAL" ] || train lfw_celeba "$FINAL"
$SELFSWAP export --model "$R/checkpoints/step-$(printf %08d "$FINAL")" \
  -o "$HOME_DIR/default.safetensors" --overwrite
echo "exported $HOME_DIR/default.safetensors (compare with src/selfswap/weights/default.safetensors)"
