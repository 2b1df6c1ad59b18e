package rerank

import (
	"net/http"
	"strconv"
	"strings"

	atrank "github.com/atrank/atrank/bindings/go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The library's counters on GET /metrics, in the Prometheus text format. Counters (_total, the
// latency histogram) cover every model this process has served: a reload does not reset them
// (see Server.retired). Gauges describe the model serving now.
//
//	atrank_calls_total{entry}                      calls per entry point (score, score_cached, score_batch)
//	atrank_failures_total{entry,code}              failed calls per atrank error code (ATRANK_ERROR_*)
//	atrank_latency_seconds{entry}                  histogram of the successful calls' latency
//	atrank_cache_hits_total, atrank_cache_misses_total   the user-encoding cache
//	atrank_cache_entries, atrank_cache_capacity    the serving model's cache now
//	atrank_tract_plans_built_total, atrank_tract_plans   tract's shape-specialised plans
//	atrank_ort_sessions_busy, atrank_ort_sessions  ONNX Runtime sessions running a call now / held
//	atrank_model_generation                        the handle's generation (1 + reloads)
//	atrank_model_info{name,spec_version,created_by,graph_sha256,serving,atrank_version} 1
//	atrank_model_vocab_size{table}                 ids per vocabulary of the serving model

// Entries are the label values of `entry`, in the order of counters.calls.
var Entries = [3]string{"score", "score_cached", "score_batch"}

// counters are the monotonic counters summed over models.
type counters struct {
	calls                                                          [3]atrank.CallStats
	cacheHits, cacheMisses, plansBuilt, symbolicRuns, concreteRuns uint64
}

func (c *counters) add(s atrank.Stats) {
	for i, e := range [3]atrank.CallStats{s.Score, s.ScoreCached, s.ScoreBatch} {
		t := &c.calls[i]
		t.Calls += e.Calls
		for k := range t.Failures {
			t.Failures[k] += e.Failures[k]
		}
		for k := range t.LatencyCounts {
			t.LatencyCounts[k] += e.LatencyCounts[k]
		}
		t.LatencySum += e.LatencySum
	}
	c.cacheHits += s.CacheHits
	c.cacheMisses += s.CacheMisses
	c.plansBuilt += s.TractPlansBuilt
	c.symbolicRuns += s.TractSymbolicRuns
	c.concreteRuns += s.TractConcreteRuns
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descCalls    = desc("atrank_calls_total", "Scoring calls per atrank entry point, successful and failed.", "entry")
	descFailures = desc("atrank_failures_total", "Failed scoring calls per entry point and atrank error code.", "entry", "code")
	descLatency  = desc("atrank_latency_seconds", "Latency of the successful scoring calls, inside the library.", "entry")
	descHits     = desc("atrank_cache_hits_total", "score_cached calls served from a cached user encoding.")
	descMisses   = desc("atrank_cache_misses_total", "score_cached calls that ran the encoder.")
	descEntries  = desc("atrank_cache_entries", "User encodings cached by the serving model.")
	descCapacity = desc("atrank_cache_capacity", "The most user encodings the serving model caches.")
	descBuilt    = desc("atrank_tract_plans_built_total", "tract plans specialised to exact input shapes built.")
	descPlans    = desc("atrank_tract_plans", "tract shape-specialised plans held by the serving model.")
	descRuns     = desc("atrank_tract_runs_total", "tract graph runs, on the symbolic plan or a shape-specialised one.", "plan")
	descBusy     = desc("atrank_ort_sessions_busy", "ONNX Runtime sessions running a call now.")
	descSessions = desc("atrank_ort_sessions", "ONNX Runtime sessions held by the serving model.")
	descFused    = desc("atrank_tract_fused_kernels", "Graph nodes of the serving model that tract runs as atrank's fused kernels.", "kernel")
	descGen      = desc("atrank_model_generation", "Generation of the serving model (1 + successful reloads).")
	descInfo     = desc("atrank_model_info", "The serving model's identity (always 1).",
		"name", "spec_version", "created_by", "graph_sha256", "serving", "atrank_version")
	descVocab = desc("atrank_model_vocab_size", "Ids per vocabulary (embedding table) of the serving model.", "table")
)

type collector struct {
	s      *Server
	bounds []float64 // finite bucket upper bounds, seconds
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCalls, descFailures, descLatency, descHits, descMisses, descEntries,
		descCapacity, descBuilt, descPlans, descRuns, descBusy, descSessions, descFused, descGen, descInfo, descVocab} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.reloadMu.Lock() // a consistent set of models: no reload moves one mid-scrape
	defer s.reloadMu.Unlock()
	model, gen, err := s.Handle.Snapshot()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descGen, err)
		return
	}
	defer model.Close()
	cur, err := model.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descCalls, err)
		return
	}
	info, err := model.Info()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descInfo, err)
		return
	}
	s.mu.Lock()
	total := s.folded
	busy := cur.ORTSessionsBusy
	for _, m := range s.retired {
		if st, err := m.Stats(); err == nil {
			total.add(st)
			busy += st.ORTSessionsBusy
		}
	}
	s.mu.Unlock()
	total.add(cur)

	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for i, e := range total.calls {
		entry := Entries[i]
		counter(descCalls, e.Calls, entry)
		for code := 1; code < atrank.CodeSlots; code++ {
			name := atrank.Code(code).String()
			if strings.HasPrefix(name, "atrank_code(") && e.Failures[code] == 0 {
				continue // a slot no code uses (yet)
			}
			counter(descFailures, e.Failures[code], entry, name)
		}
		buckets := make(map[float64]uint64, len(c.bounds))
		var cum uint64
		for k, b := range c.bounds {
			cum += e.LatencyCounts[k]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(descLatency, e.Succeeded(), e.LatencySum.Seconds(), buckets, entry)
	}
	counter(descHits, total.cacheHits)
	counter(descMisses, total.cacheMisses)
	gauge(descEntries, cur.CacheEntries)
	gauge(descCapacity, cur.CacheCapacity)
	counter(descBuilt, total.plansBuilt)
	gauge(descPlans, cur.TractPlans)
	counter(descRuns, total.symbolicRuns, "symbolic")
	counter(descRuns, total.concreteRuns, "specialised")
	gauge(descBusy, busy)
	gauge(descSessions, cur.ORTSessions)
	gauge(descFused, cur.TractFusedAttention, "attention")
	gauge(descFused, cur.TractFusedLayerNorm, "layer_norm")
	gauge(descGen, gen)
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, info.Name,
		strconv.FormatUint(uint64(info.SpecVersion), 10), info.CreatedBy, info.GraphSHA256, info.Serving, atrank.Version())
	for _, t := range info.VocabSizes {
		gauge(descVocab, uint64(t.Size), t.Name)
	}
}

// metricsHandler serves the collector and the Go runtime's metrics.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	bounds, err := atrank.LatencyBounds()
	if err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeError(w, err) })
	}
	c := &collector{s: s}
	for _, b := range bounds[:len(bounds)-1] { // the last is +Inf, which Prometheus adds itself
		c.bounds = append(c.bounds, b.Seconds())
	}
	reg.MustRegister(c, collectors.NewGoCollector())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
