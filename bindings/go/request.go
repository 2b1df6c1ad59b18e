package atrank

// #include <stdlib.h>
// #include "atrank.h"
import "C"

import (
	"fmt"
	"sort"
	"strings"
	"unsafe"
)

// Feature is one caller-supplied object feature, e.g. {"shop", "s12"}; it overrides the
// package's catalog for that behavior.
type Feature struct {
	Name  string
	Value string
}

// FeaturesFromMap turns a map into features sorted by name (a deterministic order).
func FeaturesFromMap(m map[string]string) []Feature {
	if len(m) == 0 {
		return nil
	}
	out := make([]Feature, 0, len(m))
	for k, v := range m {
		out = append(out, Feature{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Behavior is one raw behavior of a user (atrank_behavior). The empty string means "not
// given" for Category (the catalog's category), Action (unknown action) and Group (the
// model's target group). Item is required; ids the model never saw score as unknown.
type Behavior struct {
	Item      string
	Category  string
	Action    string
	Timestamp int64 // unix seconds
	Group     string
	Features  []Feature
}

// Request is one user's scoring request: behaviors, candidate ids and the request time
// (unix seconds).
type Request struct {
	Behaviors   []Behavior
	Candidates  []string
	RequestTime int64
}

// cCall is one C allocation holding a call's inputs: behavior and feature arrays, candidate
// pointer arrays and NUL-terminated copies of every string. Only C pointers are stored in it.
type cCall struct {
	base  unsafe.Pointer
	size  int
	off   int
	bytes []byte // views the whole C allocation
}

// callSize counts what marshalling reqs needs and rejects strings C cannot see whole.
type callSize struct {
	behaviors, features, candidates, strBytes int
}

func align8(n int) int { return (n + 7) &^ 7 }

func (s *callSize) str(v, what string, args ...any) error {
	if strings.IndexByte(v, 0) >= 0 {
		return bindingError(InvalidArgument, "%s contains a NUL byte", fmt.Sprintf(what, args...))
	}
	s.strBytes += len(v) + 1
	return nil
}

// add counts one request; prefix ("" or "requests[3].") names fields in errors like the
// library does (behaviors[2].item).
func (s *callSize) add(prefix string, behaviors []Behavior, candidates []string) error {
	s.behaviors += len(behaviors)
	s.candidates += len(candidates)
	for i := range behaviors {
		b := &behaviors[i]
		if err := s.str(b.Item, "%sbehaviors[%d].item", prefix, i); err != nil {
			return err
		}
		for _, opt := range []struct{ v, name string }{{b.Category, "category"}, {b.Action, "action"}, {b.Group, "group"}} {
			if opt.v == "" {
				continue
			}
			if err := s.str(opt.v, "%sbehaviors[%d].%s", prefix, i, opt.name); err != nil {
				return err
			}
		}
		s.features += len(b.Features)
		for j, f := range b.Features {
			if err := s.str(f.Name, "%sbehaviors[%d].features[%d].name", prefix, i, j); err != nil {
				return err
			}
			if err := s.str(f.Value, "%sbehaviors[%d].features[%d].value", prefix, i, j); err != nil {
				return err
			}
		}
	}
	for i, c := range candidates {
		if err := s.str(c, "%scandidates[%d]", prefix, i); err != nil {
			return err
		}
	}
	return nil
}

// newCall allocates room for extra leading bytes (e.g. a request array) plus what s counted.
func newCall(extra int, s *callSize) *cCall {
	size := align8(extra) +
		align8(s.behaviors*int(C.sizeof_atrank_behavior)) +
		align8(s.features*int(C.sizeof_atrank_feature)) +
		align8(s.candidates*int(unsafe.Sizeof((*C.char)(nil)))) +
		s.strBytes
	if size == 0 {
		size = 1
	}
	// Zeroed memory (calloc, not malloc), because put stores C pointers into it through Go
	// pointer types ([]*C.char, the pointer fields of atrank_behavior and atrank_feature): the
	// compiler cannot tell that such a slot is C memory, so while the GC is marking every store
	// runs the write barrier, which reads the slot's old value and shades it as a Go pointer.
	// malloc's leftovers (freed blocks hold stale Go heap addresses among other bytes) then make
	// the GC mark a freed object ("found pointer to free object" at the next sweep) or throw
	// "found bad pointer in Go heap". A zeroed slot's old value is nil.
	base := C.calloc(1, C.size_t(size))
	if base == nil {
		panic("atrank: out of C memory for a call's arguments")
	}
	return &cCall{base: base, size: size, bytes: unsafe.Slice((*byte)(base), size)}
}

func (c *cCall) free() { C.free(c.base) }

// take reserves n bytes (8-aligned start) and returns their address.
func (c *cCall) take(n int) unsafe.Pointer {
	c.off = align8(c.off)
	if c.off+n > c.size {
		panic("atrank: internal error: C call buffer overflow")
	}
	p := unsafe.Add(c.base, c.off)
	c.off += n
	return p
}

// str copies s (checked for NUL bytes already) with a terminating NUL.
func (c *cCall) str(s string) *C.char {
	if c.off+len(s)+1 > c.size {
		panic("atrank: internal error: C call buffer overflow")
	}
	p := (*C.char)(unsafe.Add(c.base, c.off))
	c.off += copy(c.bytes[c.off:], s)
	c.bytes[c.off] = 0
	c.off++
	return p
}

// optStr is str, or NULL for "".
func (c *cCall) optStr(s string) *C.char {
	if s == "" {
		return nil
	}
	return c.str(s)
}

// cArgs are one request's arguments in C memory.
type cArgs struct {
	behaviors  *C.atrank_behavior // NULL for an empty history
	nb         C.size_t
	candidates **C.char // NULL when there are no candidates (the library reports it)
	nc         C.size_t
}

// put lays out one request. Arrays are reserved before strings so that the three array
// regions stay pointer-aligned; callers reserve all arrays first via reserveArrays.
type arrays struct {
	behaviors  []C.atrank_behavior
	features   []C.atrank_feature
	candidates []*C.char
}

func (c *cCall) reserveArrays(s *callSize) *arrays {
	a := &arrays{}
	if s.behaviors > 0 {
		a.behaviors = unsafe.Slice((*C.atrank_behavior)(c.take(s.behaviors*int(C.sizeof_atrank_behavior))), s.behaviors)
	}
	if s.features > 0 {
		a.features = unsafe.Slice((*C.atrank_feature)(c.take(s.features*int(C.sizeof_atrank_feature))), s.features)
	}
	if s.candidates > 0 {
		a.candidates = unsafe.Slice((**C.char)(c.take(s.candidates*int(unsafe.Sizeof((*C.char)(nil))))), s.candidates)
	}
	c.off = align8(c.off)
	return a
}

// put fills the next behaviors/features/candidates of a with one request and copies its
// strings; it returns the C arguments.
func (c *cCall) put(a *arrays, behaviors []Behavior, candidates []string) cArgs {
	var args cArgs
	if len(behaviors) > 0 {
		cb := a.behaviors[:len(behaviors)]
		a.behaviors = a.behaviors[len(behaviors):]
		args.behaviors, args.nb = &cb[0], C.size_t(len(behaviors))
		for i := range behaviors {
			b := &behaviors[i]
			cb[i] = C.atrank_behavior{
				item:      c.str(b.Item),
				category:  c.optStr(b.Category),
				action:    c.optStr(b.Action),
				timestamp: C.int64_t(b.Timestamp),
				group:     c.optStr(b.Group),
			}
			if n := len(b.Features); n > 0 {
				cf := a.features[:n]
				a.features = a.features[n:]
				for j, f := range b.Features {
					cf[j] = C.atrank_feature{name: c.str(f.Name), value: c.str(f.Value)}
				}
				cb[i].features, cb[i].features_len = &cf[0], C.size_t(n)
			}
		}
	}
	if len(candidates) > 0 {
		cc := a.candidates[:len(candidates)]
		a.candidates = a.candidates[len(candidates):]
		for i, s := range candidates {
			cc[i] = c.str(s)
		}
		args.candidates, args.nc = &cc[0], C.size_t(len(candidates))
	}
	return args
}

// marshal copies one request into a new C allocation; the caller frees it after the call.
func marshal(behaviors []Behavior, candidates []string, extraStrings ...string) (*cCall, cArgs, []*C.char, error) {
	var s callSize
	if err := s.add("", behaviors, candidates); err != nil {
		return nil, cArgs{}, nil, err
	}
	for _, e := range extraStrings {
		if err := s.str(e, "user_key"); err != nil {
			return nil, cArgs{}, nil, err
		}
	}
	call := newCall(0, &s)
	a := call.reserveArrays(&s)
	args := call.put(a, behaviors, candidates)
	extras := make([]*C.char, len(extraStrings))
	for i, e := range extraStrings {
		extras[i] = call.str(e)
	}
	return call, args, extras, nil
}

// newScores is the output buffer for n scores. It has at least one element so that its
// address is never NULL: with no candidates the library reports the empty candidate list.
func newScores(n int) []float32 {
	return make([]float32, max(n, 1))
}

// scoresPtr is the address of scores' first element (a Go pointer to memory holding no
// pointers: allowed for the duration of the call, and the library keeps nothing).
func scoresPtr(scores []float32) *C.float {
	return (*C.float)(unsafe.Pointer(&scores[0]))
}
