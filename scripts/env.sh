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
# The executable a cargo build command makes for target NAME, e.g.
#   bench_exe paper_serve cargo bench --bench paper_serve --no-run
# (the command's JSON messages name it; the hash in its file name changes with the build).
bench_exe() {
  local name="$1"; shift
  "$@" --message-format=json 2>/dev/null | "$PY" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == sys.argv[1]
            and m.get("executable")):
        print(m["executable"])' "$name" | tail -1
}
