package rerank_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	atrank "github.com/atrank/atrank/bindings/go"
	"github.com/atrank/atrank/examples/go/internal/loadgen"
	"github.com/atrank/atrank/examples/go/internal/rerank"
)

// The handler on a real model (tests/fixtures/tiny, tract), over a real loopback listener.

var fixture = filepath.Join("..", "..", "..", "..", "tests", "fixtures", "tiny")

// copyDir copies the fixture so that a test can break it between reloads.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func start(t *testing.T, dir string) (*httptest.Server, *rerank.Server) {
	t.Helper()
	opts := []atrank.Option{atrank.WithBackend(atrank.BackendTract)}
	h, err := atrank.LoadHandle(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	s := &rerank.Server{Handle: h, Reload: func() (uint64, error) { return h.Reload(dir, opts...) }}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { ts.Close(); h.Close() })
	return ts, s
}

func do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if resp.StatusCode != http.StatusMethodNotAllowed {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: HTTP %d, body is not JSON: %q", method, url, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, out
}

func TestRerank(t *testing.T) {
	dir := copyDir(t, fixture)
	ts, _ := start(t, dir)
	pool, _, err := loadgen.FromPackage(dir)
	if err != nil {
		t.Fatal(err)
	}

	if st, out := do(t, "GET", ts.URL+"/healthz", ""); st != 200 || out["generation"] != 1.0 || out["status"] != "ok" {
		t.Errorf("healthz: %d %v", st, out)
	}
	// Golden requests, anonymous and with a user (the cached path), against the trainer's scores.
	for i, s := range pool {
		req := s.Request
		if i%2 == 1 {
			req.User = s.Name
		}
		body, _ := json.Marshal(req)
		st, out := do(t, "POST", ts.URL+"/rerank", string(body))
		if st != 200 {
			t.Fatalf("%s: HTTP %d %v", s.Name, st, out)
		}
		scores, _ := out["scores"].([]any)
		if len(scores) != len(s.Expected) || out["generation"] != 1.0 {
			t.Fatalf("%s: %v", s.Name, out)
		}
		for c, v := range scores {
			// the request's derived 2 D U M (docs/tolerances.md)
			if d := math.Abs(v.(float64) - s.Expected[c]); !(d <= s.Tolerance) {
				t.Errorf("%s candidate %d: %v, trainer %v", s.Name, c, v, s.Expected[c])
			}
		}
	}

	bad := []struct {
		name, body string
		code       string // atrank code name, or "" for a request the server refuses itself
	}{
		{"not JSON", `{"behaviors": [`, ""},
		{"unknown field", `{"candidates": ["i1"], "request_time": 1, "extra": 1}`, ""},
		{"two values", `{"candidates": ["i1"], "request_time": 1} {}`, ""},
		{"no request_time", `{"candidates": ["i1"]}`, ""},
		{"no candidates", `{"behaviors": [], "candidates": [], "request_time": 1}`, "ATRANK_ERROR_INVALID_ARGUMENT"},
		{"unknown group", `{"behaviors": [{"item": "i1", "group": "nope", "timestamp": 1}], "candidates": ["i1"], "request_time": 1}`, "ATRANK_ERROR_INVALID_ARGUMENT"},
		{"NUL in a candidate", `{"candidates": ["i\u0000"], "request_time": 1}`, "ATRANK_ERROR_INVALID_ARGUMENT"},
		{"NUL in the user", `{"user": "u\u0000", "candidates": ["i1"], "request_time": 1}`, "ATRANK_ERROR_INVALID_ARGUMENT"},
		{"too many candidates", `{"candidates": [` + strings.Repeat(`"i1",`, 10000) + `"i1"], "request_time": 1}`, "ATRANK_ERROR_INVALID_ARGUMENT"},
	}
	for _, b := range bad {
		st, out := do(t, "POST", ts.URL+"/rerank", b.body)
		msg, _ := out["error"].(string)
		if st != 400 || msg == "" || (b.code != "" && out["code"] != b.code) {
			t.Errorf("%s: HTTP %d %v; want 400 with code %q", b.name, st, out, b.code)
		} else {
			t.Logf("%s: 400 %v", b.name, out)
		}
	}
	if st, _ := do(t, "GET", ts.URL+"/rerank", ""); st != http.StatusMethodNotAllowed {
		t.Errorf("GET /rerank: HTTP %d, want 405", st)
	}
}

// TestReload: a good reload bumps the generation; a failed one answers with the library's
// error and the old model keeps serving.
func TestReload(t *testing.T) {
	dir := copyDir(t, fixture)
	ts, _ := start(t, dir)
	pool, _, err := loadgen.FromPackage(dir)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(pool[0].Request)
	if st, out := do(t, "POST", ts.URL+"/admin/reload", ""); st != 200 || out["generation"] != 2.0 {
		t.Errorf("reload: %d %v", st, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "spec.json"), []byte("{broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, out := do(t, "POST", ts.URL+"/admin/reload", "")
	if st != 500 || out["code"] != "ATRANK_ERROR_INVALID_PACKAGE" {
		t.Errorf("reload of a broken package: %d %v; want 500 ATRANK_ERROR_INVALID_PACKAGE", st, out)
	}
	if st, out := do(t, "POST", ts.URL+"/rerank", string(body)); st != 200 || out["generation"] != 2.0 {
		t.Errorf("rerank after a failed reload: %d %v; want 200 on generation 2", st, out)
	}
	if st, out := do(t, "GET", ts.URL+"/healthz", ""); st != 200 || out["generation"] != 2.0 {
		t.Errorf("healthz after a failed reload: %d %v", st, out)
	}
}

// TestLoadDuringReloads: the load generator against the handler with reloads during the run:
// every request answers with the trainer's scores, none fails.
func TestLoadDuringReloads(t *testing.T) {
	ts, _ := start(t, fixture)
	pool, _, err := loadgen.FromPackage(fixture)
	if err != nil {
		t.Fatal(err)
	}
	before, err := loadgen.Scrape(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	// each sample's own derived tolerance (Config.Tolerance 0)
	rep, err := loadgen.Run(context.Background(), loadgen.Config{BaseURL: ts.URL, Pool: pool,
		N: 300, Duration: 2 * time.Minute, Concurrency: 4, Reloads: 3, UserEvery: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	if rep.Failed != 0 || rep.Requests != 300 || rep.Reloads != 3 || rep.ReloadsFailed != 0 {
		t.Errorf("want 300 requests, 3 reloads, nothing failed: %s; first error %s %s", rep, rep.FirstError, rep.ReloadErrors)
	}
	if rep.MinGeneration < 1 || rep.MaxGeneration > 4 {
		t.Errorf("generations %d..%d outside 1..4", rep.MinGeneration, rep.MaxGeneration)
	}
	// The library's counters on /metrics cover every generation that served the run.
	after, err := loadgen.Scrape(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := loadgen.CheckMetrics(before, after, rep); err != nil {
		t.Error(err)
	}
	if err := loadgen.CheckFailureCounted(ts.URL, &pool[0]); err != nil {
		t.Error(err)
	}
	var buf bytes.Buffer
	buf.WriteString(rep.String())
	if !strings.Contains(buf.String(), "p99") {
		t.Errorf("report lacks p99: %s", buf.String())
	}
}

// TestMetricsPage: /metrics in the Prometheus text format with the model's identity, after
// real calls: the counters and the histogram agree with them.
func TestMetricsPage(t *testing.T) {
	ts, _ := start(t, fixture)
	pool, _, err := loadgen.FromPackage(fixture)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(pool[0].Request)
	for i := 0; i < 3; i++ {
		resp, err := http.Post(ts.URL+"/rerank", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	spec := struct {
		Name      string `json:"name"`
		CreatedBy string `json:"created_by"`
		Tables    map[string]struct {
			Size int `json:"size"`
		} `json:"tables"`
	}{}
	data, err := os.ReadFile(filepath.Join(fixture, "spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &spec); err != nil || len(spec.Tables) == 0 {
		t.Fatalf("%s/spec.json: %v (%d tables)", fixture, err, len(spec.Tables))
	}
	wants := []string{
		"# TYPE atrank_calls_total counter",
		"# TYPE atrank_latency_seconds histogram",
		`atrank_calls_total{entry="score"} 3`,
		`atrank_latency_seconds_count{entry="score"} 3`,
		`atrank_latency_seconds_bucket{entry="score",le="+Inf"} 3`,
		`atrank_failures_total{code="ATRANK_ERROR_INVALID_ARGUMENT",entry="score"} 0`,
		"atrank_model_generation 1",
		"# TYPE atrank_tract_fused_kernels gauge",
		`atrank_tract_fused_kernels{kernel="attention"} `,
		`atrank_tract_fused_kernels{kernel="layer_norm"} `,
		`name="` + spec.Name + `"`,
		`created_by="` + spec.CreatedBy + `"`,
		`serving="tract"`,
	}
	// Every table of the spec (format 3: tables.<name>.size) with its size.
	for name, table := range spec.Tables {
		wants = append(wants, fmt.Sprintf("atrank_model_vocab_size{table=%q} %d\n", name, table.Size))
	}
	for _, want := range wants {
		if !strings.Contains(string(page), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", page)
	}
}
