#!/usr/bin/env bash
# Tests scripts/install.sh end to end: installs atrank (debug profile) into a temporary prefix,
# then builds ffi-tests/install/consumer.c against the installed tree only
#   1. with pkg-config, shared (rpath to PREFIX/lib)
#   2. with pkg-config --static, linking libatrank.a
#   3. with CMake, find_package(atrank CONFIG REQUIRED) + atrank::atrank (shared)
#   4. with CMake, atrank::atrank_static
# runs each on tests/fixtures/tiny (tract backend), and checks the SONAME (libatrank.so.0), the
# consumers' NEEDED entries, the symlinks, find_package's version check and that a second
# install into the same prefix is idempotent. Exits non-zero on any failure.
#
#   bash ffi-tests/install/run.sh            # from anywhere; ATRANK_KEEP=1 keeps the temp dir
#
# Needs cargo, cc, cmake, pkg-config,
# readelf. The debug install copies ~800 MB (libatrank.a and .so are large unoptimized); the
# temporary directory is removed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/ffi-tests/install"
PACKAGE="$ROOT/tests/fixtures/tiny"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
for tool in cargo cc cmake pkg-config readelf; do
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
# The consumers must find libatrank through their rpath, not through the environment.
unset LD_LIBRARY_PATH

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
run_consumer() {
  local out
  out="$("$1" "$PACKAGE")" || fail "$(basename "$1") failed on $PACKAGE"
  echo "ok: $(basename "$1"): $out"
}

step "install (debug profile) into $prefix"
bash "$ROOT/scripts/install.sh" "$prefix" --profile debug

step "installed tree"
lib="$prefix/lib"
for f in "$lib/libatrank.so.$version" "$lib/libatrank.a" "$prefix/include/atrank.h" \
         "$lib/pkgconfig/atrank.pc" "$lib/cmake/atrank/atrankConfig.cmake" \
         "$lib/cmake/atrank/atrankConfigVersion.cmake"; do
  [ -f "$f" ] && [ ! -L "$f" ] || fail "missing or not a regular file: $f"
done
[ "$(readlink "$lib/$soname")" = "libatrank.so.$version" ] || fail "$lib/$soname should link to libatrank.so.$version"
[ "$(readlink "$lib/libatrank.so")" = "$soname" ] || fail "$lib/libatrank.so should link to $soname"
if [ -f "$ROOT/include/atrank.hpp" ]; then
  cmp -s "$ROOT/include/atrank.hpp" "$prefix/include/atrank.hpp" || fail "include/atrank.hpp was not installed"
fi
readelf -d "$lib/libatrank.so.$version" | grep -q "Library soname: \[$soname\]" \
  || fail "libatrank.so.$version has no SONAME $soname"
echo "ok: files, symlinks, SONAME $soname"

step "second install into the same prefix (idempotent)"
listing() { (cd "$prefix" && find . -printf '%p %y %l\n' | LC_ALL=C sort); }
before="$(listing)"
bash "$ROOT/scripts/install.sh" "$prefix" --profile debug 2>/dev/null
[ "$(listing)" = "$before" ] || fail "a second install changed the tree"
echo "ok: same tree"

export PKG_CONFIG_PATH="$lib/pkgconfig"
cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror)

step "pkg-config, shared"
[ "$(pkg-config --modversion atrank)" = "$version" ] || fail "pkg-config --modversion atrank is not $version"
# shellcheck disable=SC2046
cc "${cflags[@]}" -o "$build/consumer-pkgconfig" "$HERE/consumer.c" \
  $(pkg-config --cflags --libs atrank) -lm -Wl,-rpath,"$lib"
check_shared_consumer "$build/consumer-pkgconfig"
run_consumer "$build/consumer-pkgconfig"

step "pkg-config --static, libatrank.a"
# -l:libatrank.a: with libatrank.so beside it, a plain -latrank would pick the shared library.
static_libs="$(pkg-config --static --libs atrank | sed 's/-latrank\b/-l:libatrank.a/')"
grep -q -- '-l:libatrank.a' <<<"$static_libs" || fail "pkg-config --static --libs lacks -latrank: $static_libs"
# shellcheck disable=SC2046,SC2086
cc "${cflags[@]}" -o "$build/consumer-static" "$HERE/consumer.c" \
  $(pkg-config --cflags atrank) $static_libs -lm
check_static_consumer "$build/consumer-static"
run_consumer "$build/consumer-static"

step "CMake, find_package(atrank CONFIG REQUIRED), atrank::atrank"
cmake -S "$HERE" -B "$build/cmake-shared" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$build/cmake-shared" >/dev/null
check_shared_consumer "$build/cmake-shared/consumer"
run_consumer "$build/cmake-shared/consumer"

step "CMake, atrank::atrank_static"
cmake -S "$HERE" -B "$build/cmake-static" -DCMAKE_PREFIX_PATH="$prefix" -DATRANK_STATIC=ON >/dev/null
cmake --build "$build/cmake-static" >/dev/null
check_static_consumer "$build/cmake-static/consumer"
run_consumer "$build/cmake-static/consumer"

step "CMake version check"
minor_req="$(cut -d. -f1,2 <<<"$version")"
cmake -S "$HERE" -B "$build/cmake-v-ok" -DCMAKE_PREFIX_PATH="$prefix" \
  -DATRANK_FIND_VERSION="$minor_req" >/dev/null || fail "find_package(atrank $minor_req) failed"
echo "ok: find_package(atrank $minor_req) accepts $version"
bad="$((major + 1)).0"
if cmake -S "$HERE" -B "$build/cmake-v-bad" -DCMAKE_PREFIX_PATH="$prefix" \
     -DATRANK_FIND_VERSION="$bad" >/dev/null 2>&1; then
  fail "find_package(atrank $bad) accepted $version"
fi
echo "ok: find_package(atrank $bad) rejects $version"

step "install test passed"
