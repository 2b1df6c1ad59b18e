#!/usr/bin/env bash
# The main job, end to end: set-up, train ATRank on MovieLens-100k, export a model package,
# then score its golden requests through the C library from a C program on both backends.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
OUT="${ATRANK_OUT:-$ROOT/build/ml100k}"
EPOCHS="${ATRANK_EPOCHS:-2}"

step "train ATRank on MovieLens-100k ($EPOCHS epochs)"
"$PY" -m atrank_export train --data ml100k --out "$OUT" --epochs "$EPOCHS"

step "export the model package"
"$PY" -m atrank_export export --checkpoint "$OUT/checkpoint.pt" --out "$OUT/package"

step "build the C library and the C scorer"
cargo build --release
make -s -C examples/c ATRANK_LIB_DIR="$ROOT/target/release" BUILD="$ROOT/build/examples-c"

step "score the golden requests through the C ABI"
"$ROOT/build/examples-c/score_golden" "$OUT/package"

step "metrics (from $OUT/metrics.json)"
"$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(json.dumps(m.get("test", m), indent=2))' "$OUT/metrics.json"
