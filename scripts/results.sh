#!/usr/bin/env bash
# Regenerates docs/results.md, docs/training-curves.png and docs/results-runs.json: ATRank vs
# BPR, mean-pool, DIN and GRU on MovieLens-100k (3 seeds, every choice on validation), plus
# multi-group vs item-only ATRank on the synthetic multi-group data. ~30 min on 2 cores.
# The hand-written interpretation lives in docs/results-reading.md and is included verbatim.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
"$PY" -m atrank_export.compare --seeds 3 --out docs/results.md \
  --json docs/results-runs.json --reading docs/results-reading.md "$@"
