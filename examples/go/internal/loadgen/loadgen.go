// Package loadgen is the load generator behind cmd/loadtest: concurrent clients post /rerank
// requests to a rerank server, bounded in count and time, optionally reloading the model
// during the run, and report throughput, latency percentiles and failures.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrank/atrank/examples/go/internal/rerank"
)

// Sample is one request of the pool and, when known, the scores it must get back.
type Sample struct {
	Name     string
	Request  rerank.Request
	Expected []float64 // nil: not checked
	// Tolerance bounds |score - Expected| per candidate: the golden request's derived 2 D U M
	// (docs/tolerances.md), or the file's top-level tolerance in files without one.
	Tolerance float64
}

// FromPackage builds the pool from a package's golden file (spec.json's "golden", default
// golden.json): the trainer's requests, scores and per-request tolerances. It also returns
// the file's top-level tolerance (the largest per-request one).
func FromPackage(dir string) ([]Sample, float64, error) {
	var spec struct {
		Golden string `json:"golden"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "spec.json"))
	if err != nil {
		return nil, 0, err
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, 0, fmt.Errorf("%s/spec.json: %w", dir, err)
	}
	name := spec.Golden
	if name == "" {
		name = "golden.json"
	}
	path := filepath.Join(dir, name)
	if data, err = os.ReadFile(path); err != nil {
		return nil, 0, err
	}
	var g struct {
		Format    string  `json:"format"`
		Tolerance float64 `json:"tolerance"`
		Requests  []struct {
			Name        string `json:"name"`
			RequestTime int64  `json:"request_time"`
			Behaviors   []struct {
				Item      string            `json:"item"` // format 1
				ID        string            `json:"id"`   // formats 2 and 3
				Category  *string           `json:"category"`
				Action    *string           `json:"action"`
				Timestamp int64             `json:"timestamp"`
				Group     *string           `json:"group"`
				Features  map[string]string `json:"features"`
			} `json:"behaviors"`
			Candidates []string  `json:"candidates"`
			Scores     []float64 `json:"scores"`
			Tolerance  *float64  `json:"tolerance"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	if g.Format != "atrank-golden" || len(g.Requests) == 0 {
		return nil, 0, fmt.Errorf("%s: format %q with %d requests; want atrank-golden with some", path, g.Format, len(g.Requests))
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	out := make([]Sample, len(g.Requests))
	for i, r := range g.Requests {
		if len(r.Scores) != len(r.Candidates) {
			return nil, 0, fmt.Errorf("%s: request %d has %d candidates and %d scores", path, i, len(r.Candidates), len(r.Scores))
		}
		beh := make([]rerank.Behavior, len(r.Behaviors))
		for j, b := range r.Behaviors {
			item := b.Item
			if item == "" {
				item = b.ID
			}
			beh[j] = rerank.Behavior{Item: item, Category: str(b.Category), Action: str(b.Action),
				Timestamp: b.Timestamp, Group: str(b.Group), Features: b.Features}
		}
		rt := r.RequestTime
		tol := g.Tolerance
		if r.Tolerance != nil {
			tol = *r.Tolerance
		}
		out[i] = Sample{Name: r.Name, Expected: r.Scores, Tolerance: tol,
			Request: rerank.Request{Behaviors: beh, Candidates: r.Candidates, RequestTime: &rt}}
	}
	return out, g.Tolerance, nil
}

// Config bounds and shapes a run.
type Config struct {
	BaseURL     string        // e.g. http://127.0.0.1:8080
	Pool        []Sample      // cycled through
	Tolerance   float64       // when > 0, replaces every Sample.Tolerance
	N           int           // at most this many requests
	Duration    time.Duration // and at most this long
	Concurrency int           // clients
	UserEvery   int           // every k-th request names its user (cached path); 0: never
	// Reloads is how many times to POST /admin/reload, one after each N/(Reloads+1) requests;
	// the requests after that point wait until the reload has started (not finished).
	Reloads int
}

// Report is what a run measured.
type Report struct {
	Requests, Failed             int
	UserRequests                 int // requests that named their user (the cached path)
	Reloads, ReloadsFailed       int
	Elapsed                      time.Duration
	Throughput                   float64 // successful requests per second
	P50, P99, Max                time.Duration
	MinGeneration, MaxGeneration uint64
	FirstError, ReloadErrors     string
}

func (r *Report) String() string {
	return fmt.Sprintf("requests %d, failed %d, elapsed %.2fs, throughput %.1f req/s, latency p50 %.2fms p99 %.2fms max %.2fms, reloads %d (failed %d), generations %d..%d",
		r.Requests, r.Failed, r.Elapsed.Seconds(), r.Throughput, ms(r.P50), ms(r.P99), ms(r.Max),
		r.Reloads, r.ReloadsFailed, r.MinGeneration, r.MaxGeneration)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

type result struct {
	latency time.Duration
	gen     uint64
	user    bool
	err     error
}

// Run runs the load and returns its report. It stops after N requests or Duration, whichever
// comes first (requests in flight at the deadline are completed, not counted as failures
// unless they fail).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.Pool) == 0 || cfg.N <= 0 || cfg.Concurrency <= 0 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("loadgen: need a pool, N > 0, concurrency > 0 and a duration")
	}
	bodies := make([][2][]byte, len(cfg.Pool)) // [anonymous, with user]
	for i, s := range cfg.Pool {
		for k := 0; k < 2; k++ {
			req := s.Request
			if k == 1 {
				req.User = fmt.Sprintf("user-%d", i)
			}
			b, err := json.Marshal(req)
			if err != nil {
				return nil, err
			}
			bodies[i][k] = b
		}
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	var next, done atomic.Int64
	targets := make([]int, max(cfg.Reloads, 0)) // reload k is due after targets[k] requests
	started := make([]chan struct{}, len(targets))
	for k := range targets {
		targets[k] = (k + 1) * cfg.N / (cfg.Reloads + 1)
		started[k] = make(chan struct{})
	}
	results := make([][]result, cfg.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.N {
					return
				}
				// Request i starts after the last reload due before it has started, so that
				// every reload happens with requests still to come (and in flight).
				if k := sort.Search(len(targets), func(k int) bool { return targets[k] > i }) - 1; k >= 0 {
					select {
					case <-started[k]:
					case <-ctx.Done():
						return
					}
				}
				k := 0
				if cfg.UserEvery > 0 && i%cfg.UserEvery == 0 {
					k = 1
				}
				p := i % len(cfg.Pool)
				t0 := time.Now()
				gen, err := post(client, cfg.BaseURL, bodies[p][k], &cfg.Pool[p], cfg.Tolerance)
				results[w] = append(results[w], result{latency: time.Since(t0), gen: gen, user: k == 1, err: err})
				done.Add(1)
			}
		}(w)
	}
	rep := &Report{}
	var reloadWG sync.WaitGroup
	if cfg.Reloads > 0 {
		reloadWG.Add(1)
		go func() {
			defer reloadWG.Done()
			for k := range targets {
				for done.Load() < int64(targets[k]) && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				if ctx.Err() != nil {
					return
				}
				close(started[k])
				rep.Reloads++
				if err := reload(client, cfg.BaseURL); err != nil {
					rep.ReloadsFailed++
					rep.ReloadErrors += err.Error() + "; "
				}
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	cancel() // stops a reloader still waiting for its turn
	reloadWG.Wait()

	var lat []time.Duration
	rep.MinGeneration = math.MaxUint64
	for _, rs := range results {
		for _, r := range rs {
			rep.Requests++
			if r.user {
				rep.UserRequests++
			}
			if r.err != nil {
				rep.Failed++
				if rep.FirstError == "" {
					rep.FirstError = r.err.Error()
				}
				continue
			}
			lat = append(lat, r.latency)
			rep.MinGeneration = min(rep.MinGeneration, r.gen)
			rep.MaxGeneration = max(rep.MaxGeneration, r.gen)
		}
	}
	if len(lat) == 0 {
		rep.MinGeneration = 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	rep.P50, rep.P99 = percentile(lat, 50), percentile(lat, 99)
	if len(lat) > 0 {
		rep.Max = lat[len(lat)-1]
	}
	rep.Throughput = float64(len(lat)) / rep.Elapsed.Seconds()
	return rep, nil
}

func post(client *http.Client, base string, body []byte, s *Sample, override float64) (uint64, error) {
	tol := s.Tolerance
	if override > 0 {
		tol = override
	}
	resp, err := client.Post(base+"/rerank", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %d: %s", s.Name, resp.StatusCode, bytes.TrimSpace(data))
	}
	var out rerank.Response
	if err := json.Unmarshal(data, &out); err != nil {
		return 0, fmt.Errorf("%s: bad response %q: %w", s.Name, data, err)
	}
	if len(out.Scores) != len(s.Request.Candidates) {
		return 0, fmt.Errorf("%s: %d scores for %d candidates", s.Name, len(out.Scores), len(s.Request.Candidates))
	}
	for c, want := range s.Expected {
		if d := math.Abs(float64(out.Scores[c]) - want); !(d <= tol) {
			return 0, fmt.Errorf("%s candidate %d: score %g, expected %g (|diff| %.3g > %.3g)", s.Name, c, out.Scores[c], want, d, tol)
		}
	}
	return out.Generation, nil
}

func reload(client *http.Client, base string) error {
	resp, err := client.Post(base+"/admin/reload", "application/json", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reload: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	return nil
}

// Metrics are the samples of a /metrics page by series, e.g.
// `atrank_calls_total{entry="score"}` (labels as the server writes them: sorted by name).
type Metrics map[string]float64

// Scrape reads GET base/metrics (the Prometheus text format).
func Scrape(base string) (Metrics, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	out := Metrics{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[at+1:], 64)
		if at < 0 || err != nil {
			return nil, fmt.Errorf("GET /metrics: cannot read %q", line)
		}
		out[line[:at]] = v
	}
	return out, nil
}

// Delta is after[key] - before[key]; a series missing from after is an error.
func delta(before, after Metrics, key string) (float64, error) {
	v, ok := after[key]
	if !ok {
		return 0, fmt.Errorf("/metrics has no %s", key)
	}
	return v - before[key], nil
}

// CheckMetrics compares what /metrics counted between two scrapes with what the run sent:
// every request is one score or score_cached call (the ones naming a user: score_cached), each
// in the latency histogram, none failed, and the generation moved by the successful reloads.
func CheckMetrics(before, after Metrics, rep *Report) error {
	var problems []string
	expect := func(key string, want float64) {
		got, err := delta(before, after, key)
		if err != nil {
			problems = append(problems, err.Error())
		} else if got != want {
			problems = append(problems, fmt.Sprintf("%s grew by %g; the run sent %g", key, got, want))
		}
	}
	ok := float64(rep.Requests - rep.Failed)
	user := float64(rep.UserRequests)
	expect(`atrank_calls_total{entry="score_cached"}`, user)
	expect(`atrank_calls_total{entry="score"}`, float64(rep.Requests)-user)
	expect(`atrank_latency_seconds_count{entry="score"}`, ok-user)
	expect(`atrank_latency_seconds_count{entry="score_cached"}`, user)
	expect(`atrank_calls_total{entry="score_batch"}`, 0)
	var failed float64
	for k, v := range after {
		if strings.HasPrefix(k, "atrank_failures_total{") {
			failed += v - before[k]
		}
	}
	if failed != float64(rep.Failed) {
		problems = append(problems, fmt.Sprintf("atrank_failures_total grew by %g; %d requests failed", failed, rep.Failed))
	}
	expect("atrank_model_generation", float64(rep.Reloads-rep.ReloadsFailed))
	if g := after["atrank_model_generation"]; g < float64(rep.MaxGeneration) {
		problems = append(problems, fmt.Sprintf("atrank_model_generation %g is below the generation %d that answered", g, rep.MaxGeneration))
	}
	if len(problems) > 0 {
		return fmt.Errorf("/metrics disagrees with the run: %s", strings.Join(problems, "; "))
	}
	return nil
}

// CheckFailureCounted posts one request the library refuses (no candidates) and checks that
// /metrics counts it as one failed score call with ATRANK_ERROR_INVALID_ARGUMENT.
func CheckFailureCounted(base string, s *Sample) error {
	before, err := Scrape(base)
	if err != nil {
		return err
	}
	req := s.Request
	req.User = ""
	req.Candidates = []string{}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	resp, err := http.Post(base+"/rerank", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e rerank.ErrorResponse
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(data, &e) != nil || e.Code != "ATRANK_ERROR_INVALID_ARGUMENT" {
		return fmt.Errorf("a request with no candidates: HTTP %d %s; want 400 ATRANK_ERROR_INVALID_ARGUMENT", resp.StatusCode, bytes.TrimSpace(data))
	}
	after, err := Scrape(base)
	if err != nil {
		return err
	}
	for key, want := range map[string]float64{
		`atrank_failures_total{code="ATRANK_ERROR_INVALID_ARGUMENT",entry="score"}`: 1,
		`atrank_calls_total{entry="score"}`:                                         1,
		`atrank_latency_seconds_count{entry="score"}`:                               0,
	} {
		got, err := delta(before, after, key)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("after one refused request, %s grew by %g, want %g", key, got, want)
		}
	}
	return nil
}
