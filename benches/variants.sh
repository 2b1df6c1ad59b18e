#!/usr/bin/env bash
# INT8 and half-precision variants of atrank's graph at the paper's size: speed-up on ONNX
# Runtime and all-items AUC cost on MovieLens-100k, in one run (benches/variants.py says how).
#
#   bash benches/variants.sh [--work build/variants] [--epochs 2] [--rounds 40] [--reuse]
#
# Trains for about 5 minutes an epoch on 2 cores, then evaluates each variant (about a minute
# each) and times them alternated (about a minute).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh >/dev/null
source scripts/env.sh >/dev/null
exec "$PY" benches/variants.py "$@"
