#!/usr/bin/env bash
# Tests the C++ example (examples/cpp: BM25 movie search reranked by atrank) the way a C++
# consumer uses atrank: installed into a prefix, found by CMake's find_package.
#
#   bash scripts/test-example-cpp.sh [--ort] [--no-asan]
#
#   1. installs atrank (debug profile) into build/example-cpp/prefix (reused; ~800 MB, the
#      unoptimised libraries are large);
#   2. extracts ml-100k.item / ml-100k.inter from the recbole wheel (.cache/wheels) and turns
#      the package's golden.json into the TSV test_rerank reads;
#   3. configures examples/cpp with -DCMAKE_PREFIX_PATH=<prefix> (-Werror), builds, runs ctest,
#      then again built with ASan+UBSan (leak checks on) unless --no-asan; a skipped test fails;
#   4. runs one real query ("star wars") for ML-100k user 196 and prints the top 10.
#
# The model package is $ATRANK_PACKAGE (default build/test-ml100k/package; trained and exported
# as scripts/test.sh does when missing). Backend: tract, or ONNX Runtime with --ort
# ($ATRANK_ORT_LIB, set by scripts/env.sh). Needs cmake, g++ (C++17) and the project's set-up.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

backend=tract
asan=1
for arg in "$@"; do
  case "$arg" in
    --ort) backend=ort ;;
    --no-asan) asan=0 ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-example-cpp.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
fail() { printf 'test-example-cpp.sh: FAIL: %s\n' "$*" >&2; exit 1; }
if [ "$backend" = ort ] && [ ! -f "$ATRANK_ORT_LIB" ]; then
  fail "--ort needs the ONNX Runtime library at \$ATRANK_ORT_LIB ($ATRANK_ORT_LIB): run scripts/setup.sh"
fi

WORK="$ROOT/build/example-cpp"
PREFIX="$WORK/prefix"
DATA="$WORK/data"
export ATRANK_PACKAGE="${ATRANK_PACKAGE:-$ROOT/build/test-ml100k/package}"
export ATRANK_BACKEND="$backend"

step "example-cpp: model package $ATRANK_PACKAGE"
if [ ! -f "$ATRANK_PACKAGE/spec.json" ]; then
  [ "$ATRANK_PACKAGE" = "$ROOT/build/test-ml100k/package" ] || fail "no model package at $ATRANK_PACKAGE"
  "$PY" -m atrank_export train --data ml100k --out "$ROOT/build/test-ml100k" --epochs 1 --max-users 150
  "$PY" -m atrank_export export --checkpoint "$ROOT/build/test-ml100k/checkpoint.pt" --out "$ATRANK_PACKAGE"
fi

step "example-cpp: MovieLens-100k files from the recbole wheel; golden.json as TSV"
mkdir -p "$DATA"
"$PY" - "$DATA" "$ATRANK_PACKAGE" <<'PYEOF'
import json, sys, zipfile
from pathlib import Path
from atrank_export.readers.movielens import fetch_recbole_wheel, ML_PREFIX

data, package = Path(sys.argv[1]), Path(sys.argv[2])
with zipfile.ZipFile(fetch_recbole_wheel()) as wheel:
    for name in ("ml-100k.item", "ml-100k.inter"):
        (data / name).write_bytes(wheel.read(ML_PREFIX + name))

def field(v):
    if v is None:
        return "\\N"
    s = str(v)
    if any(c in s for c in "\t\n\r") or s == "\\N":
        raise SystemExit(f"golden value {s!r} cannot be written as TSV")
    return s

golden = json.loads((package / "golden.json").read_text())
spec = json.loads((package / "spec.json").read_text())
# The example scores single-group packages: item = the behavior's id, category = its caller
# feature (else the catalog's). Format 3 goldens name each behavior's group and features.
target = spec["target_group"]
features = {f["name"] for g in spec["groups"] if g["name"] == target for f in g["features"]} - {"id"}
if len(spec["groups"]) != 1 or not features <= {"category"}:
    raise SystemExit(f"the example needs one group with at most a category feature: {spec['groups']}")
# tolerances (docs/tolerances.md): bound_any_request for the example's own (non-golden)
# requests; each golden request's derived 2 D U M (else the top-level one) for the golden ones
if "bound_any_request" not in golden:
    raise SystemExit("golden.json has no bound_any_request (re-export the package)")
lines = [f"tolerance\t{golden['tolerance']!r}",
         f"bound_any_request\t{golden['bound_any_request']!r}"]
for req in golden["requests"]:
    lines.append(f"request\t{field(req['name'])}\t{int(req['request_time'])}")
    lines.append(f"request_tolerance\t{req.get('tolerance', golden['tolerance'])!r}")
    for b in req["behaviors"]:
        if b.get("group", target) != target or set(b.get("features") or {}) - {"category"}:
            raise SystemExit(f"golden behavior {b} is not for this example (group {target}, category)")
        item = b["id"] if "id" in b else b.get("item")
        category = (b.get("features") or {}).get("category", b.get("category"))
        lines.append("behavior\t" + "\t".join(field(v) for v in (item, category, b.get("action")))
                     + f"\t{int(b['timestamp'])}")
    for cand, score in zip(req["candidates"], req["scores"], strict=True):
        lines.append(f"candidate\t{field(cand)}\t{float(score)!r}")
    lines.append("end")
(data / "golden.tsv").write_text("\n".join(lines) + "\n")
print(f"{len(golden['requests'])} golden requests; items and interactions in {data}")
PYEOF
export MOVIES_ITEMS="$DATA/ml-100k.item" MOVIES_INTERACTIONS="$DATA/ml-100k.inter"
export ATRANK_GOLDEN_TSV="$DATA/golden.tsv"

step "example-cpp: install atrank into $PREFIX (debug profile)"
bash scripts/install.sh "$PREFIX" --profile debug

# The example must find atrank through find_package and its rpath, not the environment.
unset LD_LIBRARY_PATH
variants=(plain)
[ "$asan" = 1 ] && variants+=(asan)
for variant in "${variants[@]}"; do
  dir="$WORK/build-$variant"
  sanitize=OFF; [ "$variant" = asan ] && sanitize=ON
  step "example-cpp: configure, build and ctest ($variant, $backend)"
  cmake -S examples/cpp -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DMOVIE_SEARCH_WERROR=ON -DMOVIE_SEARCH_SANITIZE=$sanitize >/dev/null
  cmake --build "$dir" -j 2
  # (grep reads all its input: with -q, pipefail would see nm/ldd die of SIGPIPE.)
  ldd "$dir/movie_search" | grep "$PREFIX/lib/libatrank.so.0" >/dev/null \
    || fail "movie_search does not load libatrank.so.0 from $PREFIX/lib"
  if [ "$variant" = asan ]; then
    nm "$dir/test_rerank" | grep __asan_init >/dev/null || fail "ASan is not in the test binaries"
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  fi
  log="$dir/ctest.log"
  ctest --test-dir "$dir" --output-on-failure -V 2>&1 | tee "$log" | grep -E '^[0-9]+: (user|golden|chunked|atrank|test_|cli_)|Test +#|tests passed|tests failed' || true
  grep -q '100% tests passed' "$log" || fail "ctest failed ($variant): see $log"
  ! grep -q 'Not Run\|Skipped' "$log" || fail "a test was skipped ($variant): see $log"
  unset ASAN_OPTIONS UBSAN_OPTIONS
done

step "example-cpp: query \"star wars\" for ML-100k user 196 ($backend)"
"$WORK/build-plain/movie_search" --items "$MOVIES_ITEMS" --interactions "$MOVIES_INTERACTIONS" \
  --package "$ATRANK_PACKAGE" --backend "$backend" --query "star wars" --user 196 --top 10
step "example-cpp: passed"
