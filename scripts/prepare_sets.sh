#!/bin/bash
# Prepare every training set selfswap may use (resumable; a finished set is skipped):
#   lfw_train    LFW train split (splits/lfw_train.txt), people by folder
#   celeba_small the CelebA aligned subset, people from its CSV
#   celeba_dfl   the CelebA DFL faceset (tight 256x256 crops) from the public repository
#                1148030615/pretrain_CelebA, only the files listed in
#                splits/celeba_dfl256_identity.csv (some people are held out); DFL_DIR must
#                hold its JPEGs (e.g. `git archive HEAD | tar -x -C $DFL_DIR` of a clone).
#                Their embedded DeepFaceLab metadata (a pickle) is never read.
#
#   DFL_DIR=... WORKERS=2 scripts/prepare_sets.sh [SIZE]     # outputs under $SELFSWAP_HOME/datasets
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR=${SELFSWAP_HOME:-$HOME/.cache/selfswap}
DATA=${SELFSWAP_DATA:-$(cd .. && pwd)/shared/data}
SIZE=${1:-128}
WORKERS=${WORKERS:-2}
D=$HOME_DIR/datasets
SELFSWAP=${SELFSWAP:-.venv/bin/selfswap}
suffix=$([ "$SIZE" = 128 ] && echo "" || echo "_$SIZE")

prepare() { # NAME, then `selfswap prepare` arguments (a finished folder is skipped)
  local name=$1$suffix
  shift
  [ -f "$D/$name/manifest.json" ] ||
    $SELFSWAP prepare --output "$D/$name" --size "$SIZE" --workers "$WORKERS" "$@"
}
prepare lfw_train --input "$DATA/splits/lfw_train.txt" --root "$DATA/lfw" --identity-from folder
prepare celeba_small --input "$DATA/celeba-aligned-small" \
  --identity-from "csv:$DATA/splits/celeba-aligned-small_identity.csv"
if [ -n "${DFL_DIR:-}" ]; then
  list=$D/celeba_dfl_files.txt
  mkdir -p "$D"
  tail -n +2 "$DATA/splits/celeba_dfl256_identity.csv" | cut -d, -f1 > "$list"
  prepare celeba_dfl --input "$list" --root "$DFL_DIR" \
    --identity-from "csv:$DATA/splits/celeba_dfl256_identity.csv"
fi
