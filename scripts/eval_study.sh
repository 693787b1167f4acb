#!/bin/bash
# Evaluate the default model, the classic baseline and the ablation study (issue #7) on the
# 500 held-out LFW pairs and write the report. Resumable: per-method records are kept in
# OUT/records, so a rerun only does what is missing.
#
#   scripts/eval_study.sh [STUDY_DIR] [OUT_DIR] [PAIRS_TSV]
#
# DEFAULT_V1=FILE adds the first shipped default model (LFW only, 3,606 steps) as a row:
#   git show 0107c55:src/selfswap/weights/default.safetensors > default-v1.safetensors
set -euo pipefail
STUDY=${1:-${SELFSWAP_HOME:-$HOME/.cache/selfswap}/study}
OUT=${2:-${SELFSWAP_HOME:-$HOME/.cache/selfswap}/eval/study}
PAIRS=${3:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data/splits/lfw_eval_swap_pairs.tsv}
cd "$(dirname "$0")/.."
final() { echo "$STUDY/$1/checkpoints/step-$(printf %08d "$2")"; }
STEPS=${STEPS:-600}
V1=()
[ -n "${DEFAULT_V1:-}" ] && V1=(--method "default v1 (LFW only, 3,606 steps)=$DEFAULT_V1")
.venv/bin/selfswap eval --pairs "$PAIRS" --out "$OUT" --baselines no-swap,poisson \
  --model default \
  --method "selfswap default, whole-mask paste=default:paste=mask" "${V1[@]}" \
  --method "SAMAE (study)=$(final samae-128 "$STEPS")" \
  --method "seesaw (study)=$(final seesaw-128 "$STEPS")" \
  --method "no mask (study)=$(final ablation-no-mask-128 "$STEPS")" \
  --method "no mesh scaling (study)=$(final ablation-no-scaling-128 "$STEPS")" \
  --method "no perforation (study)=$(final ablation-no-perforation-128 "$STEPS")" \
  --method "no appearance code (study)=$(final ablation-no-appearance-128 "$STEPS")" \
  --reference "SAMAE (study)" --video-frames 50 \
  --title "selfswap evaluation: default model, baselines and ablation study"
