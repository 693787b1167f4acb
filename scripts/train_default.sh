#!/bin/bash
# Reproduce the shipped default model v2 (src/selfswap/weights/default.md) from the raw data.
# Resumable: re-run the script after an interruption and every stage continues where it
# stopped (checkpoints every 200 steps).
#
#   DFL_DIR=... scripts/train_default.sh [FINAL_STEP]     # outputs under $SELFSWAP_HOME
#
# DFL_DIR holds the JPEGs of the CelebA DFL faceset (the public repository
# 1148030615/pretrain_CelebA, e.g. `git archive HEAD | tar -x -C $DFL_DIR` of a clone; see
# ../shared/data/README.md). Stages, as the shipped run went:
#   1. prepare lfw_train, celeba_small and celeba_dfl (scripts/prepare_sets.sh);
#   2. the quality study's arm: configs/samae-texture-facenet-128.yaml, 3,000 steps on
#      lfw_train (scripts/quality_study.sh trains the same);
#   3. configs/default-v2-128.yaml from there on all three sets, the two CelebA sets' people
#      joined and the DFL faces only ever cross-photo sources, to step 10,200 (the shipped
#      model), its cosine schedule planned over 30,000 steps;
#   4. the same from step 10,200 on with the schedule planned to end at FINAL_STEP (default
#      22,000): the learning rate anneals to a tenth of its peak by then; then export.
#
# THREADS (default 1): the training step's torch threads; LOADERS (default 0): processes that
# build batches beside it (`data.num_workers`; 1 trained 3,130 -> 3,500 steps/h on the 2-core
# EPYC with AVX-512 BF16, the loader using a quarter of the second core).
#
# INIT=MODEL.safetensors (an exported model of this run, e.g. the shipped default, whose
# file records the step it was exported at) starts a run that has no checkpoint from that
# model at that step, with fresh optimizers: how training continues when only the model
# file outlived the run folder.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DFL_DIR:?set DFL_DIR to the folder of the CelebA DFL faceset JPEGs}"
HOME_DIR=${SELFSWAP_HOME:-$HOME/.cache/selfswap}
FINAL=${1:-22000}
STUDY_STEPS=3000
SHIPPED_STEPS=10200
THREADS=${THREADS:-1}
LOADERS=${LOADERS:-0} # batch-building processes beside the training thread (data.num_workers)
INIT=${INIT:-}
D=$HOME_DIR/datasets
R=$HOME_DIR/runs/default-v2-128
SELFSWAP=.venv/bin/selfswap

DFL_DIR=$DFL_DIR scripts/prepare_sets.sh 128
[ -f "$D/lfw_celeba_all/manifest.json" ] ||
  $SELFSWAP prepare --merge "$D/lfw_train" "$D/celeba_small" "$D/celeba_dfl" \
    --output "$D/lfw_celeba_all" --same-people celeba_small celeba_dfl

init_step() { # the step INIT was exported at
  .venv/bin/python -c "import sys; from selfswap.modelfile import exported
from selfswap.train.loop import exported_step
print(exported_step(exported.load(sys.argv[1])[2]))" "$INIT"
}
latest_step() {
  local last
  last=$(ls "$R/checkpoints" 2>/dev/null | grep '^step-' | sort | tail -1 || true)
  if [ -z "$last" ] && [ -n "$INIT" ]; then init_step; return; fi
  last=${last#step-}
  echo $((10#${last:-0}))
}
train() { # CONFIG DATASET STOP_STEP [--set ...]
  local config=$1 data=$2 stop=$3 resume=""
  shift 3
  if [ -d "$R/checkpoints" ]; then resume=--resume; elif [ -n "$INIT" ]; then resume="--init $INIT"; fi
  $SELFSWAP train --config "$config" --data "$D/$data" --out "$R" $resume \
    --set threads="$THREADS" --set data.num_workers="$LOADERS" --set checkpoint.every=200 --set progress=false \
    --stop-at "$stop" "$@"
}
[ "$(latest_step)" -ge $STUDY_STEPS ] ||
  train configs/samae-texture-facenet-128.yaml lfw_train $STUDY_STEPS --set steps=$STUDY_STEPS
[ "$(latest_step)" -ge $SHIPPED_STEPS ] ||
  train configs/default-v2-128.yaml lfw_celeba_all $SHIPPED_STEPS
[ "$(latest_step)" -ge "$FINAL" ] ||
  train configs/default-v2-128.yaml lfw_celeba_all "$FINAL" --set steps="$FINAL"
$SELFSWAP export --model "$R/checkpoints/step-$(printf %08d "$FINAL")" \
  -o "$HOME_DIR/default.safetensors" --overwrite
echo "exported $HOME_DIR/default.safetensors (compare with src/selfswap/weights/default.safetensors)"
