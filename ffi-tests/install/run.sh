#!/usr/bin/env bash
# Tests scripts/install.sh end to end, and embedding atrank from outside the repository with
# only the documented steps (docs/embedding/). Installs atrank (debug profile) with
# `--with-ort` into a temporary prefix, copies the consumers in ffi-tests/install/ out of the
# tree, then builds each against the installed prefix:
#   1. C, pkg-config, shared (the rpath comes from atrank.pc)
#   2. C, pkg-config --static, linking libatrank.a
#   3. C, CMake, find_package(atrank CONFIG REQUIRED) + atrank::atrank (shared)
#   4. C, CMake, atrank::atrank_static
#   5. C++ (atrank.hpp), pkg-config
#   6. Go, a module requiring github.com/atrank/atrank/bindings/go (replaced by the checkout)
#   7. Rust, a crate depending on `atrank` (path to the checkout), built without the C library
# With ATRANK_ORT_LIB and ORT_DYLIB_PATH unset, each scores the tiny fixture's empty-history
# golden request on tract and on ONNX Runtime (found in the prefix), and its scores must match
# the trainer's within the request's derived tolerance. Also checks the SONAME
# (libatrank.so.0), RUNPATHs, the consumers' NEEDED entries, the symlinks, find_package's version
# check and that a second install into the same prefix is idempotent. Exits non-zero on any
# failure.
#
#   bash ffi-tests/install/run.sh            # from anywhere; ATRANK_KEEP=1 keeps the temp dir
#
# Needs cargo, cc, c++, cmake, pkg-config, readelf, go, python3, and an ONNX Runtime library
# (ATRANK_ORT_LIB, else the one scripts/setup.sh unpacked into .cache/). The debug install
# copies ~800 MB (libatrank.a and .so are large unoptimized); the temporary directory is
# removed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/ffi-tests/install"
PACKAGE="$ROOT/tests/fixtures/tiny"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
for tool in cargo cc c++ cmake pkg-config readelf go python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/atrank-install-test.XXXXXX")"
if [ "${ATRANK_KEEP:-0}" = 1 ]; then
  trap 'echo "kept $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
prefix="$work/prefix"
build="$work/build"
mkdir -p "$build"
# The consumers must find libatrank and ONNX Runtime through their rpath and the installed
# tree, not through the environment.
ort_src="${ATRANK_ORT_LIB:-$(ls "${ATRANK_CACHE:-$ROOT/.cache}"/onnxruntime-*/lib/libonnxruntime.so.*.*.* 2>/dev/null | sort -V | tail -n1)}"
[ -f "$ort_src" ] || fail "no ONNX Runtime library to install (run scripts/setup.sh or set ATRANK_ORT_LIB)"
unset LD_LIBRARY_PATH ATRANK_ORT_LIB ORT_DYLIB_PATH
src="$work/src"
mkdir -p "$src"
cp -r "$HERE/consumer.c" "$HERE/CMakeLists.txt" "$HERE/cpp" "$HERE/go" "$HERE/rust" "$src/"

version="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n1)"
major="${version%%.*}"
soname="libatrank.so.$major"

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
check_shared_consumer() {  # EXE: NEEDED holds the SONAME, not the unversioned name
  local libs
  libs="$(needed "$1")"
  grep -qx "$soname" <<<"$libs" || fail "$1: NEEDED lacks $soname (has: $(echo $libs))"
  ! grep -qx 'libatrank.so' <<<"$libs" || fail "$1: NEEDED names the unversioned libatrank.so"
  echo "ok: $(basename "$1") NEEDED $soname"
}
check_static_consumer() {  # EXE: no libatrank in NEEDED at all, and a non-executable stack
  ! needed "$1" | grep -q '^libatrank' || fail "$1: linked against libatrank.so, expected the static library"
  readelf -lW "$1" | grep GNU_STACK | grep -qv 'RWE' || fail "$1: executable stack (GNU_STACK RWE)"
  echo "ok: $(basename "$1") has no libatrank in NEEDED (static), stack not executable"
}
runpath() { readelf -d "$1" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p'; }
check_runpath() {  # EXE DIR: DIR is in EXE's RUNPATH
  tr ':' '\n' <<<"$(runpath "$1")" | grep -qx "$2" || fail "$1: RUNPATH '$(runpath "$1")' lacks $2"
}
# The golden request every consumer scores: the fixture's empty-history request (its request
# time, candidates, the trainer's scores and their derived tolerance, from golden.json).
read -r request_time candidates_line < <(python3 - "$PACKAGE/golden.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
r = next(r for r in g["requests"] if r["name"] == "empty-history" and not r["behaviors"])
print(r["request_time"], " ".join(r["candidates"]))
PY
)
read -r -a candidates <<<"$candidates_line"
check_scores() {  # NAME OUTPUT: every `score i v` line equals the golden score within tolerance
  python3 - "$PACKAGE/golden.json" "$1" "$2" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
r = next(r for r in g["requests"] if r["name"] == "empty-history" and not r["behaviors"])
tol = r.get("tolerance", g["tolerance"])
got = {int(p[1]): float(p[2]) for p in (l.split() for l in sys.argv[3].splitlines())
       if len(p) == 3 and p[0] == "score"}
want = r["scores"]
if sorted(got) != list(range(len(want))):
    sys.exit(f"{sys.argv[2]}: expected {len(want)} scores, got indices {sorted(got)}")
worst = max(abs(got[i] - w) for i, w in enumerate(want))
if worst > tol:
    sys.exit(f"{sys.argv[2]}: max |score - golden| = {worst:.3g} > tolerance {tol:.3g}")
print(f"ok: {sys.argv[2]}: {len(want)} scores within {tol:.2g} of golden (max diff {worst:.2g})")
PY
}
run_consumer() {  # EXE [LABEL]: scores the golden request on tract and on ONNX Runtime
  local backend out
  for backend in tract ort; do
    out="$("$1" "$PACKAGE" "$backend" "$request_time" "${candidates[@]}")" \
      || fail "$(basename "$1") ($backend) failed on $PACKAGE"
    check_scores "${2:-$(basename "$1")} ($backend)" "$out" || fail "${2:-$(basename "$1")} ($backend): wrong scores"
  done
}

step "install (debug profile, --with-ort) into $prefix"
bash "$ROOT/scripts/install.sh" "$prefix" --profile debug --with-ort="$ort_src"

step "installed tree"
lib="$prefix/lib"
for f in "$lib/libatrank.so.$version" "$lib/libatrank.a" "$prefix/include/atrank.h" \
         "$lib/pkgconfig/atrank.pc" "$lib/cmake/atrank/atrankConfig.cmake" \
         "$lib/cmake/atrank/atrankConfigVersion.cmake"; do
  [ -f "$f" ] && [ ! -L "$f" ] || fail "missing or not a regular file: $f"
done
[ "$(readlink "$lib/$soname")" = "libatrank.so.$version" ] || fail "$lib/$soname should link to libatrank.so.$version"
[ "$(readlink "$lib/libatrank.so")" = "$soname" ] || fail "$lib/libatrank.so should link to $soname"
if [ -f "$ROOT/capi/include/atrank.hpp" ]; then
  cmp -s "$ROOT/capi/include/atrank.hpp" "$prefix/include/atrank.hpp" || fail "include/atrank.hpp was not installed"
fi
readelf -d "$lib/libatrank.so.$version" | grep -q "Library soname: \[$soname\]" \
  || fail "libatrank.so.$version has no SONAME $soname"
[ "$(runpath "$lib/libatrank.so.$version")" = '$ORIGIN' ] || fail "libatrank.so.$version: RUNPATH is '$(runpath "$lib/libatrank.so.$version")', expected \$ORIGIN"
ort_name="$(basename "$(readlink -f "$ort_src")")"
[ -f "$lib/$ort_name" ] && [ ! -L "$lib/$ort_name" ] || fail "ONNX Runtime was not installed as $lib/$ort_name"
[ "$(readlink -f "$lib/libonnxruntime.so")" = "$lib/$ort_name" ] || fail "$lib/libonnxruntime.so does not lead to $ort_name"
[ "$(PKG_CONFIG_PATH="$lib/pkgconfig" pkg-config --variable=ort_library atrank)" = "$lib/$ort_name" ] \
  || fail "atrank.pc: ort_library is not $lib/$ort_name"
echo "ok: files, symlinks, SONAME $soname, RUNPATH \$ORIGIN, ONNX Runtime $ort_name"

step "second install into the same prefix (idempotent)"
listing() { (cd "$prefix" && find . -printf '%p %y %l\n' | LC_ALL=C sort); }
before="$(listing)"
bash "$ROOT/scripts/install.sh" "$prefix" --profile debug --with-ort="$ort_src" >/dev/null 2>&1
[ "$(listing)" = "$before" ] || fail "a second install changed the tree"
echo "ok: same tree"

export PKG_CONFIG_PATH="$lib/pkgconfig"
cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror)

step "pkg-config, shared"
[ "$(pkg-config --modversion atrank)" = "$version" ] || fail "pkg-config --modversion atrank is not $version"
# shellcheck disable=SC2046
cc "${cflags[@]}" -o "$build/consumer-pkgconfig" "$src/consumer.c" \
  $(pkg-config --cflags --libs atrank) -lm
check_shared_consumer "$build/consumer-pkgconfig"
check_runpath "$build/consumer-pkgconfig" "$lib"
run_consumer "$build/consumer-pkgconfig"

step "pkg-config --static, libatrank.a"
# -l:libatrank.a: with libatrank.so beside it, a plain -latrank would pick the shared library.
static_libs="$(pkg-config --static --libs atrank | sed 's/-latrank\b/-l:libatrank.a/')"
grep -q -- '-l:libatrank.a' <<<"$static_libs" || fail "pkg-config --static --libs lacks -latrank: $static_libs"
# shellcheck disable=SC2046,SC2086
cc "${cflags[@]}" -o "$build/consumer-static" "$src/consumer.c" \
  $(pkg-config --cflags atrank) $static_libs -lm
check_static_consumer "$build/consumer-static"
check_runpath "$build/consumer-static" "$lib"
run_consumer "$build/consumer-static"

step "CMake, find_package(atrank CONFIG REQUIRED), atrank::atrank"
cmake -S "$src" -B "$build/cmake-shared" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$build/cmake-shared" >/dev/null
check_shared_consumer "$build/cmake-shared/consumer"
run_consumer "$build/cmake-shared/consumer"

step "CMake, atrank::atrank_static"
cmake -S "$src" -B "$build/cmake-static" -DCMAKE_PREFIX_PATH="$prefix" -DATRANK_STATIC=ON >/dev/null
cmake --build "$build/cmake-static" >/dev/null
check_static_consumer "$build/cmake-static/consumer"
check_runpath "$build/cmake-static/consumer" "$lib"
run_consumer "$build/cmake-static/consumer"

step "CMake version check"
minor_req="$(cut -d. -f1,2 <<<"$version")"
cmake -S "$src" -B "$build/cmake-v-ok" -DCMAKE_PREFIX_PATH="$prefix" \
  -DATRANK_FIND_VERSION="$minor_req" >/dev/null || fail "find_package(atrank $minor_req) failed"
echo "ok: find_package(atrank $minor_req) accepts $version"
bad="$((major + 1)).0"
if cmake -S "$src" -B "$build/cmake-v-bad" -DCMAKE_PREFIX_PATH="$prefix" \
     -DATRANK_FIND_VERSION="$bad" >/dev/null 2>&1; then
  fail "find_package(atrank $bad) accepted $version"
fi
echo "ok: find_package(atrank $bad) rejects $version"

step "C++ (atrank.hpp), pkg-config, outside the repository"
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Werror -o "$build/consumer-cpp" "$src/cpp/consumer.cpp" \
  $(pkg-config --cflags --libs atrank)
check_shared_consumer "$build/consumer-cpp"
run_consumer "$build/consumer-cpp"

step "Go module outside the repository (github.com/atrank/atrank/bindings/go)"
# No network: the module is replaced by the checkout, as docs/embedding/go.md shows for a local
# copy (with a published tag, `go get github.com/atrank/atrank/bindings/go@v0.1.0` instead).
# Its own build cache: go reuses a cgo package's link flags from the cache even when pkg-config
# now names another prefix (each run installs into a new temporary one).
export GOCACHE="$work/go-cache"
(cd "$src/go" && go mod edit -replace "github.com/atrank/atrank/bindings/go=$ROOT/bindings/go" \
   && go build -o "$build/consumer-go" .) || fail "go build of the consumer module failed"
check_shared_consumer "$build/consumer-go"
run_consumer "$build/consumer-go"

step "Rust crate outside the repository (atrank as a dependency)"
esc_root="$(printf '%s' "$ROOT" | sed 's/[&|\\]/\\&/g')"
sed -i "s|^# @ATRANK_DEPENDENCY@|atrank = { path = \"$esc_root\" }|" "$src/rust/Cargo.toml"
# The repository's lock file pins the same dependency versions CI compiled already, and its
# target directory holds them: the consumer compiles only atrank and itself here (a first build
# from nothing is timed in docs/embedding/rust.md).
cp "$ROOT/Cargo.lock" "$src/rust/Cargo.lock"
rust_target="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$src/rust" && CARGO_TARGET_DIR="$rust_target" cargo build 2>&1 | tail -n 3) \
  || fail "cargo build of the Rust consumer failed"
# A dependent of `atrank` builds the rlib only: no C library among its build's outputs.
(cd "$src/rust" && CARGO_TARGET_DIR="$rust_target" cargo build --message-format=json 2>/dev/null) \
  | python3 -c '
import json, sys
kinds = set()
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "atrank" and "bin" not in m["target"]["kind"]:
        kinds.update(m["target"]["crate_types"])
if kinds != {"rlib"}:
    sys.exit(f"the Rust consumer built atrank as {sorted(kinds)}, expected only rlib")
print("ok: the Rust consumer built atrank as an rlib only")' || fail "the Rust consumer built a C library"
run_consumer "$rust_target/debug/atrank-consumer" "atrank-consumer (Rust)"

step "install test passed"
