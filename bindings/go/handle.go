package atrank

// #include <stdlib.h>
// #include "atrank.h"
import "C"

import (
	"runtime"
	"sync"
)

type handleState struct {
	mu  sync.RWMutex // read: a call in flight (reloads included); write: Close
	ptr *C.atrank_handle
}

func (s *handleState) free() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return false
	}
	C.atrank_handle_free(s.ptr)
	s.ptr = nil
	return true
}

// Handle is a hot-swappable model (atrank_handle). Every call scores on the model current
// when it starts; Reload builds a new model and swaps it in atomically, and a failed Reload
// leaves the old model serving. Safe for concurrent use, reloads included.
type Handle struct {
	s *handleState
}

// NewHandle makes a handle serving m (generation 1). The handle holds its own reference: m
// may be closed independently.
func NewHandle(m *Model) (*Handle, error) {
	p, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	var h *C.atrank_handle
	if err := takeError(C.atrank_handle_new(p, &h)); err != nil {
		return nil, err
	}
	s := &handleState{ptr: h}
	handle := &Handle{s: s}
	runtime.AddCleanup(handle, func(s *handleState) {
		if s.free() {
			cleanedUp("handle")
		}
	}, s)
	return handle, nil
}

// LoadHandle loads dir with opts and returns a handle serving it.
func LoadHandle(dir string, opts ...Option) (*Handle, error) {
	m, err := Load(dir, opts...)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return NewHandle(m)
}

func (h *Handle) acquire() (*C.atrank_handle, error) {
	h.s.mu.RLock()
	if h.s.ptr == nil {
		h.s.mu.RUnlock()
		return nil, ErrClosed
	}
	return h.s.ptr, nil
}

func (h *Handle) release() {
	h.s.mu.RUnlock()
	runtime.KeepAlive(h)
}

// Close frees the handle after the calls in flight; models it served are freed when nothing
// else (a Model from Current) holds them. Later calls return ErrClosed.
func (h *Handle) Close() error {
	h.s.free()
	return nil
}

// Reload loads dir with opts and swaps the new model in; it returns the new generation. On
// error the current model keeps serving.
func (h *Handle) Reload(dir string, opts ...Option) (uint64, error) {
	b, err := newBuilder(dir, opts)
	if err != nil {
		return 0, err
	}
	p, err := h.acquire()
	if err != nil {
		C.atrank_model_builder_free(b)
		return 0, err
	}
	defer h.release()
	var gen C.uint64_t
	if err := takeError(C.atrank_handle_reload(p, b, &gen)); err != nil { // consumes b
		return 0, err
	}
	return uint64(gen), nil
}

// Generation is how many models the handle has served (1 + successful reloads).
func (h *Handle) Generation() (uint64, error) {
	p, err := h.acquire()
	if err != nil {
		return 0, err
	}
	defer h.release()
	var gen C.uint64_t
	if err := takeError(C.atrank_handle_generation(p, &gen)); err != nil {
		return 0, err
	}
	return uint64(gen), nil
}

// Current returns the model serving now, as a Model of its own (Close it when done): useful
// to score several calls on one consistent model.
func (h *Handle) Current() (*Model, error) {
	p, err := h.acquire()
	if err != nil {
		return nil, err
	}
	defer h.release()
	var m *C.atrank_model
	if err := takeError(C.atrank_handle_current(p, &m)); err != nil {
		return nil, err
	}
	return wrapModel(m), nil
}

// Snapshot returns the model serving now and its generation, read together (a reload between
// separate Current and Generation calls could mismatch them). Close the model when done.
func (h *Handle) Snapshot() (*Model, uint64, error) {
	p, err := h.acquire()
	if err != nil {
		return nil, 0, err
	}
	defer h.release()
	var m *C.atrank_model
	var gen C.uint64_t
	if err := takeError(C.atrank_handle_snapshot(p, &m, &gen)); err != nil {
		return nil, 0, err
	}
	return wrapModel(m), uint64(gen), nil
}

// Score is Model.Score on the current model.
func (h *Handle) Score(behaviors []Behavior, candidates []string, requestTime int64) ([]float32, error) {
	call, args, _, err := marshal(behaviors, candidates)
	if err != nil {
		return nil, err
	}
	defer call.free()
	p, err := h.acquire()
	if err != nil {
		return nil, err
	}
	defer h.release()
	scores := newScores(len(candidates))
	if err := takeError(C.atrank_handle_score(p, args.behaviors, args.nb, args.candidates, args.nc,
		C.int64_t(requestTime), scoresPtr(scores), C.size_t(len(candidates)))); err != nil {
		return nil, err
	}
	return scores[:len(candidates)], nil
}

// ScoreCached is Model.ScoreCached on the current model (each model has its own cache, so
// a reload starts with an empty one).
func (h *Handle) ScoreCached(userKey string, behaviors []Behavior, candidates []string, requestTime int64) ([]float32, error) {
	call, args, extra, err := marshal(behaviors, candidates, userKey)
	if err != nil {
		return nil, err
	}
	defer call.free()
	p, err := h.acquire()
	if err != nil {
		return nil, err
	}
	defer h.release()
	var m *C.atrank_model
	if err := takeError(C.atrank_handle_current(p, &m)); err != nil {
		return nil, err
	}
	defer C.atrank_model_free(m)
	scores := newScores(len(candidates))
	if err := takeError(C.atrank_model_score_cached(m, extra[0], args.behaviors, args.nb, args.candidates, args.nc,
		C.int64_t(requestTime), scoresPtr(scores), C.size_t(len(candidates)))); err != nil {
		return nil, err
	}
	return scores[:len(candidates)], nil
}
