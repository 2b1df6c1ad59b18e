#!/usr/bin/env bash
# Installs everything atrank needs on a fresh machine, from the package registries only
# (Debian, PyPI, crates.io; Go needs no modules). Idempotent: what it fetched is cached in
# $ATRANK_CACHE (default: .cache/ in the repository, git-ignored), and a step whose inputs
# did not change is skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ATRANK_CACHE:-$ROOT/.cache}"
VENV="${ATRANK_VENV:-$ROOT/.venv}"
ORT_VERSION=1.31.1
CBINDGEN_VERSION=0.29.4
mkdir -p "$CACHE"
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages: the C/C++ toolchain the tests build with (gcc, g++, cmake, GoogleTest),
# cJSON (the C tests and the C example read golden JSON), pkg-config, patchelf
# (scripts/install.sh sets the installed library's SONAME), valgrind (tests), and a Java
# runtime for PySpark (bindings/python) when the machine has no java yet. Only missing ones are
# installed.
need_apt=()
for pkg in gcc g++ cmake libgtest-dev libcjson-dev pkg-config patchelf valgrind; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# 2. Python environment for export/ (PyTorch from PyPI).
REQ="$ROOT/export/requirements.txt"
stamp="$VENV/.atrank-req-$(sha256sum "$REQ" "$ROOT/export/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "creating Python environment in $VENV (torch is ~3 GB; a few minutes)"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQ"
  # triton comes with torch's CUDA dependencies and is not used on CPU: ~1 GB saved.
  "$VENV/bin/python" -m pip uninstall -q -y triton >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT/export"
  rm -f "$VENV"/.atrank-req-*
  touch "$stamp"
fi

# 2b. The Python binding's test and PySpark dependencies (bindings/python).
PYREQ="$ROOT/bindings/python/requirements.txt"
pystamp="$VENV/.atrank-pyreq-$(sha256sum "$PYREQ" | cut -c1-16)"
if [ ! -f "$pystamp" ]; then
  log "pip install -r bindings/python/requirements.txt (pyspark, ~450 MB)"
  "$VENV/bin/python" -m pip install -q -r "$PYREQ"
  rm -f "$VENV"/.atrank-pyreq-*
  touch "$pystamp"
fi

# 3. The ONNX Runtime shared library for the `ort` crate (load-dynamic), out of the PyPI wheel.
ORT_DIR="$CACHE/onnxruntime-$ORT_VERSION"
if [ ! -f "$ORT_DIR/lib/libonnxruntime.so.$ORT_VERSION" ]; then
  log "fetching onnxruntime==$ORT_VERSION wheel from PyPI for its shared library"
  tmp="$(mktemp -d)"
  "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 "onnxruntime==$ORT_VERSION" -d "$tmp"
  mkdir -p "$ORT_DIR/lib"
  "$VENV/bin/python" - "$tmp" "$ORT_DIR/lib" <<'PY'
import glob, os, sys, zipfile
whl = glob.glob(os.path.join(sys.argv[1], "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with open(os.path.join(sys.argv[2], base), "wb") as f:
                f.write(z.read(name))
PY
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/lib/libonnxruntime.so"
  rm -rf "$tmp"
fi

# 4. cbindgen, pinned: the committed header is regenerated and diffed in the tests.
CB="$CACHE/cargo-tools/bin/cbindgen"
if [ ! -x "$CB" ] || [ "$("$CB" --version | awk '{print $2}')" != "$CBINDGEN_VERSION" ]; then
  log "cargo install cbindgen $CBINDGEN_VERSION (a few minutes, once)"
  cargo install -q --locked --root "$CACHE/cargo-tools" cbindgen --version "$CBINDGEN_VERSION"
fi

log "ok: venv=$VENV ort=$ORT_DIR/lib/libonnxruntime.so.$ORT_VERSION cbindgen=$CB"
