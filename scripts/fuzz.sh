#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (libFuzzer, nightly Rust, tract backend; see
# docs/fuzzing.md), one after another, each for SECONDS (default 60), and prints executions,
# exec/s and crashes per target.
#
#   bash scripts/fuzz.sh [--smoke] [--require] [SECONDS] [TARGET...]
#
#   --smoke    30 s per target, unoptimised build (the CI step in scripts/test.sh); SECONDS
#              overrides the time.
#   --require  fail when nightly Rust is missing (default: print why and skip, exit 0).
#   TARGET     run only these targets (default: all of them).
#
# Exits non-zero when any target crashes (panic, failed check, ASan report, timeout, out of
# memory); the input is saved under fuzz/artifacts/<target>/. Without cargo-fuzz it is installed
# from crates.io (pinned, --locked) into $ATRANK_CACHE. New corpus entries go to
# fuzz/corpus-run/<target>/ (not committed); the committed seeds in fuzz/corpus/<target>/ are
# only read.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(spec_json preprocess c_abi package_files package_load graph_load)
seconds=60
require=0
smoke=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --smoke) seconds=30; smoke=1 ;;
    --require) require=1 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    ''|*[!0-9]*)
      if printf '%s\n' "${ALL_TARGETS[@]}" | grep -qx -- "$arg"; then
        targets+=("$arg")
      else
        echo "fuzz.sh: unknown argument or target '$arg' (targets: ${ALL_TARGETS[*]})" >&2
        exit 2
      fi ;;
    *) seconds="$arg" ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

skip() {
  if [ "$require" = 1 ]; then
    echo "fuzz.sh: $* (--require: failing)" >&2
    exit 1
  fi
  echo "fuzz.sh: $*; skipping the fuzz targets"
  exit 0
}

cargo +nightly --version >/dev/null 2>&1 || skip "no nightly Rust toolchain (rustup toolchain install nightly)"

fuzz_root="$ATRANK_CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
export PATH="$fuzz_root/bin:$PATH"
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  step "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io into $fuzz_root"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$fuzz_root" \
    -j "${ATRANK_FUZZ_JOBS:-2}"
fi

# One build for every target. 16 codegen units (cargo-fuzz's default is 1): the release build
# of tract with coverage instrumentation and ASan takes several times longer with 1, for a few
# per cent of speed. `run` must get the same flags, or it rebuilds.
build_flags=(--codegen-units 16)
profile="release + debug assertions"
# The smoke (CI) builds without optimisation: the release build of tract with coverage and ASan
# took 44 minutes on a loaded 2-core box; the dev build a fraction of that, and a 30 s smoke
# needs coverage of the harnesses, not speed.
if [ "$smoke" = 1 ]; then
  build_flags=(--dev)
  profile="dev"
fi
step "building the fuzz targets (nightly, $profile, ASan)"
(cd fuzz && CARGO_BUILD_JOBS="${ATRANK_FUZZ_JOBS:-2}" cargo +nightly fuzz build "${build_flags[@]}")

# Per-target libFuzzer limits.
#  -max_len: spec_json 16 KiB (the fixture specs are 1.4 and 4.1 KiB); the structured targets
#    4-8 KiB of `arbitrary` input (enough for batches of requests and several edits; their
#    sizes at the package limits are built by repetition, not from input bytes); graph_load
#    72 KiB, a little above the largest fixture graph (70,561 bytes) plus the slot byte.
#  -timeout (seconds per input): 10 for the pure targets (inputs take milliseconds; the largest,
#    at the package limits, well under a second under ASan); 30 for c_abi (10,000 candidates
#    through the graph); 60 for package_load and graph_load (tract loads and optimises up to
#    three graphs per input).
#  -rss_limit_mb=4096: ASan's shadow memory and quarantine (256 MB) on top of tract's plans;
#    the largest legitimate inputs (100,000 behaviors, 10,000 candidates) stay far below it,
#    and it is well below the machines' memory.
limits() {
  case "$1" in
    spec_json) echo "-max_len=16384 -timeout=10 -dict=dict/spec_json.dict" ;;
    preprocess) echo "-max_len=4096 -timeout=10" ;;
    c_abi) echo "-max_len=4096 -timeout=30" ;;
    package_files) echo "-max_len=8192 -timeout=10" ;;
    package_load) echo "-max_len=8192 -timeout=60" ;;
    graph_load) echo "-max_len=73728 -timeout=60" ;;
  esac
}

mkdir -p build/fuzz
failed=()
summary=()
for t in "${targets[@]}"; do
  step "fuzz $t for ${seconds} s"
  mkdir -p "fuzz/corpus-run/$t" "fuzz/corpus/$t"
  log="build/fuzz/$t.log"
  set +e
  # shellcheck disable=SC2046 # the limits are separate words on purpose
  (cd fuzz && cargo +nightly fuzz run "${build_flags[@]}" "$t" "corpus-run/$t" "corpus/$t" -- \
    $(limits "$t") -max_total_time="$seconds" -rss_limit_mb=4096 \
    -print_final_stats=1) > "$log" 2>&1
  rc=$?
  set -e
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  # On a crash libFuzzer prints no final stats: take its last status line (#N).
  [ -n "$execs" ] || execs="$(grep -o '^#[0-9]*' "$log" | tr -d '#' | tail -1)"
  rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  crashes=0
  if [ "$rc" -ne 0 ]; then
    crashes=1
    failed+=("$t")
    grep -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY|Test unit written|Failing input' "$log" | head -20 >&2 || true
    echo "fuzz.sh: $t failed (exit $rc); full log: $log" >&2
  fi
  line="$(printf '%-13s executions %10s  exec/s %7s  crashes %s' "$t" "${execs:-?}" "${rate:-?}" "$crashes")"
  echo "$line"
  summary+=("$line")
done

step "fuzz summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
