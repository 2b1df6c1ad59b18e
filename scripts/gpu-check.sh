#!/usr/bin/env bash
# The GPU check (issue 14): golden parity on ONNX Runtime's CUDA execution provider (strict
# policy) and candidate scores/s for batches of users, for a machine with an NVIDIA GPU and
# CUDA 13 (+ cuDNN 9) but no network. Two steps, because that machine cannot reach the package
# registries:
#
#   bash scripts/gpu-check.sh bundle [--package PKG] [--out DIR]   # here: network, no GPU
#   bash scripts/gpu-check.sh run [DIR]                            # there: GPU, no network
#
# `bundle` (default DIR build/gpu-check) runs scripts/setup.sh, takes the ONNX Runtime CUDA
# libraries out of PyPI's `onnxruntime-gpu` wheel (the version setup.sh uses for the CPU
# library), builds the CUDA golden tests (tests/gpu.rs, dev profile) and the throughput bench
# (benches/gpu_serve.rs, release: the first release build takes about 15 minutes on 2 cores),
# and copies them, the committed fixtures and PKG (default: the ML-100k package the test
# command exports, build/test-ml100k/package, when it exists) into DIR. It also writes the
# whole bundle as one xz-compressed tar in 48 MiB parts to DIR.parts/ (about 210 MB in all:
# the CUDA provider library alone is 284 MB, 186 MB compressed), for a transfer that is limited
# in size: copy the parts into one folder on the GPU machine and `run` that folder.
#
# `run` needs nothing but the bundle, the NVIDIA driver and the CUDA 13 / cuDNN 9 libraries
# (found on LD_LIBRARY_PATH, under $CUDA_HOME/lib64, /usr/local/cuda*/lib64 or in the
# system's library path). It runs the golden tests with `--ignored` and the bench, and
# writes DIR/gpu-serve.json. Exit status: 0 when the tests pass, 2 when there is no NVIDIA
# GPU (nothing is run), else the failing step's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ORT_VERSION=1.31.1
PART_BYTES=48M

usage() { sed -n '2,22p' "$0" >&2; exit 64; }

bundle() {
  local out="$ROOT/build/gpu-check" pkg=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --out) out="$2"; shift 2 ;;
      --package) pkg="$2"; shift 2 ;;
      *) usage ;;
    esac
  done
  cd "$ROOT"
  for tool in xz strip tar split; do  # Debian: xz-utils, binutils (with gcc), tar, coreutils
    command -v "$tool" >/dev/null || { echo "gpu-check bundle needs $tool" >&2; exit 1; }
  done
  bash scripts/setup.sh
  source scripts/env.sh >/dev/null
  [ -z "$pkg" ] && [ -f build/test-ml100k/package/spec.json ] && pkg=build/test-ml100k/package
  rm -rf "$out" && mkdir -p "$out/ort" "$out/bin" "$out/packages"

  step "onnxruntime-gpu==$ORT_VERSION from PyPI (about 256 MB, once)"
  local wheels="$ATRANK_CACHE/wheels"
  mkdir -p "$wheels"
  if ! ls "$wheels"/onnxruntime_gpu-"$ORT_VERSION"-*.whl >/dev/null 2>&1; then
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 "onnxruntime-gpu==$ORT_VERSION" -d "$wheels"
  fi
  "$PY" - "$wheels"/onnxruntime_gpu-"$ORT_VERSION"-*.whl "$out/ort" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with z.open(name) as src, open(os.path.join(sys.argv[2], base), "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            print(f"  {base}: {os.path.getsize(os.path.join(sys.argv[2], base)) / 1e6:.0f} MB")
PY
  [ -f "$out/ort/libonnxruntime_providers_cuda.so" ] \
    || { echo "the wheel has no libonnxruntime_providers_cuda.so" >&2; exit 1; }
  rm -f "$out"/ort/libonnxruntime_providers_tensorrt.so  # not used

  step "building tests/gpu.rs (dev) and benches/gpu_serve.rs (release)"
  local test_bin bench_bin
  test_bin=$(bench_exe gpu cargo test --test gpu --no-run)
  bench_bin=$(bench_exe gpu_serve cargo bench --bench gpu_serve --no-run)
  [ -x "$test_bin" ] && [ -x "$bench_bin" ] || { echo "build failed: cargo test --test gpu --no-run; cargo bench --bench gpu_serve --no-run" >&2; exit 1; }
  strip -o "$out/bin/gpu-tests" "$test_bin"
  strip -o "$out/bin/gpu-serve" "$bench_bin"

  cp -r tests/fixtures/tiny tests/fixtures/tiny-multigroup "$out/packages/"
  if [ -n "$pkg" ]; then
    cp -r "$pkg" "$out/packages/extra"
  fi
  du -sh "$out"/* | sed 's/^/  /'
  step "one xz-compressed tar of it in $PART_BYTES parts: $out.parts/"
  rm -rf "$out.parts" && mkdir -p "$out.parts"
  tar -C "$out" -cf - . | xz -T0 -6 | split -b "$PART_BYTES" -d - "$out.parts/bundle.tar.xz.part-"
  ls -l "$out.parts" | sed 's/^/  /'
  echo "bundle ready: $out, and the same in parts in $out.parts. On the GPU machine:"
  echo "  bash scripts/gpu-check.sh run DIR   (DIR: the bundle, or a folder of all its parts)"
}

run() {
  local dir="${1:-$ROOT/build/gpu-check}"
  dir="$(cd "$dir" && pwd)"
  if [ ! -x "$dir/bin/gpu-tests" ] && [ -f "$dir/bundle.tar.xz.part-00" ]; then
    echo "==> unpacking the bundle's parts in $dir"
    cat "$dir"/bundle.tar.xz.part-* | xz -d -T0 | tar -C "$dir" -xf -
  fi
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU here (nvidia-smi finds none); nothing was run" >&2
    exit 2
  fi
  nvidia-smi -L
  local libs="$dir/ort"
  for d in ${CUDA_HOME:+"$CUDA_HOME/lib64"} /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib; do
    [ -d "$d" ] && libs="$libs:$d"
  done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export ATRANK_ORT_LIB="$dir/ort/libonnxruntime.so.$ORT_VERSION" ATRANK_REQUIRE_ORT=1
  # The tests find the fixtures under ATRANK_REPO (they were built where the repository was).
  export ATRANK_REPO="$dir/packages/repo"
  mkdir -p "$ATRANK_REPO/tests/fixtures"
  for f in tiny tiny-multigroup; do ln -sfn "$dir/packages/$f" "$ATRANK_REPO/tests/fixtures/$f"; done
  local pkg=""
  [ -d "$dir/packages/extra" ] && pkg="$dir/packages/extra"
  echo "==> golden parity on CUDA (tests/gpu.rs, strict policy)"
  ATRANK_PACKAGE="$pkg" "$dir/bin/gpu-tests" --ignored --test-threads 1
  echo "==> candidate scores/s (benches/gpu_serve.rs)"
  "$dir/bin/gpu-serve" --package "${pkg:-$dir/packages/tiny}" | tee "$dir/gpu-serve.json"
}

case "${1:-}" in
  bundle) shift; bundle "$@" ;;
  run) shift; run "$@" ;;
  *) usage ;;
esac
