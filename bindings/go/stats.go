package atrank

// #include <stdlib.h>
// #include "atrank.h"
import "C"

import (
	"time"
	"unsafe"
)

// CodeSlots is the length of [CallStats.Failures] (indexed by [Code]).
const CodeSlots = C.ATRANK_STATS_CODES

// LatencyBuckets is the number of latency histogram buckets; the last one is +Inf.
const LatencyBuckets = C.ATRANK_LATENCY_BUCKETS

// CallStats are the counters of one scoring entry point since the model was loaded.
type CallStats struct {
	// Calls made, successful and failed.
	Calls uint64
	// Failed calls by error code: Failures[InvalidArgument] counts the calls that failed with
	// ErrInvalidArgument. Failures[OK] stays 0.
	Failures [CodeSlots]uint64
	// Successful calls per latency bucket ([LatencyBounds]); not cumulative: bucket i counts
	// the calls that took more than bound i-1 and at most bound i.
	LatencyCounts [LatencyBuckets]uint64
	// Total latency of the successful calls.
	LatencySum time.Duration
}

// Failed is the number of failed calls, all codes.
func (c CallStats) Failed() uint64 {
	var n uint64
	for _, v := range c.Failures {
		n += v
	}
	return n
}

// Succeeded is the number of successful calls (the histogram's count).
func (c CallStats) Succeeded() uint64 {
	var n uint64
	for _, v := range c.LatencyCounts {
		n += v
	}
	return n
}

// Stats is a snapshot of a model's counters ([Model.Stats]). Counters start at 0 when the model
// is loaded and only grow (a reloaded model starts again at 0). They are read one by one while
// other goroutines may be scoring: a call in flight may show in Calls and not yet in a bucket.
type Stats struct {
	// Score counts Model.Score and Handle.Score; ScoreCached the ScoreCached calls;
	// ScoreBatch the ScoreBatch calls (one per batch).
	Score, ScoreCached, ScoreBatch CallStats
	// The user-encoding cache (ScoreCached on packages with the split graphs).
	CacheHits, CacheMisses, CacheEntries, CacheCapacity uint64
	// tract's shape-specialised plans: built (evicted ones included), held now, failed
	// builds; runs on the symbolic plan and on specialised plans. All 0 on ONNX Runtime.
	TractPlansBuilt, TractPlans, TractPlanBuildFailures, TractSymbolicRuns, TractConcreteRuns uint64
	// ONNX Runtime sessions running a graph now, and held (0 on tract).
	ORTSessionsBusy, ORTSessions uint64
	// Attention cores and layer normalisations that tract runs as atrank's fused kernels,
	// summed over the model's graphs (0 on ONNX Runtime; see WithTractFusion).
	TractFusedAttention, TractFusedLayerNorm uint64
}

// Total adds up the three entry points' counters.
func (s Stats) Total() CallStats {
	t := s.Score
	for _, c := range []CallStats{s.ScoreCached, s.ScoreBatch} {
		t.Calls += c.Calls
		for i := range t.Failures {
			t.Failures[i] += c.Failures[i]
		}
		for i := range t.LatencyCounts {
			t.LatencyCounts[i] += c.LatencyCounts[i]
		}
		t.LatencySum += c.LatencySum
	}
	return t
}

func callStats(c *C.atrank_call_stats) CallStats {
	out := CallStats{Calls: uint64(c.calls), LatencySum: time.Duration(c.latency_sum_ns)}
	for i := range out.Failures {
		out.Failures[i] = uint64(c.failures[i])
	}
	for i := range out.LatencyCounts {
		out.LatencyCounts[i] = uint64(c.latency_counts[i])
	}
	return out
}

func modelStats(p *C.atrank_model) (Stats, error) {
	var s C.atrank_stats
	if err := takeError(C.atrank_model_stats(p, &s, C.size_t(unsafe.Sizeof(s)))); err != nil {
		return Stats{}, err
	}
	return Stats{
		Score:                  callStats(&s.score),
		ScoreCached:            callStats(&s.score_cached),
		ScoreBatch:             callStats(&s.score_batch),
		CacheHits:              uint64(s.cache_hits),
		CacheMisses:            uint64(s.cache_misses),
		CacheEntries:           uint64(s.cache_entries),
		CacheCapacity:          uint64(s.cache_capacity),
		TractPlansBuilt:        uint64(s.tract_plans_built),
		TractPlans:             uint64(s.tract_plans),
		TractPlanBuildFailures: uint64(s.tract_plan_build_failures),
		TractSymbolicRuns:      uint64(s.tract_symbolic_runs),
		TractConcreteRuns:      uint64(s.tract_concrete_runs),
		ORTSessionsBusy:        uint64(s.ort_sessions_busy),
		ORTSessions:            uint64(s.ort_sessions),
		TractFusedAttention:    uint64(s.tract_fused_attention),
		TractFusedLayerNorm:    uint64(s.tract_fused_layer_norm),
	}, nil
}

// Stats is a snapshot of the model's counters: per entry point the calls, failures by code
// and a latency histogram of the successful calls; the encoding cache; tract plans; busy ONNX
// Runtime sessions. Cheap: fine on every metrics scrape.
func (m *Model) Stats() (Stats, error) {
	p, err := m.acquire()
	if err != nil {
		return Stats{}, err
	}
	defer m.release()
	return modelStats(p)
}

// Stats is the current model's [Model.Stats] with its generation, read together (a reload
// starts a new model, whose counters start at 0).
func (h *Handle) Stats() (Stats, uint64, error) {
	m, gen, err := h.Snapshot()
	if err != nil {
		return Stats{}, 0, err
	}
	defer m.Close()
	s, err := m.Stats()
	return s, gen, err
}

// LatencyBounds are the inclusive upper bounds of the latency buckets, in increasing order; the
// last, for +Inf, is the largest time.Duration. (An error means a library whose bucket count
// differs from the header the binding was built with.)
func LatencyBounds() ([LatencyBuckets]time.Duration, error) {
	var ns [LatencyBuckets]C.uint64_t
	var out [LatencyBuckets]time.Duration
	if err := takeError(C.atrank_latency_bounds(&ns[0], LatencyBuckets)); err != nil {
		return out, err
	}
	for i, v := range ns {
		if uint64(v) > uint64(1<<63-1) {
			out[i] = time.Duration(1<<63 - 1)
		} else {
			out[i] = time.Duration(v)
		}
	}
	return out, nil
}

// TableSize is an embedding table and the number of ids in its vocabulary.
type TableSize struct {
	Name string
	Size int
}

// GroupHistory is a behavior group and its max_history.
type GroupHistory struct {
	Name       string
	MaxHistory int
}

// Info identifies a loaded model ([Model.Info]).
type Info struct {
	// The package's name (may be empty), spec_version and created_by ("" when absent).
	Name        string
	SpecVersion uint32
	CreatedBy   string
	// The package's input_mapping as JSON: what its actions and features mean and how equal
	// timestamps are ordered ("" when the package has none).
	InputMapping string
	// SHA-256 of the graph file as loaded, 64 lower-case hex digits.
	GraphSHA256 string
	// What runs the graph: "ort-cpu", "ort-cuda" or "tract".
	Serving string
	// limits.max_candidates and limits.max_behaviors.
	MaxCandidates, MaxBehaviors int
	// Every embedding table with its vocabulary size, and every group with its max_history,
	// in the spec's order.
	VocabSizes []TableSize
	MaxHistory []GroupHistory
}

// Info says what the model is: package name, spec version, creator, the graph's SHA-256,
// vocabulary sizes, limits and what serves it.
func (m *Model) Info() (Info, error) {
	p, err := m.acquire()
	if err != nil {
		return Info{}, err
	}
	defer m.release()
	var raw *C.atrank_info
	if err := takeError(C.atrank_model_info(p, &raw)); err != nil {
		return Info{}, err
	}
	defer C.atrank_info_free(raw)
	info := Info{
		Name:          C.GoString(C.atrank_info_name(raw)),
		SpecVersion:   uint32(C.atrank_info_spec_version(raw)),
		CreatedBy:     C.GoString(C.atrank_info_created_by(raw)),
		InputMapping:  C.GoString(C.atrank_info_input_mapping(raw)),
		GraphSHA256:   C.GoString(C.atrank_info_graph_sha256(raw)),
		Serving:       C.GoString(C.atrank_info_serving(raw)),
		MaxCandidates: int(C.atrank_info_max_candidates(raw)),
		MaxBehaviors:  int(C.atrank_info_max_behaviors(raw)),
	}
	for i := C.size_t(0); i < C.atrank_info_table_count(raw); i++ {
		info.VocabSizes = append(info.VocabSizes, TableSize{
			Name: C.GoString(C.atrank_info_table_name(raw, i)),
			Size: int(C.atrank_info_table_vocab_size(raw, i)),
		})
	}
	for i := C.size_t(0); i < C.atrank_info_group_count(raw); i++ {
		info.MaxHistory = append(info.MaxHistory, GroupHistory{
			Name:       C.GoString(C.atrank_info_group_name(raw, i)),
			MaxHistory: int(C.atrank_info_group_max_history(raw, i)),
		})
	}
	return info, nil
}
