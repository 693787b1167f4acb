#!/bin/bash
# Measure a model and the baselines the way a person sees them (issue #13): LFW (500 pairs)
# and the in-the-wild CelebA development set (300 pairs, full-size photos), with the SFace
# judge, sharpness and seam at the photo's own resolution, plus the real video-dev clips.
# Resumable: per-method records stay in $SELFSWAP_HOME/eval/dev-*, so a rerun only does
# what is missing.
#
#   scripts/eval_dev.sh [MODEL] [LABEL]        # default: the shipped model
#
# EXTRA="--method LABEL=MODEL ..." adds more rows (e.g. the previous default). Writes the
# reports, metrics.json, charts and the public-domain sheets to docs/results/dev-lfw and
# docs/results/dev-wild; the dataset contact sheets (16 pairs each) stay beside the
# records in $SELFSWAP_HOME/eval/dev-*/sheet.jpg (dataset pixels are never published).
# SETS="lfw" or SETS="wild" runs one set; LIMIT=N evaluates the first N pairs only;
# NAME=study writes to .../study-lfw, .../study-wild instead of dev-lfw, dev-wild.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-default}
LABEL=${2:-selfswap default}
HOME_DIR=${SELFSWAP_HOME:-$HOME/.cache/selfswap}
DATA=${DATA:-$(cd .. && pwd)/shared/data}
SETS=${SETS:-lfw wild}
SELFSWAP=${SELFSWAP:-.venv/bin/selfswap}
read -r -a extra <<< "${EXTRA:-}"
limit=()
[ -n "${LIMIT:-}" ] && limit=(--limit "$LIMIT")
for set in $SETS; do
  case $set in
    lfw) pairs=$DATA/splits/lfw_eval_swap_pairs.tsv; video=(--video-frames 50)
         title="selfswap on LFW (500 held-out pairs), judged at full size" ;;
    wild) pairs=$DATA/splits/celeba_wild_dev_swap_pairs.tsv
          video=(--video-frames 0 --video-dev "$DATA/video-dev" --video-dev-frames 100)
          title="selfswap on in-the-wild photos (celeba-wild-dev, 300 pairs) and real clips" ;;
    *) echo "unknown set $set (lfw, wild)"; exit 2 ;;
  esac
  out=$HOME_DIR/eval/${NAME:-dev}-$set
  "$SELFSWAP" eval --pairs "$pairs" --out "$out" --baselines no-swap,poisson \
    --method "$LABEL=$MODEL" "${extra[@]}" "${limit[@]}" "${video[@]}" --sheet 16 \
    --reference "$LABEL" --title "$title"
  dest=docs/results/${NAME:-dev}-$set
  mkdir -p "$dest"
  cp "$out"/report.md "$out"/metrics.json "$out"/charts.png "$out"/samples.png \
     "$out"/sheet-public-domain.jpg "$dest"/
  echo "wrote $dest (dataset contact sheet: $out/sheet.jpg)"
done
