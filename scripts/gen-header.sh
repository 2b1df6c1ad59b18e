#!/usr/bin/env bash
# Regenerates capi/include/atrank.h with the pinned cbindgen (installed by scripts/setup.sh).
# With --check, fails if the committed header differs from what the sources generate.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CB="${ATRANK_CACHE:-$ROOT/.cache}/cargo-tools/bin/cbindgen"
cd "$ROOT"
if [ "${1:-}" = "--check" ]; then
  tmp="$(mktemp)"
  "$CB" --quiet --config cbindgen.toml --crate atrank --output "$tmp" .
  if ! diff -u capi/include/atrank.h "$tmp"; then
    echo "capi/include/atrank.h is out of date: run scripts/gen-header.sh and commit it" >&2
    rm -f "$tmp"; exit 1
  fi
  rm -f "$tmp"; echo "header: capi/include/atrank.h matches the sources"
else
  mkdir -p capi/include
  "$CB" --quiet --config cbindgen.toml --crate atrank --output capi/include/atrank.h .
fi
