#!/bin/bash
# The swap-quality study of issue #14: every arm trained with one budget (STEPS steps at
# batch 8, seed 0, the same prepared data), then judged by scripts/eval_dev.sh (SFace,
# sharpness and seam at full size on LFW and the in-the-wild set, real clips) with paired
# differences against today's SAMAE. Resumable and shareable: run it again, or in a second
# shell to use the second core, and it picks the next unfinished arm (an arm is held with
# flock on OUT/NAME.lock, released when its runner ends, however it ends).
#
#   scripts/quality_study.sh DATA_DIR [OUT_DIR] [STEPS]
#   e.g. scripts/quality_study.sh ~/.cache/selfswap/datasets/lfw_train
#   ARMS="samae-128 samae-texture-128" EVAL=0 scripts/quality_study.sh ...   # train only
set -euo pipefail
DATA=${1:?usage: $0 DATA_DIR [OUT_DIR] [STEPS]}
OUT=${2:-${SELFSWAP_HOME:-$HOME/.cache/selfswap}/quality-study}
STEPS=${3:-3000}
ARMS=${ARMS:-samae-128 samae-texture-128}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
for name in $ARMS; do
  run="$OUT/$name"
  [ -e "$run/DONE" ] && continue
  [ -d "$run.lock" ] && rmdir "$run.lock" # a lock folder of the first version of this script
  exec {lock}>"$run.lock"
  flock -n "$lock" || { exec {lock}>&-; continue; } # another runner has it
  resume=""; [ -e "$run/config.yaml" ] && resume="--resume"
  echo "$(date -u +%H:%M:%S) training $name for $STEPS steps"
  .venv/bin/selfswap train --config "configs/$name.yaml" --data "$DATA" --out "$run" $resume \
    --set steps="$STEPS" --set threads=1 --set checkpoint.every=200 --set sample_every=500 \
    --set progress=false >> "$run.log" 2>&1
  touch "$run/DONE"
  exec {lock}>&-
  echo "$(date -u +%H:%M:%S) finished $name"
done
[ "${EVAL:-1}" = 1 ] || exit 0
for name in $ARMS; do [ -e "$OUT/$name/DONE" ] || { echo "not all arms trained yet"; exit 0; }; done
methods=()
for name in $ARMS; do
  .venv/bin/selfswap export --model "$OUT/$name" -o "$OUT/$name.safetensors" --overwrite
  [ "$name" = samae-128 ] || methods+=(--method "$name=$OUT/$name.safetensors")
done
NAME=quality-study EXTRA="${methods[*]}" scripts/eval_dev.sh "$OUT/samae-128.safetensors" "SAMAE (study)"
