#!/usr/bin/env bash
# Regenerates docs/results.md: ATRank vs SASRec, GRU, DIN, mean-pool and BPR-MF under one
# protocol (export/src/atrank_export/compare.py; the protocol is docs/results-protocol.md) on
# MovieLens-100k and, given its path, on the Taobao user-behavior sample (two tasks). The
# Taobao file is not part of this repository (its terms: research use); pass its path:
#
#   bash scripts/results.sh [--taobao PATH/user_behavior_sample.csv] [--models ...] [...]
#
# Every finished run is written at once under docs/results/<task>/, so a stopped run resumes
# where it was; each task prints its estimated time before it starts (a timed probe) and a
# progress bar. Extra arguments go to every `compare` call.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
TAOBAO=""
if [[ "${1:-}" == "--taobao" ]]; then
  TAOBAO="$2"
  shift 2
fi
bash scripts/setup.sh
compare() { "$PY" -m atrank_export compare "$@"; }
TASKS=(--task docs/results/ml100k)
compare --data ml100k --time-unit 60 --runs docs/results/ml100k \
  --title "MovieLens-100k: the next rated movie" "$@"
if [[ -n "$TAOBAO" ]]; then
  LOG=(--data log --log "$TAOBAO" --columns user,object_id,category,action,timestamp
       --no-header --catalog-from-events --min-count 2 --time-unit 60)
  compare "${LOG[@]}" --first-touch --runs docs/results/taobao-next-item \
    --title "Taobao sample: the next item a user interacts with for the first time" "$@"
  # 38 training steps per epoch here (hundreds elsewhere): a cap of 50 epochs, not 20
  compare "${LOG[@]}" --target-actions buy,cart --max-epochs 50 --runs docs/results/taobao-buy-cart \
    --title "Taobao sample: the next purchase or cart addition" "$@"
  TASKS+=(--task docs/results/taobao-next-item --task docs/results/taobao-buy-cart)
fi
"$PY" -m atrank_export compare-report --out docs/results.md \
  --protocol docs/results-protocol.md "${TASKS[@]}"
