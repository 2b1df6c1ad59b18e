#!/usr/bin/env bash
# The main job, end to end: set-up, train ATRank on MovieLens-100k, export a model package,
# then score its golden requests through the C library from a C program on both backends.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
OUT="${ATRANK_OUT:-$ROOT/build/ml100k}"
# The configuration docs/results.md chose on validation: time buckets counted in minutes,
# up to 5 epochs, the epoch kept by validation all-items AUC (lr, L2, widths: the defaults).
EPOCHS="${ATRANK_EPOCHS:-5}"
TIME_UNIT="${ATRANK_TIME_UNIT:-60}"

step "train ATRank on MovieLens-100k (up to $EPOCHS epochs, time unit $TIME_UNIT s)"
"$PY" -m atrank_export train --data ml100k --out "$OUT" --epochs "$EPOCHS" --time-unit "$TIME_UNIT"

step "export the model package"
"$PY" -m atrank_export export --checkpoint "$OUT/checkpoint.pt" --out "$OUT/package"

step "build the C library and the C scorer"
cargo build --release
make -s -C examples/c ATRANK_LIB_DIR="$ROOT/target/release" BUILD="$ROOT/build/examples-c"

step "score the golden requests through the C ABI"
"$ROOT/build/examples-c/score_golden" "$OUT/package"

step "summary"
"$PY" - "$OUT/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"trained {len(m['epochs'])} epochs on {m['train_samples']} samples in {m['train_seconds']:.0f} s "
      f"({m['samples_per_s']:.0f} samples/s); epoch {m['best_epoch']} chosen on {m['selection']}")
print(f"{'split':<11}{'users':>6}{'one-neg AUC':>13}{'all-items AUC':>15}{'global ROC AUC':>16}")
for split in ("valid", "test"):
    r = m[split]
    print(f"{split:<11}{r['users']:>6}{r['one_neg_auc']:>13.4f}{r['all_items_auc']:>15.4f}{r['global_auc']:>16.4f}")
print("parity and latency per backend: see the C scorer's summary above")
PY
