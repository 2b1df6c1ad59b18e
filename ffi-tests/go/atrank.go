// Package atrank is a thin Go binding of atrank's C ABI (include/atrank.h), used by the FFI
// tests.
//
// Memory rule (cgo pointer passing): every string and the behaviors and candidates arrays are
// copied into one C allocation per call, and the scores are copied out of a C buffer, so no
// Go pointer is ever handed to C. Out-parameters of atrank_model_load/backend live in C memory
// too. The C library keeps nothing after a call returns, so each call frees its allocation.
//
// The library is found at link time in ../../target/debug (run `cargo build` first) and at run
// time through an rpath to the same directory.
package atrank

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/debug -latrank -Wl,-rpath,${SRCDIR}/../../target/debug
// #include <stdlib.h>
// #include "atrank.h"
import "C"

import (
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// Backend selects the inference engine.
type Backend uint32

// The backends of atrank.h.
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

// Code is a stable atrank error code (atrank_code).
type Code uint32

// The codes of atrank.h.
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
	OK: "ATRANK_OK", NullArgument: "ATRANK_ERROR_NULL_ARGUMENT",
	InvalidArgument: "ATRANK_ERROR_INVALID_ARGUMENT", InvalidUTF8: "ATRANK_ERROR_INVALID_UTF8",
	IO: "ATRANK_ERROR_IO", InvalidPackage: "ATRANK_ERROR_INVALID_PACKAGE",
	BackendUnavailable: "ATRANK_ERROR_BACKEND_UNAVAILABLE", BackendFailed: "ATRANK_ERROR_BACKEND",
	Panic: "ATRANK_ERROR_PANIC", BufferSize: "ATRANK_ERROR_BUFFER_SIZE",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("atrank_code(%d)", uint32(c))
}

// Error is an atrank error: its stable code and the library's message.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("atrank: %s: %s", e.Code, e.Message) }

// takeError converts an owned atrank_error* into a Go error (nil for NULL) and frees it.
func takeError(e *C.atrank_error) error {
	if e == nil {
		return nil
	}
	defer C.atrank_error_free(e)
	return &Error{Code: Code(C.atrank_error_code(e)), Message: C.GoString(C.atrank_error_message(e))}
}

// Version is the loaded library's version string (atrank_version).
func Version() string { return C.GoString(C.atrank_version()) }

// ABIVersion is the loaded library's C ABI version (atrank_abi_version).
func ABIVersion() uint32 { return uint32(C.atrank_abi_version()) }

// HeaderVersion is the version the binding was compiled against (atrank.h macros).
func HeaderVersion() (version string, abi uint32) {
	return fmt.Sprintf("%d.%d.%d", C.ATRANK_VERSION_MAJOR, C.ATRANK_VERSION_MINOR, C.ATRANK_VERSION_PATCH),
		uint32(C.ATRANK_ABI_VERSION)
}

// Behavior is one raw behavior. Category and Action may be nil (catalog category, unknown
// action).
type Behavior struct {
	Item      string
	Category  *string
	Action    *string
	Timestamp int64
}

// Model is a loaded model package. Score may be called from any number of goroutines at once;
// Close waits for calls in flight and makes later calls fail with NullArgument.
type Model struct {
	mu  sync.RWMutex
	ptr *C.atrank_model
}

// cArena is one C allocation holding NUL-terminated copies of Go strings.
type cArena struct {
	base unsafe.Pointer
	buf  []byte // views the C memory at base
	off  int
}

func newArena(size int) *cArena {
	if size == 0 {
		size = 1
	}
	base := C.malloc(C.size_t(size)) // cgo's C.malloc never returns NULL (it aborts instead)
	return &cArena{base: base, buf: unsafe.Slice((*byte)(base), size)}
}

// str copies s (which must not contain NUL) and returns the C copy.
func (a *cArena) str(s string) *C.char {
	p := (*C.char)(unsafe.Pointer(&a.buf[a.off]))
	a.off += copy(a.buf[a.off:], s)
	a.buf[a.off] = 0
	a.off++
	return p
}

func (a *cArena) free() { C.free(a.base) }

// checkNUL rejects strings C cannot see whole; the error mimics the library's own.
func checkNUL(s, what string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return &Error{Code: InvalidArgument, Message: what + " contains a NUL byte (Go binding)"}
	}
	return nil
}

// Load loads the package in dir on backend.
func Load(dir string, backend Backend) (*Model, error) {
	if err := checkNUL(dir, "package_dir"); err != nil {
		return nil, err
	}
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	out := (**C.atrank_model)(C.malloc(C.size_t(unsafe.Sizeof((*C.atrank_model)(nil)))))
	defer C.free(unsafe.Pointer(out))
	*out = nil
	if err := takeError(C.atrank_model_load(cdir, C.atrank_backend(backend), out)); err != nil {
		return nil, err
	}
	return &Model{ptr: *out}, nil
}

// Backend asks the library which backend serves the model.
func (m *Model) Backend() (Backend, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := (*C.atrank_backend)(C.malloc(C.size_t(unsafe.Sizeof(C.atrank_backend(0)))))
	defer C.free(unsafe.Pointer(out))
	if err := takeError(C.atrank_model_backend(m.ptr, out)); err != nil {
		return 0, err
	}
	return Backend(*out), nil
}

// Score scores candidates for one user's behaviors as of requestTime (unix seconds) and
// returns one logit per candidate, in order.
func (m *Model) Score(behaviors []Behavior, candidates []string, requestTime int64) ([]float32, error) {
	// Sizes of the single C allocation: behaviors array, candidate pointer array, then strings.
	nb, nc := len(behaviors), len(candidates)
	behSize := nb * int(C.sizeof_atrank_behavior)
	candSize := nc * int(unsafe.Sizeof((*C.char)(nil)))
	strSize := 0
	for i, b := range behaviors {
		if err := checkNUL(b.Item, fmt.Sprintf("behaviors[%d].item", i)); err != nil {
			return nil, err
		}
		strSize += len(b.Item) + 1
		if b.Category != nil {
			if err := checkNUL(*b.Category, fmt.Sprintf("behaviors[%d].category", i)); err != nil {
				return nil, err
			}
			strSize += len(*b.Category) + 1
		}
		if b.Action != nil {
			if err := checkNUL(*b.Action, fmt.Sprintf("behaviors[%d].action", i)); err != nil {
				return nil, err
			}
			strSize += len(*b.Action) + 1
		}
	}
	for i, c := range candidates {
		if err := checkNUL(c, fmt.Sprintf("candidates[%d]", i)); err != nil {
			return nil, err
		}
		strSize += len(c) + 1
	}
	scoreSize := nc * 4
	// Pointer arrays first (pointer-aligned: malloc's alignment, sizes are multiples of 8),
	// then the scores (4-byte aligned), then the strings.
	arena := newArena(behSize + candSize + scoreSize + strSize)
	defer arena.free()
	arena.off = behSize + candSize + scoreSize

	var cBehaviors *C.atrank_behavior // NULL for an empty history
	if nb > 0 {
		cBehaviors = (*C.atrank_behavior)(arena.base)
		cb := unsafe.Slice(cBehaviors, nb)
		for i, b := range behaviors {
			cb[i] = C.atrank_behavior{item: arena.str(b.Item), timestamp: C.int64_t(b.Timestamp)}
			if b.Category != nil {
				cb[i].category = arena.str(*b.Category)
			}
			if b.Action != nil {
				cb[i].action = arena.str(*b.Action)
			}
		}
	}
	var cCands **C.char // NULL when there are no candidates (the library reports it)
	if nc > 0 {
		cCands = (**C.char)(unsafe.Add(arena.base, behSize))
		cc := unsafe.Slice(cCands, nc)
		for i, c := range candidates {
			cc[i] = arena.str(c)
		}
	}
	cScores := (*C.float)(unsafe.Add(arena.base, behSize+candSize))

	m.mu.RLock()
	err := takeError(C.atrank_model_score(m.ptr, cBehaviors, C.size_t(nb), cCands, C.size_t(nc),
		C.int64_t(requestTime), cScores, C.size_t(nc)))
	m.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	scores := make([]float32, nc)
	for i, s := range unsafe.Slice(cScores, nc) {
		scores[i] = float32(s)
	}
	return scores, nil
}

// Close frees the model after every call in flight has returned. Safe to call more than once.
func (m *Model) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	C.atrank_model_free(m.ptr)
	m.ptr = nil
}
