#!/bin/bash
# Train the ablation study of issue #7 with one budget for every method: each config for
# STEPS steps at batch 8, seed 0, the same prepared data. Resumable and shareable: run it
# again (or in a second shell, to use a second core) and it picks the next unfinished model.
#
#   scripts/ablation_study.sh DATA_DIR [OUT_DIR] [STEPS]
#   e.g. scripts/ablation_study.sh ~/.cache/selfswap/datasets/lfw_train
set -euo pipefail
DATA=${1:?usage: $0 DATA_DIR [OUT_DIR] [STEPS]}
OUT=${2:-${SELFSWAP_HOME:-$HOME/.cache/selfswap}/study}
STEPS=${3:-600}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
for name in samae-128 seesaw-128 ablation-no-mask-128 ablation-no-scaling-128 \
  ablation-no-perforation-128 ablation-no-appearance-128; do
  run="$OUT/$name"
  [ -e "$run/DONE" ] && continue
  mkdir "$run.lock" 2>/dev/null || continue # another runner has it
  trap 'rmdir "$run.lock"' EXIT
  resume=""; [ -e "$run/config.yaml" ] && resume="--resume"
  echo "$(date -u +%H:%M:%S) training $name for $STEPS steps"
  .venv/bin/selfswap train --config "configs/$name.yaml" --data "$DATA" --out "$run" $resume \
    --set steps="$STEPS" --set threads=1 --set checkpoint.every=200 --set sample_every="$STEPS" \
    --set progress=false > "$run.log" 2>&1
  touch "$run/DONE"
  rmdir "$run.lock"; trap - EXIT
  echo "$(date -u +%H:%M:%S) finished $name"
done
