package atrank

// #include <stdlib.h>
// #include "atrank.h"
import "C"

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Option sets one load option (atrank_model_builder_set_*). Options not given keep the
// library's defaults: ONNX Runtime, 1 intra-op thread, CPU only, 1024 cached user encodings,
// the ONNX Runtime library from $ATRANK_ORT_LIB / $ORT_DYLIB_PATH / libonnxruntime.so.
type Option func(*options)

type options struct {
	backend      *Backend
	intraThreads *int
	gpu          *GPUPolicy
	ortLibrary   *string
	sessions     *int
	cache        *int
	verify       *VerifyHashes
	excludeSeen  *bool
	batchRows    *int
	fusion       *TractFusion
}

// WithBackend selects the inference engine.
func WithBackend(b Backend) Option { return func(o *options) { o.backend = &b } }

// WithIntraThreads sets ONNX Runtime's intra-op threads (at least 1; tract ignores it).
func WithIntraThreads(n int) Option { return func(o *options) { o.intraThreads = &n } }

// WithGPUPolicy sets whether ONNX Runtime uses CUDA.
func WithGPUPolicy(p GPUPolicy) Option { return func(o *options) { o.gpu = &p } }

// WithORTLibrary sets the full path of libonnxruntime.so.<version>. ONNX Runtime loads once
// per process: a different path after the first load is an error.
func WithORTLibrary(path string) Option { return func(o *options) { o.ortLibrary = &path } }

// WithSessions sets how many ONNX Runtime sessions the model holds (1..64; default 1). Calls
// on one session are serialised, so goroutines scoring one model concurrently on ORT need
// several; each session holds its own copy of the weights. tract ignores it.
func WithSessions(n int) Option { return func(o *options) { o.sessions = &n } }

// WithCacheCapacity sets how many user encodings the model caches (0: off) for packages with
// split encoder/scorer graphs; see Model.ScoreCached.
func WithCacheCapacity(entries int) Option { return func(o *options) { o.cache = &entries } }

// WithVerifyHashes sets which package files have their SHA-256 checked at load (default
// VerifySmall: every file of at most 64 MiB; VerifyAll: every file). Sizes are always checked.
func WithVerifyHashes(v VerifyHashes) Option { return func(o *options) { o.verify = &v } }

// WithExcludeSeen(true) gives candidates the user already touched (a behavior of the target
// group with their id, any action or time) the score -Inf, so they sort last. Default false:
// every candidate gets the model's score.
func WithExcludeSeen(exclude bool) Option { return func(o *options) { o.excludeSeen = &exclude } }

// WithBatchRows sets the most candidate rows one graph run of Model.ScoreBatch takes (default
// 1024; 0: no row limit): a batch with more runs in several, each request whole. One request
// per run was fastest at 1,000 candidates, about 8 at 100 (docs/benchmarks.md).
func WithBatchRows(rows int) Option { return func(o *options) { o.batchRows = &rows } }

// TractFusion says which of atrank's own tract kernels replace tract's nodes at load: a
// bitwise OR of FuseAttention and FuseLayerNorm, or FuseNone.
type TractFusion uint32

// The tract kernels (ATRANK_TRACT_FUSE_*).
const (
	FuseNone      TractFusion = C.ATRANK_TRACT_FUSE_NONE
	FuseAttention TractFusion = C.ATRANK_TRACT_FUSE_ATTENTION
	FuseLayerNorm TractFusion = C.ATRANK_TRACT_FUSE_LAYER_NORM
)

// WithTractFusion sets which of atrank's own tract kernels run (default: both in a release
// build of libatrank, none in a build with debug assertions). Stats counts what was fused.
// ONNX Runtime ignores it.
func WithTractFusion(f TractFusion) Option { return func(o *options) { o.fusion = &f } }

// newBuilder makes an atrank_model_builder for dir with opts applied; the caller consumes it
// (build or reload) or frees it.
func newBuilder(dir string, opts []Option) (*C.atrank_model_builder, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var s callSize
	if err := s.str(dir, "package_dir"); err != nil {
		return nil, err
	}
	if o.intraThreads != nil && *o.intraThreads < 0 {
		return nil, bindingError(InvalidArgument, "intra threads %d is negative", *o.intraThreads)
	}
	if o.sessions != nil && *o.sessions < 0 {
		return nil, bindingError(InvalidArgument, "sessions %d is negative", *o.sessions)
	}
	if o.cache != nil && *o.cache < 0 {
		return nil, bindingError(InvalidArgument, "cache capacity %d is negative", *o.cache)
	}
	if o.batchRows != nil && *o.batchRows < 0 {
		return nil, bindingError(InvalidArgument, "batch rows %d is negative", *o.batchRows)
	}
	if o.ortLibrary != nil {
		if err := s.str(*o.ortLibrary, "ONNX Runtime library path"); err != nil {
			return nil, err
		}
	}
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	var b *C.atrank_model_builder
	if err := takeError(C.atrank_model_builder_new(cdir, &b)); err != nil {
		return nil, err
	}
	err := func() error {
		if o.backend != nil {
			if err := takeError(C.atrank_model_builder_set_backend(b, C.atrank_backend(*o.backend))); err != nil {
				return err
			}
		}
		if o.intraThreads != nil {
			if err := takeError(C.atrank_model_builder_set_intra_threads(b, C.size_t(*o.intraThreads))); err != nil {
				return err
			}
		}
		if o.gpu != nil {
			if err := takeError(C.atrank_model_builder_set_gpu_policy(b, C.atrank_gpu_policy(*o.gpu))); err != nil {
				return err
			}
		}
		if o.ortLibrary != nil {
			lib := C.CString(*o.ortLibrary)
			defer C.free(unsafe.Pointer(lib))
			if err := takeError(C.atrank_model_builder_set_ort_library(b, lib)); err != nil {
				return err
			}
		}
		if o.sessions != nil {
			if err := takeError(C.atrank_model_builder_set_sessions(b, C.size_t(*o.sessions))); err != nil {
				return err
			}
		}
		if o.cache != nil {
			if err := takeError(C.atrank_model_builder_set_cache_capacity(b, C.size_t(*o.cache))); err != nil {
				return err
			}
		}
		if o.verify != nil {
			if err := takeError(C.atrank_model_builder_set_verify_hashes(b, C.atrank_verify_hashes(*o.verify))); err != nil {
				return err
			}
		}
		if o.fusion != nil {
			if err := takeError(C.atrank_model_builder_set_tract_fusion(b, C.atrank_tract_fusion(*o.fusion))); err != nil {
				return err
			}
		}
		if o.batchRows != nil {
			if err := takeError(C.atrank_model_builder_set_batch_rows(b, C.size_t(*o.batchRows))); err != nil {
				return err
			}
		}
		if o.excludeSeen != nil {
			v := C.uint32_t(0)
			if *o.excludeSeen {
				v = 1
			}
			if err := takeError(C.atrank_model_builder_set_exclude_seen(b, v)); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		C.atrank_model_builder_free(b)
		return nil, err
	}
	return b, nil
}

// modelState owns the C model. It is separate from Model so that the cleanup backstop can
// hold it without keeping the Model reachable.
type modelState struct {
	mu  sync.RWMutex // read: a call in flight; write: Close
	ptr *C.atrank_model
}

// free releases the C model once, after the calls in flight (Close and the cleanup).
func (s *modelState) free() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return false
	}
	C.atrank_model_free(s.ptr)
	s.ptr = nil
	return true
}

// cleanupHook, when set (tests), is called after a cleanup freed an unreachable object.
var cleanupHook atomic.Pointer[func(kind string)]

func cleanedUp(kind string) {
	if f := cleanupHook.Load(); f != nil {
		(*f)(kind)
	}
}

// Model is a loaded model package on one backend. It is immutable and safe for concurrent use
// by any number of goroutines.
type Model struct {
	s *modelState
}

func wrapModel(ptr *C.atrank_model) *Model {
	s := &modelState{ptr: ptr}
	m := &Model{s: s}
	runtime.AddCleanup(m, func(s *modelState) {
		if s.free() {
			cleanedUp("model")
		}
	}, s)
	return m
}

// Load loads the model package in directory dir with opts (atrank_model_builder_*).
func Load(dir string, opts ...Option) (*Model, error) {
	b, err := newBuilder(dir, opts)
	if err != nil {
		return nil, err
	}
	var ptr *C.atrank_model
	if err := takeError(C.atrank_model_builder_build(b, &ptr)); err != nil { // consumes b
		return nil, err
	}
	return wrapModel(ptr), nil
}

// Close frees the model after the calls in flight have returned; later calls return
// ErrClosed. Closing twice is harmless (nil).
func (m *Model) Close() error {
	m.s.free()
	return nil
}

// acquire read-locks the model for one call; release with m.s.mu.RUnlock.
func (m *Model) acquire() (*C.atrank_model, error) {
	m.s.mu.RLock()
	if m.s.ptr == nil {
		m.s.mu.RUnlock()
		return nil, ErrClosed
	}
	return m.s.ptr, nil
}

func (m *Model) release() {
	m.s.mu.RUnlock()
	runtime.KeepAlive(m)
}

// Backend is the backend serving the model.
func (m *Model) Backend() (Backend, error) {
	p, err := m.acquire()
	if err != nil {
		return 0, err
	}
	defer m.release()
	var out C.atrank_backend
	if err := takeError(C.atrank_model_backend(p, &out)); err != nil {
		return 0, err
	}
	return Backend(out), nil
}

// MaxCandidates is the most candidates one request may carry for this model.
func (m *Model) MaxCandidates() (int, error) {
	p, err := m.acquire()
	if err != nil {
		return 0, err
	}
	defer m.release()
	var out C.size_t
	if err := takeError(C.atrank_model_max_candidates(p, &out)); err != nil {
		return 0, err
	}
	return int(out), nil
}

// Serving says what runs the model's graph, e.g. ServingORTCPU after a permissive GPU
// request fell back to the CPU.
func (m *Model) Serving() (Serving, error) {
	p, err := m.acquire()
	if err != nil {
		return 0, err
	}
	defer m.release()
	var out C.atrank_serving
	if err := takeError(C.atrank_model_serving(p, &out)); err != nil {
		return 0, err
	}
	return Serving(out), nil
}

// Score scores candidate item ids for one user's behaviors as of requestTime (unix seconds)
// and returns one logit per candidate, in order (higher ranks first).
func (m *Model) Score(behaviors []Behavior, candidates []string, requestTime int64) ([]float32, error) {
	call, args, _, err := marshal(behaviors, candidates)
	if err != nil {
		return nil, err
	}
	defer call.free()
	p, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	scores := newScores(len(candidates))
	if err := takeError(C.atrank_model_score(p, args.behaviors, args.nb, args.candidates, args.nc,
		C.int64_t(requestTime), scoresPtr(scores), C.size_t(len(candidates)))); err != nil {
		return nil, err
	}
	return scores[:len(candidates)], nil
}

// ScoreCached is Score that reuses the encoding of userKey's history when the same user comes
// back with the same behaviors and request time (packages with split graphs and a cache
// capacity above 0; otherwise it is exactly Score). Scores equal Score's.
func (m *Model) ScoreCached(userKey string, behaviors []Behavior, candidates []string, requestTime int64) ([]float32, error) {
	call, args, extra, err := marshal(behaviors, candidates, userKey)
	if err != nil {
		return nil, err
	}
	defer call.free()
	p, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	scores := newScores(len(candidates))
	if err := takeError(C.atrank_model_score_cached(p, extra[0], args.behaviors, args.nb, args.candidates, args.nc,
		C.int64_t(requestTime), scoresPtr(scores), C.size_t(len(candidates)))); err != nil {
		return nil, err
	}
	return scores[:len(candidates)], nil
}
