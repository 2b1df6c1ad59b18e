// Package atrank is the Go binding of atrank's C ABI (capi/include/atrank.h): it loads ATRank model
// packages on ONNX Runtime or tract and scores candidates for a user's behavior history.
//
// # Building
//
// Import it as `atrank "github.com/atrank/atrank/bindings/go"`. The package links the C
// library through pkg-config (`#cgo pkg-config: atrank`). After
// `scripts/install.sh PREFIX --with-ort`:
//
//	PKG_CONFIG_PATH=PREFIX/lib/pkgconfig go build ./...
//
// (atrank.pc's rpath lets the program find libatrank.so.0, and ONNX Runtime beside it).
// In the source tree, scripts/test-go.sh writes an uninstalled build/pkgconfig/atrank.pc that
// points at target/debug and capi/include/ with an rpath.
//
// # Goroutines and lifetime
//
// A [Model] or [Handle] may be used from any number of goroutines at once. Close waits for
// the calls in flight, frees the C object, and makes later calls return [ErrClosed]. A model
// or handle that becomes unreachable without Close is freed by a cleanup
// ([runtime.AddCleanup]) as a backstop; call Close to free it at a known time.
//
// # Memory
//
// Each call copies its request (strings, behaviors, features, candidate ids) into one C
// allocation that is freed when the call returns; the library keeps no pointer after a call,
// and no Go pointer is ever stored in C memory (the cgo pointer rules, checked under
// GOEXPERIMENT=cgocheck2 in the tests). Scores are written into a Go []float32 during the call.
//
// # Errors
//
// Library errors are *[Error] values carrying the stable [Code] of atrank.h and the library's
// message. Compare codes with errors.Is against the Err* sentinels (errors.Is(err,
// atrank.ErrInvalidArgument)) or take the *Error with errors.As.
package atrank

// #cgo pkg-config: atrank
// #include <stdlib.h>
// #include "atrank.h"
import "C"

import (
	"errors"
	"fmt"
)

// Code is a stable atrank error code (atrank_code in atrank.h). Numbers are never reused.
type Code uint32

// The codes of atrank.h (ATRANK_OK, ATRANK_ERROR_*).
const (
	OK                 Code = C.ATRANK_OK
	NullArgument       Code = C.ATRANK_ERROR_NULL_ARGUMENT
	InvalidArgument    Code = C.ATRANK_ERROR_INVALID_ARGUMENT
	InvalidUTF8        Code = C.ATRANK_ERROR_INVALID_UTF8
	IO                 Code = C.ATRANK_ERROR_IO
	InvalidPackage     Code = C.ATRANK_ERROR_INVALID_PACKAGE
	BackendUnavailable Code = C.ATRANK_ERROR_BACKEND_UNAVAILABLE
	BackendFailed      Code = C.ATRANK_ERROR_BACKEND
	Panic              Code = C.ATRANK_ERROR_PANIC
	BufferSize         Code = C.ATRANK_ERROR_BUFFER_SIZE
)

var codeNames = map[Code]string{
	OK:                 "ATRANK_OK",
	NullArgument:       "ATRANK_ERROR_NULL_ARGUMENT",
	InvalidArgument:    "ATRANK_ERROR_INVALID_ARGUMENT",
	InvalidUTF8:        "ATRANK_ERROR_INVALID_UTF8",
	IO:                 "ATRANK_ERROR_IO",
	InvalidPackage:     "ATRANK_ERROR_INVALID_PACKAGE",
	BackendUnavailable: "ATRANK_ERROR_BACKEND_UNAVAILABLE",
	BackendFailed:      "ATRANK_ERROR_BACKEND",
	Panic:              "ATRANK_ERROR_PANIC",
	BufferSize:         "ATRANK_ERROR_BUFFER_SIZE",
}

// String is the C enum's name, e.g. "ATRANK_ERROR_INVALID_ARGUMENT".
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("atrank_code(%d)", uint32(c))
}

// Error is an error reported by the library (or, for what C cannot express, by this binding
// with the code the library would use): its stable Code and a message naming what was wrong.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("atrank: %s: %s", e.Code, e.Message) }

// Is reports whether target is an *Error with the same code and either no message (the Err*
// sentinels) or the same message, so that errors.Is(err, atrank.ErrIO) matches any I/O error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Sentinels for errors.Is, one per code: errors.Is(err, ErrInvalidArgument).
var (
	ErrNullArgument       = &Error{Code: NullArgument}
	ErrInvalidArgument    = &Error{Code: InvalidArgument}
	ErrInvalidUTF8        = &Error{Code: InvalidUTF8}
	ErrIO                 = &Error{Code: IO}
	ErrInvalidPackage     = &Error{Code: InvalidPackage}
	ErrBackendUnavailable = &Error{Code: BackendUnavailable}
	ErrBackend            = &Error{Code: BackendFailed}
	ErrPanic              = &Error{Code: Panic}
	ErrBufferSize         = &Error{Code: BufferSize}
)

// ErrClosed is returned by every method of a Model or Handle after its Close.
var ErrClosed = errors.New("atrank: use of a closed model or handle")

// takeError converts an owned atrank_error* into a Go error (nil for NULL) and frees it.
func takeError(e *C.atrank_error) error {
	if e == nil {
		return nil
	}
	defer C.atrank_error_free(e)
	return &Error{Code: Code(C.atrank_error_code(e)), Message: C.GoString(C.atrank_error_message(e))}
}

// bindingError is an error found by the binding before calling C (e.g. a NUL byte inside a
// Go string), with the code the library uses for the same kind of fault.
func bindingError(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...) + " (Go binding)"}
}

// Version is the loaded library's version, e.g. "0.1.0" (atrank_version).
func Version() string { return C.GoString(C.atrank_version()) }

// ABIVersion is the loaded library's C ABI version (atrank_abi_version).
func ABIVersion() uint32 { return uint32(C.atrank_abi_version()) }

// HeaderVersion is the version and ABI version of the atrank.h this package was compiled
// against. A program can compare them with Version and ABIVersion at start-up.
func HeaderVersion() (version string, abi uint32) {
	return fmt.Sprintf("%d.%d.%d", C.ATRANK_VERSION_MAJOR, C.ATRANK_VERSION_MINOR, C.ATRANK_VERSION_PATCH),
		uint32(C.ATRANK_ABI_VERSION)
}

// CheckVersion returns an error when the loaded library's ABI differs from the header's.
func CheckVersion() error {
	hv, habi := HeaderVersion()
	if abi := ABIVersion(); abi != habi {
		return fmt.Errorf("atrank: library ABI %d (version %s) differs from atrank.h's ABI %d (version %s)",
			abi, Version(), habi, hv)
	}
	return nil
}

// Backend selects the inference engine (ATRANK_BACKEND_*).
type Backend uint32

// The backends. BackendORT is the library's default.
const (
	BackendORT   Backend = C.ATRANK_BACKEND_ORT
	BackendTract Backend = C.ATRANK_BACKEND_TRACT
)

func (b Backend) String() string {
	switch b {
	case BackendORT:
		return "ort"
	case BackendTract:
		return "tract"
	}
	return fmt.Sprintf("backend(%d)", uint32(b))
}

// ParseBackend accepts "ort" or "tract".
func ParseBackend(s string) (Backend, error) {
	switch s {
	case "ort", "onnxruntime":
		return BackendORT, nil
	case "tract":
		return BackendTract, nil
	}
	return 0, bindingError(InvalidArgument, "unknown backend %q (want ort or tract)", s)
}

// GPUPolicy says whether ONNX Runtime may use CUDA (ATRANK_GPU_*).
type GPUPolicy uint32

// The GPU policies. GPUOff is the library's default.
const (
	GPUOff        GPUPolicy = C.ATRANK_GPU_OFF
	GPUStrict     GPUPolicy = C.ATRANK_GPU_STRICT
	GPUPermissive GPUPolicy = C.ATRANK_GPU_PERMISSIVE
)

func (p GPUPolicy) String() string {
	switch p {
	case GPUOff:
		return "off"
	case GPUStrict:
		return "strict"
	case GPUPermissive:
		return "permissive"
	}
	return fmt.Sprintf("gpu_policy(%d)", uint32(p))
}

// VerifyHashes says which package files have their SHA-256 checked at load
// (ATRANK_VERIFY_HASHES_*); sizes are always checked.
type VerifyHashes uint32

// The hash-check settings. VerifySmall is the library's default.
const (
	// VerifySmall checks the SHA-256 of every file of at most 64 MiB; larger files are mapped
	// and bounds-checked on every read.
	VerifySmall VerifyHashes = C.ATRANK_VERIFY_HASHES_SMALL
	// VerifyAll checks the SHA-256 of every file, whatever its size.
	VerifyAll VerifyHashes = C.ATRANK_VERIFY_HASHES_ALL
)

func (v VerifyHashes) String() string {
	switch v {
	case VerifySmall:
		return "small"
	case VerifyAll:
		return "all"
	}
	return fmt.Sprintf("verify_hashes(%d)", uint32(v))
}

// Serving is what actually runs a loaded model's graph (ATRANK_SERVING_*).
type Serving uint32

// The serving kinds.
const (
	ServingORTCPU  Serving = C.ATRANK_SERVING_ORT_CPU
	ServingORTCUDA Serving = C.ATRANK_SERVING_ORT_CUDA
	ServingTract   Serving = C.ATRANK_SERVING_TRACT
)

func (s Serving) String() string {
	switch s {
	case ServingORTCPU:
		return "ort-cpu"
	case ServingORTCUDA:
		return "ort-cuda"
	case ServingTract:
		return "tract"
	}
	return fmt.Sprintf("serving(%d)", uint32(s))
}
