#!/usr/bin/env bash
# The Python binding (bindings/python, ctypes over libatrank.so) and its PySpark integration:
# ruff, pytest (binding unit tests on both fixtures and backends, then PySpark in local[2]
# mode), and the Spark example submitted with spark-submit the way docs/spark.md does it on a
# cluster: binding, library and package shipped with --py-files, --files and --archives, and
# nothing found through PYTHONPATH or ATRANK_LIB. Installs nothing: set-up provides pyspark
# (bindings/python/requirements.txt) and Java 17.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

LIB="$ROOT/target/debug/libatrank.so"
if [ ! -f "$LIB" ]; then
  step "libatrank.so missing: cargo build"
  cargo build
fi
if ! "$PY" -c "import pyspark, pandas, pyarrow" 2>/dev/null; then
  echo "pyspark/pandas/pyarrow are not in $VENV: run" >&2
  echo "  $VENV/bin/pip install -r bindings/python/requirements.txt" >&2
  exit 1
fi
if ! java -version >/dev/null 2>&1; then
  echo "java is not on PATH: PySpark needs Java 17 or newer (Debian: openjdk-17-jre-headless)" >&2
  exit 1
fi
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"

step "Python binding: ruff"
"$VENV/bin/ruff" check bindings/python examples/spark

step "Python binding: pytest (binding, then PySpark local[2])"
ATRANK_LIB="$LIB" "$PY" -m pytest -q bindings/python/tests

step "Spark example: spark-submit with the binding, library and package shipped"
WORK="$ROOT/build/python-spark-example"
PKG="$ROOT/tests/fixtures/tiny-multigroup"
rm -rf "$WORK"
mkdir -p "$WORK"
PYTHONPATH="$ROOT/bindings/python/src" "$PY" examples/spark/make_requests.py --golden "$PKG/golden.json" --out "$WORK/requests" \
  --parts 3 --repeat 2
tar -czf "$WORK/package.tar.gz" -C "$(dirname "$PKG")" "$(basename "$PKG")"
(cd bindings/python/src && "$PY" -m zipfile -c "$WORK/atrank-py.zip" atrank/)
if ! env -u ATRANK_LIB -u PYTHONPATH "$VENV/bin/spark-submit" --master 'local[2]' \
    --conf spark.ui.enabled=false --conf spark.ui.showConsoleProgress=false \
    --conf spark.sql.shuffle.partitions=2 --driver-memory 512m \
    --py-files "$WORK/atrank-py.zip" \
    --files "$LIB" \
    --archives "$WORK/package.tar.gz#atrank_pkg" \
    examples/spark/score_parquet.py \
    --package "atrank_pkg/$(basename "$PKG")" --lib libatrank.so \
    --input "$WORK/requests" --output "$WORK/scored" \
    > "$WORK/spark-submit.out" 2> "$WORK/spark-submit.log"; then
  tail -n 40 "$WORK/spark-submit.log" >&2
  echo "spark-submit failed (log: $WORK/spark-submit.log)" >&2
  exit 1
fi
cat "$WORK/spark-submit.out"
# Every score against the trainer's (golden.json), independently of the example's own summary.
"$PY" - "$PKG/golden.json" "$WORK/scored" <<'PY'
import json
import sys

import pyarrow.parquet as pq

gold = json.load(open(sys.argv[1], encoding="utf-8"))
want = {r["name"]: r["scores"] for r in gold["requests"]}
# each request's derived 2 D U M (docs/tolerances.md), else the file's top-level tolerance
tol = {r["name"]: r.get("tolerance", gold["tolerance"]) for r in gold["requests"]}
rows = pq.read_table(sys.argv[2]).to_pylist()
assert len(rows) == 2 * len(want), f"{len(rows)} rows, expected {2 * len(want)}"
worst = 0.0
for row in rows:
    assert row["error"] is None, row
    name = row["request_id"].split("#")[0]
    ref = want[name]
    assert len(row["scores"]) == len(ref), row["request_id"]
    d = max(abs(a - b) for a, b in zip(row["scores"], ref))
    assert d <= tol[name], f"{row['request_id']}: max |diff| {d} > {tol[name]}"
    worst = max(worst, d)
print(f"example output: {len(rows)} rows, all scored, max |diff| vs golden {worst:.2g}")
PY
