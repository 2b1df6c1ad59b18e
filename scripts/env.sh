# Sourced by the project's scripts: where set-up put things, and settings for a shared 2-core box.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ATRANK_CACHE="${ATRANK_CACHE:-$ROOT/.cache}"
VENV="${ATRANK_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
export ATRANK_ORT_LIB="${ATRANK_ORT_LIB:-$ATRANK_CACHE/onnxruntime-1.31.1/lib/libonnxruntime.so.1.31.1}"
# torch's OpenMP spin-wait collapses throughput when another process holds a core.
export OMP_WAIT_POLICY=PASSIVE
export CARGO_TERM_COLOR=never
# Each step's heading carries the wall-clock time, so a log shows where a run's minutes went.
step() { printf '\n==> %s  [%s]\n' "$*" "$(date +%H:%M:%S)"; }
