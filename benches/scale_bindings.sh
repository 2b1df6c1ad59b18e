#!/usr/bin/env bash
# Every way of embedding atrank serves one package, unchanged, against the trainer's scores:
#
#   bash benches/scale_bindings.sh PACKAGE [LIB_DIR]
#
# PACKAGE is a model package directory (the 10M-item one: build/scale/big/package after
# `bash benches/scale.sh`); LIB_DIR holds libatrank.so and the atrank / atrank-batch binaries
# (default target/debug; target/release after `cargo build --release --features batch`).
# Each step scores the package's golden.json requests (PyTorch's logits: an independent
# reference) on tract and on ONNX Runtime and checks every score within the request's
# tolerance:
#   - C: ffi-tests/c test_golden (built by scripts/test.sh, or here with cmake);
#   - C++: ffi-tests/cpp, the Golden suite (GoogleTest);
#   - Go: ffi-tests/go's consumer test, then the rerank-server example under its loopback load
#     test with 2 reloads (examples/go/cmd/loadtest; at most GO_LOAD_N requests, default 2000,
#     over at most GO_LOAD_DURATION, default 20s, from GO_LOAD_C clients, default 4);
#   - Python: the ctypes binding (bindings/python), score and score_batch;
#   - `atrank score` (JSON in) and `atrank-batch` (JSON lines in, Parquet out).
# Prints one line per step and its wall time. scripts/test.sh runs it on the toy scale package,
# so every step stays covered in CI; the 10M-item run is recorded in docs/benchmarks.md,
# "Scale".
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh >/dev/null
[ $# -ge 1 ] || { echo "usage: $0 PACKAGE [LIB_DIR]" >&2; exit 2; }
PKG="$(cd "$1" && pwd)"
LIB_DIR="$(cd "${2:-target/debug}" && pwd)"
[ -f "$PKG/golden.json" ] || { echo "$PKG has no golden.json" >&2; exit 2; }
for f in libatrank.so atrank atrank-batch; do
  [ -e "$LIB_DIR/$f" ] || { echo "$LIB_DIR/$f is missing (cargo build --features batch)" >&2; exit 2; }
done
[ -f "${ATRANK_ORT_LIB:-}" ] || { echo "ATRANK_ORT_LIB is not a file (source scripts/env.sh)" >&2; exit 2; }
export ATRANK_PACKAGE="$PKG" ATRANK_REQUIRE_ORT=1
WORK="$(mktemp -d "${TMPDIR:-/tmp}/atrank-scale-bindings.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
T0=$SECONDS
timed() {  # NAME COMMAND...: runs it, output to a log shown on failure, one line with the time
  local name="$1" t=$SECONDS
  shift
  if ! "$@" >"$WORK/step.log" 2>&1; then
    tail -n 60 "$WORK/step.log" >&2
    echo "scale_bindings: $name failed on $PKG" >&2
    exit 1
  fi
  printf '%-58s ok  %4d s\n' "$name" $((SECONDS - t))
}
echo "serving $PKG ($(du -sh "$PKG" | cut -f1)) with $LIB_DIR/libatrank.so"

c_golden() {
  local dir="$ROOT/build/ffi-c-plain"
  if [ ! -x "$dir/test_golden" ] || [ "$LIB_DIR" != "$ROOT/target/debug" ]; then
    dir="$WORK/ffi-c"
    cmake -S ffi-tests/c -B "$dir" -DATRANK_LIB_DIR="$LIB_DIR" -DATRANK_SANITIZE=OFF >/dev/null
    cmake --build "$dir" --target test_golden
  fi
  "$dir/test_golden" "$PKG"
}
timed "C: test_golden, tract and ORT" c_golden

cpp_golden() {
  local dir="$ROOT/build/ffi-cpp-plain"
  if [ ! -x "$dir/atrank_cpp_tests" ] || [ "$LIB_DIR" != "$ROOT/target/debug" ]; then
    dir="$WORK/ffi-cpp"
    cmake -S ffi-tests/cpp -B "$dir" -DATRANK_LIB_DIR="$LIB_DIR" -DATRANK_SANITIZE=OFF >/dev/null
    cmake --build "$dir"
  fi
  "$dir/atrank_cpp_tests" --gtest_filter='*Golden*'
}
timed "C++: GoogleTest Golden suite, tract and ORT" cpp_golden

# Go: pkg-config against LIB_DIR (as scripts/test-go.sh does for target/debug).
mkdir -p "$WORK/pkgconfig"
cat >"$WORK/pkgconfig/atrank.pc" <<PC
Name: atrank
Description: atrank from $LIB_DIR
Version: 0
Libs: -L$LIB_DIR -latrank -Wl,-rpath,$LIB_DIR
Cflags: -I$ROOT/capi/include
PC
export PKG_CONFIG_PATH="$WORK/pkgconfig" GOTOOLCHAIN=local GOFLAGS="-buildvcs=false"
export GOCACHE="$ROOT/build/go-cache-$(sha256sum capi/include/atrank.h | cut -c1-16)"
timed "Go: ffi-tests/go consumer test, tract and ORT" \
  bash -c 'cd ffi-tests/go && go test -count=1 ./...'
(cd examples/go && go build -o "$WORK/" ./cmd/rerank-server ./cmd/loadtest)
serve_and_load() {  # BACKEND
  local backend="$1" log="$WORK/server-$1.log" pid i
  rm -f "$WORK/addr"
  "$WORK/rerank-server" -package "$PKG" -backend "$backend" -addr 127.0.0.1:0 \
    -addr-file "$WORK/addr" >"$log" 2>&1 &
  pid=$!
  for i in $(seq 1200); do
    [ -s "$WORK/addr" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "rerank-server exited early"; return 1; }
    sleep 0.1
  done
  [ -s "$WORK/addr" ] || { kill "$pid"; cat "$log"; echo "rerank-server did not start"; return 1; }
  if ! "$WORK/loadtest" -url "http://$(cat "$WORK/addr")" -package "$PKG" -n "${GO_LOAD_N:-2000}" \
      -duration "${GO_LOAD_DURATION:-20s}" -c "${GO_LOAD_C:-4}" -reloads 2; then
    kill "$pid"; cat "$log"; return 1
  fi
  kill -TERM "$pid"
  wait "$pid" || { cat "$log"; echo "rerank-server did not shut down cleanly"; return 1; }
  cat "$log"
}
for backend in tract ort; do
  timed "Go: rerank-server + loadtest ($backend)" serve_and_load "$backend"
  grep -E 'requests|req/s|p50|p99' "$WORK/step.log" | sed 's/^/    /' | head -n 8 || true
done

timed "Python: ctypes binding, score and score_batch, tract and ORT" \
  env ATRANK_LIB="$LIB_DIR/libatrank.so" PYTHONPATH="$ROOT/bindings/python/src" "$PY" - "$PKG" <<'PY'
import json, os, sys
import numpy as np
import atrank
pkg = sys.argv[1]
gold = json.load(open(os.path.join(pkg, "golden.json"), encoding="utf-8"))
reqs = gold["requests"]
for backend in ("tract", "ort"):
    with atrank.Model(pkg, backend) as model:
        one = [model.score(r["behaviors"], r["candidates"], r["request_time"]) for r in reqs]
        batch = model.score_batch(
            {"behaviors": r["behaviors"], "candidates": r["candidates"],
             "request_time": r["request_time"]} for r in reqs)
        for r, a, b in zip(reqs, one, batch):
            tol = r.get("tolerance", gold["tolerance"])
            for got in (a, b):
                worst = float(np.max(np.abs(got.astype(np.float64) - np.asarray(r["scores"]))))
                assert worst <= tol, f"{backend} {r['name']}: |diff| {worst} > {tol}"
    print(f"python {backend}: {len(reqs)} requests x 2 within tolerance")
PY

# JSON lines of the golden requests, for both command-line tools.
"$PY" - "$PKG/golden.json" "$WORK/requests.jsonl" <<'PY'
import json, sys
gold = json.load(open(sys.argv[1], encoding="utf-8"))
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for r in gold["requests"]:
        f.write(json.dumps({"request_id": r["name"], "request_time": r["request_time"],
                            "behaviors": r["behaviors"], "candidates": r["candidates"]}) + "\n")
PY
check_scores() {  # OUTPUT FORMAT(jsonl|parquet)
  "$PY" - "$PKG/golden.json" "$1" "$2" <<'PY'
import json, sys
gold = json.load(open(sys.argv[1], encoding="utf-8"))
if sys.argv[3] == "jsonl":
    rows = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8")]
else:
    import pyarrow.parquet as pq
    rows = pq.read_table(sys.argv[2]).to_pylist()
got = {r["request_id"]: r["scores"] for r in rows}
assert len(got) == len(gold["requests"]), f"{len(got)} results for {len(gold['requests'])} requests"
for r in gold["requests"]:
    tol = r.get("tolerance", gold["tolerance"])
    worst = max(abs(a - b) for a, b in zip(got[r["name"]], r["scores"], strict=True))
    assert worst <= tol, f"{r['name']}: |diff| {worst} > {tol}"
print(f"{len(got)} requests within tolerance")
PY
}
cli() {  # BACKEND
  "$LIB_DIR/atrank" score -m "$PKG" --backend "$1" "$WORK/requests.jsonl" >"$WORK/score-$1.jsonl"
  check_scores "$WORK/score-$1.jsonl" jsonl
}
batch() {  # BACKEND
  rm -f "$WORK/batch-$1.parquet"
  "$LIB_DIR/atrank-batch" -q -m "$PKG" --backend "$1" -t 2 -i "$WORK/requests.jsonl" \
    -o "$WORK/batch-$1.parquet"
  check_scores "$WORK/batch-$1.parquet" parquet
}
for backend in tract ort; do
  timed "atrank score ($backend)" cli "$backend"
  timed "atrank-batch, 2 threads ($backend)" batch "$backend"
done
echo "every binding served $PKG in $((SECONDS - T0)) s"
