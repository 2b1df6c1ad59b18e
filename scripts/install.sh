#!/usr/bin/env bash
# Builds atrank and installs it into a prefix, for C/C++ consumers:
#
#   bash scripts/install.sh PREFIX [--profile release|debug] [--with-ort[=LIB]]
#
#   --profile     release (default) or debug
#   --with-ort    also install ONNX Runtime's shared library into PREFIX/lib, where libatrank
#                 finds it with no environment variable. LIB is libonnxruntime.so.<version>;
#                 default: $ATRANK_ORT_LIB, else the one scripts/setup.sh unpacked into .cache/
#                 (from the PyPI onnxruntime wheel).
#
# installs
#   PREFIX/lib/libatrank.so.X.Y.Z          the shared library, SONAME libatrank.so.X (patchelf)
#   PREFIX/lib/libatrank.so.X -> libatrank.so.X.Y.Z
#   PREFIX/lib/libatrank.so   -> libatrank.so.X
#   PREFIX/lib/libatrank.a                 the static library
#   PREFIX/include/atrank.h                (and atrank.hpp when include/atrank.hpp exists)
#   PREFIX/lib/pkgconfig/atrank.pc         pkg-config: `pkg-config --cflags --libs [--static] atrank`
#   PREFIX/lib/cmake/atrank/atrankConfig.cmake, atrankConfigVersion.cmake
#                                          find_package(atrank CONFIG): atrank::atrank (shared),
#                                          atrank::atrank_static
# and with --with-ort
#   PREFIX/lib/libonnxruntime.so.V (+ .so.1, .so links, libonnxruntime_providers_shared.so)
# The installed libatrank.so carries RUNPATH $ORIGIN, so the `libonnxruntime.so` it opens by
# default is the one beside it; atrank.pc and the CMake targets give consumers an rpath to
# PREFIX/lib (static consumers open ONNX Runtime through their own RUNPATH).
# X.Y.Z is the crate's version (Cargo.toml); for 0.x the SONAME is libatrank.so.0.
#
# Idempotent (re-running overwrites the same files). cargo fetches missing dependencies from
# crates.io (--locked: the versions in Cargo.lock). A release build compiles tract with
# optimizations: several minutes the first time. Honours CARGO_TARGET_DIR. Linux only (the SONAME and .so layout).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
log() { printf '[install] %s\n' "$*" >&2; }

prefix=""
profile=release
with_ort=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || usage; profile="$2"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    --with-ort) with_ort=default; shift ;;
    --with-ort=*) with_ort="${1#--with-ort=}"; [ -n "$with_ort" ] || usage; shift ;;
    -h|--help) usage ;;
    -*) printf 'install.sh: unknown option %s\n' "$1" >&2; usage ;;
    *) [ -z "$prefix" ] || usage; prefix="$1"; shift ;;
  esac
done
[ -n "$prefix" ] || usage
case "$profile" in
  release) cargo_profile=release; profile_dir=release ;;
  debug|dev) cargo_profile=dev; profile_dir=debug ;;
  *) die "--profile must be release or debug, not '$profile'" ;;
esac
[ "$(uname -s)" = Linux ] || die "only Linux is supported (shared library layout and SONAME)"

# The version, from Cargo.toml's [package] section.
version="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n1)"
[[ "$version" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || die "cannot read a X.Y.Z version from Cargo.toml (got '$version')"
major="${BASH_REMATCH[1]}"
minor="${BASH_REMATCH[2]}"

mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
libdir="$prefix/lib"
incdir="$prefix/include"
pcdir="$libdir/pkgconfig"
cmakedir="$libdir/cmake/atrank"

# The ONNX Runtime library to install, checked before the long build.
ort_src=""
if [ -n "$with_ort" ]; then
  if [ "$with_ort" = default ]; then
    ort_src="${ATRANK_ORT_LIB:-}"
    if [ -z "$ort_src" ]; then
      ort_src="$(ls "${ATRANK_CACHE:-$ROOT/.cache}"/onnxruntime-*/lib/libonnxruntime.so.*.*.* 2>/dev/null | sort -V | tail -n1 || true)"
    fi
    [ -n "$ort_src" ] || die "--with-ort: no ONNX Runtime library found: run scripts/setup.sh (it unpacks one from PyPI into .cache/) or pass --with-ort=/path/to/libonnxruntime.so.<version>"
  else
    ort_src="$with_ort"
  fi
  ort_src="$(readlink -f "$ort_src" 2>/dev/null || true)"
  [ -n "$ort_src" ] && [ -f "$ort_src" ] || die "--with-ort: $with_ort is not a file"
  [[ "$(basename "$ort_src")" =~ ^libonnxruntime\.so\.([0-9]+)\.[0-9]+\.[0-9]+$ ]] \
    || die "--with-ort: expected libonnxruntime.so.<major>.<minor>.<patch>, got $(basename "$ort_src")"
  ort_major="${BASH_REMATCH[1]}"
fi

# 1. Build the C libraries (crate atrank-capi: cdylib and staticlib) and learn which system
#    libraries the static one needs. `cargo rustc` replays rustc's note when the build is
#    already fresh. Cargo's output is streamed (a first release build takes several minutes)
#    and kept to read the note from.
log "cargo build ($profile profile; a first release build compiles tract with optimizations: minutes)"
build_log="$(mktemp)"
trap 'rm -f "$build_log"' EXIT
if ! (cd "$ROOT" && cargo rustc -p atrank-capi --lib --profile "$cargo_profile" --locked \
        -- --print native-static-libs) 2>&1 | tee "$build_log" >&2; then
  die "cargo build failed (output above)"
fi
native_libs="$(sed -n 's/^.*native-static-libs: *//p' "$build_log" | tail -n1)"
if [ -z "$native_libs" ]; then
  # Not expected (cargo replays the note); the list rustc printed for this crate on Linux.
  native_libs="-ldl -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
  log "warning: rustc printed no native-static-libs; using the default: $native_libs"
fi
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$target_dir" in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
out="$target_dir/$profile_dir"
for f in libatrank.so libatrank.a; do
  [ -f "$out/$f" ] || die "$out/$f was not built"
done
soname="libatrank.so.$major"
command -v patchelf >/dev/null 2>&1 || die "patchelf is missing (scripts/setup.sh installs it)"

# 2. Libraries and headers.
log "installing atrank $version into $prefix"
install -d "$libdir" "$incdir" "$pcdir" "$cmakedir"
install -m 0755 "$out/libatrank.so" "$libdir/libatrank.so.$version"
# The SONAME is set on the installed copy only: in-tree builds (target/) keep none, so tests
# and tools linking target/<profile>/libatrank.so need no extra symlink.
patchelf --set-soname "$soname" "$libdir/libatrank.so.$version"
# $ORIGIN: ONNX Runtime installed beside it (--with-ort) is found with no variable set (dlopen
# searches the RUNPATH of the library that calls it).
patchelf --set-rpath '$ORIGIN' "$libdir/libatrank.so.$version"
ln -sfn "libatrank.so.$version" "$libdir/$soname"
ln -sfn "$soname" "$libdir/libatrank.so"
install -m 0644 "$out/libatrank.a" "$libdir/libatrank.a"
install -m 0644 "$ROOT/capi/include/atrank.h" "$incdir/atrank.h"
if [ -f "$ROOT/capi/include/atrank.hpp" ]; then
  install -m 0644 "$ROOT/capi/include/atrank.hpp" "$incdir/atrank.hpp"
fi

if [ -n "$ort_src" ]; then
  ort_name="$(basename "$ort_src")"
  log "installing ONNX Runtime $ort_name from $ort_src"
  install -m 0755 "$ort_src" "$libdir/$ort_name"
  ln -sfn "$ort_name" "$libdir/libonnxruntime.so.$ort_major"
  ln -sfn "libonnxruntime.so.$ort_major" "$libdir/libonnxruntime.so"
  # The CUDA execution provider's loader shim, when it sits beside the library.
  if [ -f "$(dirname "$ort_src")/libonnxruntime_providers_shared.so" ]; then
    install -m 0755 "$(dirname "$ort_src")/libonnxruntime_providers_shared.so" "$libdir/"
  fi
  ort_library="$libdir/$ort_name"
else
  ort_library=""
fi

# 3. pkg-config and CMake package files, from packaging/*.in.
native_libs_cmake="$(printf '%s' "$native_libs" | tr -s ' ' ';')"
sed_escape() { printf '%s' "$1" | sed 's/[&|\\]/\\&/g'; }  # a value for s|...|VALUE|
fill() {  # fill TEMPLATE DEST
  sed -e "s|@PREFIX@|$(sed_escape "$prefix")|g" \
      -e "s|@VERSION@|$version|g" \
      -e "s|@VERSION_MAJOR@|$major|g" \
      -e "s|@VERSION_MINOR@|$minor|g" \
      -e "s|@NATIVE_STATIC_LIBS_CMAKE@|$native_libs_cmake|g" \
      -e "s|@NATIVE_STATIC_LIBS@|$native_libs|g" \
      -e "s|@ORT_LIBRARY@|$(sed_escape "$ort_library")|g" \
      "$1" >"$2.tmp"
  chmod 0644 "$2.tmp"
  mv -f "$2.tmp" "$2"
}
fill "$ROOT/packaging/atrank.pc.in" "$pcdir/atrank.pc"
fill "$ROOT/packaging/atrankConfig.cmake.in" "$cmakedir/atrankConfig.cmake"
fill "$ROOT/packaging/atrankConfigVersion.cmake.in" "$cmakedir/atrankConfigVersion.cmake"

log "done: $libdir/libatrank.so.$version ($soname), libatrank.a, include/atrank.h,"
log "      lib/pkgconfig/atrank.pc, lib/cmake/atrank/ (find_package(atrank))"
if [ -n "$ort_library" ]; then
  log "      ONNX Runtime: $ort_library (opened by default; ATRANK_ORT_LIB still overrides it)"
fi
