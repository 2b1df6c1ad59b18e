#!/usr/bin/env bash
# atrank at the paper's size (issue 14): one user, L = 50, N candidates, 1 thread, through the
# C ABI on ONNX Runtime and tract, against Python onnxruntime and the 1-thread matmul rate.
#
#   bash benches/paper.sh [--package PKG] [--sizes 100,250,1000,10000] [--profile]
#       [--ab-fuse ROUNDS] [--quick]
#
# Builds the probe (benches/paper_serve.rs) in release (`cargo bench --bench paper_serve
# --no-run`; the first release build of tract takes about 15 minutes on 2 cores), then runs the
# driver (benches/paper.py), which trains and exports a package under build/paper (or
# $PAPER_WORK) unless --package is given, and prints the table (written with the raw figures to
# WORK/paper.md and WORK/paper.json). ONNX Runtime comes from scripts/env.sh (ATRANK_ORT_LIB).
# A full run measures for about a minute after the build (--quick: a few seconds).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh >/dev/null
# PAPER_PROFILE=dev: the probe in the dev profile (quick to build, slow to score; for a smoke
# run only, its times mean nothing).
if [ "${PAPER_PROFILE:-release}" = dev ]; then BUILD=(cargo test); else BUILD=(cargo bench); fi
PROBE=$(bench_exe paper_serve "${BUILD[@]}" --bench paper_serve --no-run)
if [ ! -x "$PROBE" ]; then
  echo "could not build the paper_serve probe: run cargo bench --bench paper_serve --no-run" >&2
  exit 1
fi
PYTHONPATH="$ROOT/export/src" exec "$PY" benches/paper.py --probe "$PROBE" \
  --work "${PAPER_WORK:-build/paper}" "$@"
