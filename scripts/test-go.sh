#!/usr/bin/env bash
# Go tests: the module bindings/go, its consumer test ffi-tests/go and the HTTP example
# examples/go, each under `go vet`, `go test -race` and once with GOEXPERIMENT=cgocheck2; then
# the example's rerank-server on loopback under a bounded load test with model reloads during
# the run (on tract, and on ONNX Runtime when ATRANK_ORT_LIB is set).
#
#   bash scripts/test-go.sh          # ATRANK_PACKAGE: the package to serve (default: tests/fixtures/tiny)
#
# Links the in-tree library (target/debug) through an uninstalled pkg-config file it writes to
# build/pkgconfig/atrank.pc. Load-test bounds: GO_LOAD_N (2000 requests), GO_LOAD_DURATION
# (20s), GO_LOAD_C (4 clients), GO_LOAD_RELOADS (2). Exits non-zero on any failure, including
# a single failed request. ATRANK_GO_INSTALL_PREFIX=PREFIX (after scripts/install.sh PREFIX)
# also builds and runs the consumer test against that installed prefix.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

command -v go >/dev/null || { echo "test-go.sh: go is not installed" >&2; exit 1; }
command -v pkg-config >/dev/null || { echo "test-go.sh: pkg-config is not installed" >&2; exit 1; }

# scripts/test.sh runs `cargo build` before this script; build here only when the library is
# missing (or when ATRANK_GO_CARGO_BUILD=1).
if [ ! -f target/debug/libatrank.so ] || [ "${ATRANK_GO_CARGO_BUILD:-0}" = 1 ]; then
  step "Go: the shared library (cargo build, dev profile)"
  cargo build
fi
[ -f target/debug/libatrank.so ] || { echo "target/debug/libatrank.so was not built" >&2; exit 1; }

# An uninstalled pkg-config file for the in-tree library; the rpath lets test binaries find it.
version="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
mkdir -p build/pkgconfig
cat >build/pkgconfig/atrank.pc.tmp <<PC
# Uninstalled atrank for in-tree Go builds, written by scripts/test-go.sh.
libdir=$ROOT/target/debug
includedir=$ROOT/capi/include

Name: atrank
Description: atrank from the source tree (target/debug, capi/include/)
Version: $version
Libs: -L\${libdir} -latrank -Wl,-rpath,\${libdir}
Cflags: -I\${includedir}
PC
mv -f build/pkgconfig/atrank.pc.tmp build/pkgconfig/atrank.pc
export PKG_CONFIG_PATH="$ROOT/build/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# cgo does not notice changes to a header outside the module: a build cache per header version.
export GOCACHE="$ROOT/build/go-cache-$(sha256sum capi/include/atrank.h | cut -c1-16)"
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false"
# The Go tests always use both fixtures, plus $ATRANK_PACKAGE when it is set; the server
# serves $ATRANK_PACKAGE, else the tiny fixture.
package="${ATRANK_PACKAGE:-$ROOT/tests/fixtures/tiny}"
case "$package" in /*) ;; *) package="$ROOT/$package" ;; esac
[ -z "${ATRANK_PACKAGE:-}" ] || export ATRANK_PACKAGE="$package"

for mod in bindings/go ffi-tests/go examples/go; do
  step "Go: $mod (gofmt, go vet, go test -race, GOEXPERIMENT=cgocheck2 go test)"
  (
    cd "$mod"
    unformatted="$(gofmt -l .)"
    [ -z "$unformatted" ] || { echo "gofmt: not formatted: $unformatted" >&2; exit 1; }
    go vet ./...
    go test -race -count=1 ./...
    GOEXPERIMENT=cgocheck2 go test -count=1 ./...
  )
done

step "Go: rerank-server and loadtest on loopback ($package)"
bin="$ROOT/build/go-bin"
mkdir -p "$bin"
(cd examples/go && go build -o "$bin/" ./cmd/rerank-server ./cmd/loadtest)
work="$(mktemp -d "${TMPDIR:-/tmp}/atrank-go-serve.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

serve_and_load() {  # BACKEND
  local backend="$1" addr log="$work/server-$1.log" i
  rm -f "$work/addr"
  "$bin/rerank-server" -package "$package" -backend "$backend" -addr 127.0.0.1:0 \
    -addr-file "$work/addr" >"$log" 2>&1 &
  server_pid=$!
  for i in $(seq 600); do
    [ -s "$work/addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; echo "rerank-server exited early" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$work/addr" ] || { cat "$log" >&2; echo "rerank-server did not start in 60 s" >&2; exit 1; }
  addr="$(cat "$work/addr")"
  # A reload by signal before the load, then reloads over HTTP during it.
  kill -HUP "$server_pid"
  for i in $(seq 600); do grep -q 'reloaded: generation 2' "$log" && break; sleep 0.1; done
  grep -q 'reloaded: generation 2' "$log" || { cat "$log" >&2; echo "SIGHUP did not reload" >&2; exit 1; }
  "$bin/loadtest" -url "http://$addr" -package "$package" -n "${GO_LOAD_N:-2000}" \
    -duration "${GO_LOAD_DURATION:-20s}" -c "${GO_LOAD_C:-4}" -reloads "${GO_LOAD_RELOADS:-2}" \
    || { cat "$log" >&2; echo "load test on $backend failed" >&2; exit 1; }
  kill -TERM "$server_pid"
  wait "$server_pid" || { cat "$log" >&2; echo "rerank-server ($backend) did not shut down cleanly" >&2; exit 1; }
  server_pid=""
  sed 's/^/  server: /' "$log"
}
serve_and_load tract
if [ -n "${ATRANK_ORT_LIB:-}" ] && [ -f "$ATRANK_ORT_LIB" ]; then
  serve_and_load ort
else
  echo "skip: rerank-server on ONNX Runtime (ATRANK_ORT_LIB is not set)"
fi

# Optional: the consumer module against an installed prefix (scripts/install.sh PREFIX), i.e.
# the installed atrank.pc, with an rpath to PREFIX/lib; the test binary must need the SONAME.
if [ -n "${ATRANK_GO_INSTALL_PREFIX:-}" ]; then
  prefix="$ATRANK_GO_INSTALL_PREFIX"
  step "Go: ffi-tests/go against the installed prefix $prefix"
  [ -f "$prefix/lib/pkgconfig/atrank.pc" ] || { echo "$prefix/lib/pkgconfig/atrank.pc is missing" >&2; exit 1; }
  (
    cd ffi-tests/go
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig" CGO_LDFLAGS="-Wl,-rpath,$prefix/lib"
    go test -c -o "$work/consumer.test" .
    readelf -d "$work/consumer.test" | grep -q 'NEEDED.*\[libatrank\.so\.[0-9]*\]' \
      || { echo "the consumer does not need the installed libatrank.so.N" >&2; exit 1; }
    "$work/consumer.test" -test.count=1
  )
fi

step "Go tests passed"
