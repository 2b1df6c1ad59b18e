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
#
# RESULTS_JOBS=2 runs a second `compare` process beside each task's, with the models, variants
# and knobs in the reverse order (--reverse-order): the two share the task's runs directory (each run is claimed
# by one process, docs/results-protocol.md), so 2 cores train two runs at once. Its log is
# build/logs/<task>-second-process.log. The summary is rewritten (--report-only) once both end.
# The first process prints the estimated time for the two (compare --processes 2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
TAOBAO=""
if [[ "${1:-}" == "--taobao" ]]; then
  TAOBAO="$2"
  shift 2
fi
bash scripts/setup.sh
JOBS="${RESULTS_JOBS:-1}"
if [[ "$JOBS" != 1 && "$JOBS" != 2 ]]; then
  echo "RESULTS_JOBS must be 1 or 2" >&2
  exit 2
fi
compare() {
  if [[ "$JOBS" == 1 ]]; then
    "$PY" -m atrank_export compare "$@"
    return
  fi
  local runs="" prev=""
  for x in "$@"; do
    if [[ "$prev" == --runs ]]; then runs="$x"; fi
    prev="$x"
  done
  local log="build/logs/$(basename "$runs")-second-process.log"
  mkdir -p build/logs
  "$PY" -m atrank_export compare "$@" --reverse-order --no-eta --no-progress > "$log" 2>&1 &
  local second=$!
  local rc=0
  "$PY" -m atrank_export compare "$@" --processes "$JOBS" || rc=$?
  wait "$second" || { echo "the second compare process failed: see $log" >&2; rc=1; }
  [[ "$rc" == 0 ]] || return "$rc"
  # the second process may have written summary.json last, in its own order
  "$PY" -m atrank_export compare "$@" --report-only --no-eta --no-progress
}
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
