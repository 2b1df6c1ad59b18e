#!/usr/bin/env bash
# atrank at catalogue scale, end to end, one table (benches/scale.py has the stages):
#
#   bash benches/scale.sh [--items 10000000 --users 1000000 --behaviors 20000000 ...]
#
# Builds the Rust serving probe in release (`cargo bench --bench scale_serve --no-run`; the
# first build of tract in release takes about 15 minutes here), then runs the driver, which
# writes everything under build/scale (or $SCALE_WORK; about 6 GB at the default size; removed
# by the next run)
# and prints the table recorded in docs/benchmarks.md, "Scale". ONNX Runtime comes from
# scripts/env.sh (ATRANK_ORT_LIB). The default run takes about an hour on 2 cores and peaks
# at about 16 GB of memory; pass smaller sizes to try it (e.g. --items 100000 --users 10000
# --behaviors 200000 --steps 100).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh >/dev/null
# SCALE_PROFILE=dev: the probe in the dev profile (quick to build; slower to score), for the
# toy-size run of scripts/test.sh.
if [ "${SCALE_PROFILE:-release}" = dev ]; then BUILD=(cargo test); else BUILD=(cargo bench); fi
PROBE=$(bench_exe scale_serve "${BUILD[@]}" --bench scale_serve --no-run)
[ -x "$PROBE" ] || { echo "could not build the scale_serve probe" >&2; exit 1; }
case " $* " in *" --serve-only "*) ;; *) rm -rf "${SCALE_WORK:-build/scale}" ;; esac
PYTHONPATH="$ROOT/export/src" exec "$PY" benches/scale.py --probe "$PROBE" \
  --work "${SCALE_WORK:-build/scale}" "$@"
