#!/usr/bin/env bash
# Throughput of the atrank-batch tool and its 1 -> 2 thread scaling, measured in one run.
#
#   bash benches/batch_tool.sh [PACKAGE]      (default: build/test-ml100k/package)
#
# Builds the release binary (`cargo build --release --features batch --bin atrank-batch`; slow
# the first time: tract in release takes minutes), generates a realistic Parquet input from
# MovieLens-100k (real user histories cut at a random point: the most recent <= 50 behaviors
# before the cut, request time = the cut, 100 candidates = the next item + 99 random catalog
# items), then scores it with 1 thread pinned to one core, and with 1 and 2 threads unpinned,
# on tract, and on ONNX Runtime when ATRANK_ORT_LIB is set. Prints a markdown table (rows/s and
# candidate scores/s). The scaling per core is 2 threads (2 cores) against the pinned row.
#
# Knobs: BATCH_REQUESTS (20000), BATCH_CANDIDATES (100), BATCH_SIZE (64 requests per graph
# run), BATCH_WORK (scratch folder, default build/bench-batch), BATCH_BIN (use this binary,
# no release build: for checking the script).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh >/dev/null

PACKAGE="${1:-build/test-ml100k/package}"
REQUESTS="${BATCH_REQUESTS:-20000}"
CANDIDATES="${BATCH_CANDIDATES:-100}"
BATCH="${BATCH_SIZE:-64}"
WORK="${BATCH_WORK:-build/bench-batch}"
mkdir -p "$WORK"

if [ ! -f "$PACKAGE/spec.json" ]; then
  echo "no model package at $PACKAGE (see README: train and export the ML-100k package)" >&2
  exit 2
fi

if [ -n "${BATCH_BIN:-}" ]; then
  BIN="$BATCH_BIN"   # e.g. a dev build, for a quick check of this script
else
  cargo build --release --features batch --bin atrank-batch
  BIN="$ROOT/target/release/atrank-batch"
fi

INPUT="$WORK/requests-${REQUESTS}x${CANDIDATES}.parquet"
if [ ! -f "$INPUT" ]; then
  "$PY" - "$PACKAGE" "$INPUT" "$REQUESTS" "$CANDIDATES" <<'EOF'
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atrank_export.readers.movielens import ml100k_log

package, out, n_requests, n_candidates = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import json

from atrank_export.vocabfile import Atv

# The target group's ids: the keys of its id table's atv vocabulary (format 3).
spec = json.loads((package / "spec.json").read_text())
target = next(g for g in spec["groups"] if g["name"] == spec["target_group"])
items = Atv.open(package / spec["tables"][target["features"][0]["table"]]["vocab"]).keys()
log = ml100k_log()
# Per user, the rows of the columnar log in the tie rule's order (timestamp, then row order).
order = np.lexsort((np.arange(len(log)), log.timestamp, log.user))
starts = np.searchsorted(log.user[order], np.arange(len(log.users) + 1))
objects, category = log.objects[log.target_group], log.catalog_column(log.target_group, "category")
def behavior(r):
    o = log.object[r]
    return {"item": objects[o], "category": log.values["category"][category[o]] if category[o] >= 0 else None,
            "action": log.actions[log.action[r]], "timestamp": int(log.timestamp[r])}
users = [u for u in range(len(log.users)) if starts[u + 1] - starts[u] >= 2]
rng = np.random.default_rng(7)
rows = {"request_id": [], "user": [], "behaviors": [], "candidates": [], "request_time": []}
for r in range(n_requests):
    u = users[int(rng.integers(len(users)))]
    seq = order[starts[u]:starts[u + 1]]
    cut = int(rng.integers(1, len(seq)))
    hist = seq[max(0, cut - 50):cut]
    t = seq[cut]
    cands = [objects[log.object[t]]] + [items[int(k)] for k in rng.integers(0, len(items), n_candidates - 1)]
    rows["request_id"].append(f"r{r:06d}")
    rows["user"].append(log.users[u])
    rows["behaviors"].append([behavior(b) for b in hist])
    rows["candidates"].append(cands)
    rows["request_time"].append(int(log.timestamp[t]))
behavior = pa.struct([("item", pa.string()), ("category", pa.string()),
                      ("action", pa.string()), ("timestamp", pa.int64())])
schema = pa.schema([("request_id", pa.string()), ("user", pa.string()),
                    ("behaviors", pa.list_(behavior)), ("candidates", pa.list_(pa.string())),
                    ("request_time", pa.int64())])
pq.write_table(pa.table(rows, schema=schema), out, compression="snappy")
hl = [len(b) for b in rows["behaviors"]]
print(f"wrote {out}: {n_requests} requests x {n_candidates} candidates, "
      f"history mean {np.mean(hl):.1f} (max 50)", file=sys.stderr)
EOF
fi

nproc_now="$(nproc)"
# The tool reads and decodes the input on its main thread and writes on a thread of its own,
# beside the scoring threads. Unpinned, "1 thread" also borrows the other cores for that I/O,
# so its rate is not a rate per core. The "1 core" row pins the whole process to one CPU
# (taskset): that is the rate per core, and 2 threads on 2 cores against it is the scaling.
PIN=""
if command -v taskset >/dev/null && [ "$nproc_now" -ge 2 ]; then PIN=1; fi
echo "| backend | threads | cores | rows/s | candidate scores/s | wall s |"
echo "|---|---:|---|---:|---:|---:|"
run() {
  local backend="$1" threads="$2" cores="$3"
  shift 3
  local tag="$backend-$threads" prefix=() cores_label="all ($nproc_now)"
  if [ "$cores" != all ]; then
    tag="$backend-$threads-pinned$cores"
    prefix=(taskset -c "$(seq -s, 0 $((cores - 1)))")
    cores_label="$cores (pinned)"
  fi
  local log="$WORK/run-$tag.log"
  "${prefix[@]}" "$BIN" --model "$PACKAGE" --input "$INPUT" --output "$WORK/out-$tag.parquet" \
    --backend "$backend" --threads "$threads" --batch-size "$BATCH" --key request_id --key user \
    --overwrite "$@" 2>"$log"
  # atrank-batch: 1 shard(s) scored, ...; N rows (E with errors), S candidate scores in T s: R rows/s, C scores/s (...)
  local line
  line="$(grep 'shard(s) scored' "$log")"
  local errors secs rps sps
  errors="$(sed -E 's/.*rows \(([0-9]+) with errors\).*/\1/' <<<"$line")"
  secs="$(sed -E 's/.* in ([0-9.]+) s:.*/\1/' <<<"$line")"
  rps="$(sed -E 's/.*: ([0-9.]+) rows\/s.*/\1/' <<<"$line")"
  sps="$(sed -E 's/.*, ([0-9.]+) scores\/s.*/\1/' <<<"$line")"
  if [ "$errors" != "0" ]; then
    echo "unexpected row errors: $line" >&2
    exit 1
  fi
  printf '| %s | %s | %s | %.0f | %.0f | %.1f |\n' "$backend" "$threads" "$cores_label" "$rps" "$sps" "$secs"
  SPS["$backend-$threads-$cores"]="$sps"
}
declare -A SPS
measure() {
  local backend="$1"
  shift
  if [ -n "$PIN" ]; then run "$backend" 1 1 "$@"; fi
  for t in 1 2; do run "$backend" "$t" all "$@"; done
}
measure tract
if [ -n "${ATRANK_ORT_LIB:-}" ]; then measure ort --ort-lib "$ATRANK_ORT_LIB"; fi
echo
for b in tract ort; do
  one="${SPS[$b-1-1]:-}" two="${SPS[$b-2-all]:-}"
  if [ -n "$one" ] && [ -n "$two" ]; then
    awk -v b="$b" -v o="$one" -v t="$two" \
      'BEGIN { printf "%s: 2 threads on 2 cores / 1 thread pinned to 1 core = %.2fx\n", b, t / o }'
  fi
done
echo "input: $INPUT ($REQUESTS requests x $CANDIDATES candidates), batch $BATCH, $nproc_now CPU(s),"
echo "$(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
