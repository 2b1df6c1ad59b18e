package atrank

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestStatsCountCalls checks the counters against the calls made here, on every package and
// backend: successes in the histogram, failures by code, each entry point on its own, the
// encoding cache on split packages, and no count lost by concurrent goroutines.
func TestStatsCountCalls(t *testing.T) {
	for _, p := range packages(t) {
		for _, b := range backends {
			t.Run(p.name+"/"+b.String(), func(t *testing.T) {
				m := load(t, p.dir, b)
				r := &p.golden.Requests[0]
				const n, goroutines, each = 5, 4, 20
				for i := 0; i < n; i++ {
					if _, err := m.Score(r.behaviors(), r.Candidates, r.RequestTime); err != nil {
						t.Fatalf("Score: %v", err)
					}
				}
				tooMany := make([]string, p.maxCands+1)
				for i := range tooMany {
					tooMany[i] = r.Candidates[0]
				}
				_, err := m.Score(r.behaviors(), tooMany, r.RequestTime)
				expectCode(t, "too many candidates", err, InvalidArgument, "")
				for i := 0; i < 2; i++ {
					if _, err := m.ScoreCached("u1", r.behaviors(), r.Candidates, r.RequestTime); err != nil {
						t.Fatalf("ScoreCached: %v", err)
					}
				}
				req := Request{Behaviors: r.behaviors(), Candidates: r.Candidates, RequestTime: r.RequestTime}
				if _, err := m.ScoreBatch([]Request{req, req, req}); err != nil {
					t.Fatalf("ScoreBatch: %v", err)
				}
				var wg sync.WaitGroup
				for g := 0; g < goroutines; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < each; i++ {
							if _, err := m.Score(r.behaviors(), r.Candidates, r.RequestTime); err != nil {
								t.Errorf("concurrent Score: %v", err)
								return
							}
						}
					}()
				}
				wg.Wait()

				s, err := m.Stats()
				if err != nil {
					t.Fatalf("Stats: %v", err)
				}
				wantScores := uint64(n + goroutines*each)
				if s.Score.Calls != wantScores+1 || s.Score.Succeeded() != wantScores {
					t.Errorf("Score: %d calls, %d in the histogram; want %d and %d", s.Score.Calls, s.Score.Succeeded(), wantScores+1, wantScores)
				}
				if s.Score.Failures[InvalidArgument] != 1 || s.Score.Failed() != 1 {
					t.Errorf("Score failures: %v; want 1 under InvalidArgument", s.Score.Failures)
				}
				if s.Score.LatencySum <= 0 {
					t.Errorf("Score latency sum %v", s.Score.LatencySum)
				}
				if s.ScoreCached.Calls != 2 || s.ScoreBatch.Calls != 1 || s.ScoreBatch.Succeeded() != 1 {
					t.Errorf("ScoreCached %d calls (want 2), ScoreBatch %d calls / %d ok (want 1)", s.ScoreCached.Calls, s.ScoreBatch.Calls, s.ScoreBatch.Succeeded())
				}
				if tot := s.Total(); tot.Calls != wantScores+1+2+1 {
					t.Errorf("Total().Calls = %d", tot.Calls)
				}
				wantHits, wantMisses := uint64(0), uint64(0)
				if p.split {
					wantHits, wantMisses = 1, 1
				}
				if s.CacheHits != wantHits || s.CacheMisses != wantMisses {
					t.Errorf("cache hits/misses %d/%d; want %d/%d", s.CacheHits, s.CacheMisses, wantHits, wantMisses)
				}
				if b == BackendORT {
					if s.ORTSessions == 0 || s.ORTSessionsBusy != 0 || s.TractSymbolicRuns+s.TractConcreteRuns != 0 {
						t.Errorf("ORT: %d sessions, %d busy, %d tract runs", s.ORTSessions, s.ORTSessionsBusy, s.TractSymbolicRuns+s.TractConcreteRuns)
					}
				} else if s.TractPlansBuilt == 0 || s.ORTSessions != 0 {
					t.Errorf("tract: %d plans built, %d ORT sessions", s.TractPlansBuilt, s.ORTSessions)
				}

				h, err := NewHandle(m)
				if err != nil {
					t.Fatalf("NewHandle: %v", err)
				}
				defer h.Close()
				if _, err := h.Score(r.behaviors(), r.Candidates, r.RequestTime); err != nil {
					t.Fatalf("Handle.Score: %v", err)
				}
				hs, gen, err := h.Stats()
				if err != nil || gen != 1 || hs.Score.Calls != s.Score.Calls+1 {
					t.Errorf("Handle.Stats: %d score calls, generation %d, %v; want %d, 1", hs.Score.Calls, gen, err, s.Score.Calls+1)
				}
			})
		}
	}
}

func TestLatencyBounds(t *testing.T) {
	bounds, err := LatencyBounds()
	if err != nil {
		t.Fatal(err)
	}
	if bounds[0].Microseconds() != 50 || bounds[LatencyBuckets-2].Seconds() != 1 {
		t.Errorf("bounds %v", bounds)
	}
	for i := 1; i < LatencyBuckets; i++ {
		if bounds[i] <= bounds[i-1] {
			t.Errorf("bounds not increasing at %d: %v", i, bounds)
		}
	}
}

// atvKeys is the key count n of a format-3 atv file (docs/package-format-v3.md), read from its
// header after checking the magic and that the file is exactly 32 + 8 (n + 1) + key_bytes bytes.
func atvKeys(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 40 || string(data[:8]) != "ATRVOC01" {
		t.Fatalf("%s is not an atv file", path)
	}
	n, keyBytes := binary.LittleEndian.Uint64(data[8:]), binary.LittleEndian.Uint64(data[16:])
	if n > uint64(len(data)-32)/8-1 || 32+8*(n+1)+keyBytes != uint64(len(data)) {
		t.Fatalf("%s: header (n %d, key_bytes %d) does not match the file's %d bytes", path, n, keyBytes, len(data))
	}
	return int(n)
}

// TestInfo compares Model.Info with the package as read here: spec.json, the vocabulary atv
// files' headers and the graph file's SHA-256.
func TestInfo(t *testing.T) {
	type table struct {
		Vocab string `json:"vocab"`
		Size  int    `json:"size"`
	}
	type infoSpec struct {
		Name         string           `json:"name"`
		SpecVersion  uint32           `json:"spec_version"`
		CreatedBy    string           `json:"created_by"`
		InputMapping json.RawMessage  `json:"input_mapping"`
		Tables       map[string]table `json:"tables"`
		Graph        struct {
			File string `json:"file"`
		} `json:"graph"`
		Groups []struct {
			Name       string `json:"name"`
			MaxHistory int    `json:"max_history"`
		} `json:"groups"`
		Limits struct {
			MaxCandidates int `json:"max_candidates"`
			MaxBehaviors  int `json:"max_behaviors"`
		} `json:"limits"`
	}
	for _, p := range packages(t) {
		t.Run(p.name, func(t *testing.T) {
			var spec infoSpec
			readJSON(t, filepath.Join(p.dir, "spec.json"), &spec)
			info, err := load(t, p.dir, BackendTract).Info()
			if err != nil {
				t.Fatal(err)
			}
			graph, err := os.ReadFile(filepath.Join(p.dir, spec.Graph.File))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(graph)
			if info.Name != spec.Name || info.SpecVersion != spec.SpecVersion || info.CreatedBy != spec.CreatedBy ||
				info.GraphSHA256 != hex.EncodeToString(sum[:]) || info.Serving != "tract" ||
				info.MaxCandidates != spec.Limits.MaxCandidates || info.MaxBehaviors != spec.Limits.MaxBehaviors {
				t.Errorf("Info %+v disagrees with spec.json %+v", info, spec)
			}
			// input_mapping: the spec's object, compared as JSON values ("" when it has none).
			var want, got any
			if len(spec.InputMapping) > 0 {
				if err := json.Unmarshal(spec.InputMapping, &want); err != nil {
					t.Fatal(err)
				}
			}
			if info.InputMapping != "" {
				if err := json.Unmarshal([]byte(info.InputMapping), &got); err != nil {
					t.Fatalf("InputMapping is not JSON: %v", err)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("InputMapping %q, spec.json has %s", info.InputMapping, spec.InputMapping)
			}
			if len(info.MaxHistory) != len(spec.Groups) {
				t.Fatalf("%d groups, spec has %d", len(info.MaxHistory), len(spec.Groups))
			}
			for i, g := range spec.Groups {
				if info.MaxHistory[i] != (GroupHistory{g.Name, g.MaxHistory}) {
					t.Errorf("group %d: %+v, spec %s/%d", i, info.MaxHistory[i], g.Name, g.MaxHistory)
				}
			}
			if len(info.VocabSizes) != len(spec.Tables) {
				t.Errorf("%d tables, spec has %d", len(info.VocabSizes), len(spec.Tables))
			}
			for _, ts := range info.VocabSizes {
				tab, ok := spec.Tables[ts.Name]
				if !ok {
					t.Errorf("table %q is not in spec.json", ts.Name)
					continue
				}
				want := atvKeys(t, filepath.Join(p.dir, tab.Vocab))
				if ts.Size != want || tab.Size != want {
					t.Errorf("table %s: %d ids, spec size %d, %s holds %d keys", ts.Name, ts.Size, tab.Size, tab.Vocab, want)
				}
			}
		})
	}
}

// cpuHasAVX2FMA reports whether /proc/cpuinfo lists avx2 and fma (atrank's tract kernels need
// both; without them nothing is fused).
func cpuHasAVX2FMA(t *testing.T) bool {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatalf("reading /proc/cpuinfo: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "flags") {
			fields := strings.Fields(line)
			return slices.Contains(fields, "avx2") && slices.Contains(fields, "fma")
		}
	}
	return false
}

// TestTractFusion: WithTractFusion(FuseLayerNorm) fuses every package's layer norms on tract
// (on a CPU with AVX2 and FMA) and no attention, FuseNone fuses nothing, ONNX Runtime counts 0;
// the scores stay within the golden tolerance; an unknown flag is refused.
func TestTractFusion(t *testing.T) {
	cpu := cpuHasAVX2FMA(t)
	for _, p := range packages(t) {
		for _, b := range backends {
			t.Run(p.name+"/"+b.String(), func(t *testing.T) {
				ln := load(t, p.dir, b, WithTractFusion(FuseLayerNorm))
				none := load(t, p.dir, b, WithTractFusion(FuseNone))
				s, err := ln.Stats()
				if err != nil {
					t.Fatal(err)
				}
				s0, err := none.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if s0.TractFusedAttention != 0 || s0.TractFusedLayerNorm != 0 || s.TractFusedAttention != 0 {
					t.Errorf("fused with the flag off: none %+v, layer norm only %+v", s0, s)
				}
				if b == BackendTract && cpu && s.TractFusedLayerNorm < 2 {
					t.Errorf("tract, FuseLayerNorm: %d layer norms fused", s.TractFusedLayerNorm)
				}
				if b != BackendTract && s.TractFusedLayerNorm != 0 {
					t.Errorf("%s: %d layer norms fused", b, s.TractFusedLayerNorm)
				}
				for i := range p.golden.Requests {
					r := &p.golden.Requests[i]
					got, err := ln.Score(r.behaviors(), r.Candidates, r.RequestTime)
					if err != nil {
						t.Fatalf("Score %s: %v", r.Name, err)
					}
					// two float32 evaluations of the request's logits, within its derived 2 D U M
					// (docs/tolerances.md)
					checkGolden(t, "fused layer norms", r, got, r.tol)
				}
			})
		}
	}
	_, err := Load(packages(t)[0].dir, WithBackend(BackendTract), WithTractFusion(4))
	expectCode(t, "WithTractFusion(4)", err, InvalidArgument, "fusion is 4")
}
