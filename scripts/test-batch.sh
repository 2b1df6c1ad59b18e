#!/usr/bin/env bash
# The batch tool (atrank-batch, cargo feature `batch`) and `atrank score`: lint, integration tests, and a CLI smoke
# run on a Parquet input written by pyarrow from real MovieLens histories.
# Called by scripts/test.sh after the normal `cargo test`; runnable alone from any directory.
# Uses ATRANK_PACKAGE (the ML-100k package; default build/test-ml100k/package when present) and
# ATRANK_ORT_LIB (ORT half of the tests; with ATRANK_REQUIRE_ORT=1 a missing library fails).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh >/dev/null

if [ -z "${ATRANK_PACKAGE:-}" ] && [ -f build/test-ml100k/package/spec.json ]; then
  export ATRANK_PACKAGE="$ROOT/build/test-ml100k/package"
fi

step "batch tool: clippy (feature batch)"
cargo clippy --all-targets --features batch -- -D warnings

step "batch tool: integration tests (tests/batch_tool.rs) and atrank score (tests/score_cli.rs)"
cargo test --features batch --test batch_tool --test score_cli

if [ -n "${ATRANK_PACKAGE:-}" ]; then
  step "batch tool: CLI smoke run on $ATRANK_PACKAGE (dev build, pyarrow-written Parquet)"
  cargo build --features batch --bin atrank-batch
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  BATCH_BIN="$ROOT/target/debug/atrank-batch" BATCH_REQUESTS=300 BATCH_CANDIDATES=20 \
    BATCH_WORK="$work" bash benches/batch_tool.sh "$ATRANK_PACKAGE"
  # Every request got its 20 scores, in input order.
  "$PY" - "$work" "$ATRANK_PACKAGE" <<'PYEOF'
import sys, glob, json, math
import pyarrow.parquet as pq
inp = pq.read_table(glob.glob(sys.argv[1] + "/requests-*.parquet")[0]).to_pylist()
for out in sorted(glob.glob(sys.argv[1] + "/out-*.parquet")):
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(inp), (out, len(rows), len(inp))
    for i, (o, r) in enumerate(zip(rows, inp)):
        assert o["row"] == i and o["request_id"] == r["request_id"] and o["user"] == r["user"], (out, i)
        assert o["error"] is None and o["candidates"] == r["candidates"], (out, i, o["error"])
        assert len(o["scores"]) == 20 and all(math.isfinite(s) for s in o["scores"]), (out, i)
    print(f"{out}: {len(rows)} rows in input order, all scored")
def scores(name):
    return [r["scores"] for r in pq.read_table(f"{sys.argv[1]}/out-{name}.parquet").to_pylist()]
assert scores("tract-1") == scores("tract-2"), "1 and 2 threads differ"
import os
ort = scores("ort-1") if os.path.exists(f"{sys.argv[1]}/out-ort-1.parquet") else None
if ort is not None:
    d = max(abs(a - b) for x, y in zip(scores("tract-1"), ort) for a, b in zip(x, y))
    # two float32 evaluations (tract, ORT) of logits of requests that are not golden ones: the
    # package's bound_any_request, 2 D U M_max (docs/tolerances.md)
    gold = json.load(open(f"{sys.argv[2]}/golden.json", encoding="utf-8"))
    tol = float(os.environ.get("ATRANK_TOLERANCE", gold["bound_any_request"]))
    assert d <= tol, f"tract vs ORT max |diff| {d} > {tol}"
    print(f"tract vs ORT: max |diff| {d:.2e} (bound_any_request {tol:.2e})")
PYEOF
else
  echo "batch tool: no ATRANK_PACKAGE and no build/test-ml100k/package: CLI smoke run skipped"
fi
