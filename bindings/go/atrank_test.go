package atrank

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	header, abi := HeaderVersion()
	if got := Version(); got != header {
		t.Errorf("library version %q differs from atrank.h's %q (stale header or library?)", got, header)
	}
	if got := ABIVersion(); got != abi {
		t.Errorf("library ABI version %d differs from atrank.h's %d", got, abi)
	}
	if err := CheckVersion(); err != nil {
		t.Error(err)
	}
	if InvalidArgument.String() != "ATRANK_ERROR_INVALID_ARGUMENT" || Code(99).String() != "atrank_code(99)" {
		t.Errorf("Code.String: %s, %s", InvalidArgument, Code(99))
	}
}

// TestGolden scores every golden request of every package on every backend, through
// Model.Score, Model.ScoreCached (twice: the second is a cache hit on split-graph packages)
// and Handle.Score, against the trainer's scores in golden.json.
func TestGolden(t *testing.T) {
	for _, p := range packages(t) {
		for _, b := range backends {
			t.Run(p.name+"/"+b.String(), func(t *testing.T) {
				m := load(t, p.dir, b)
				if got, err := m.Backend(); err != nil || got != b {
					t.Errorf("Backend() = %v, %v; want %v", got, err, b)
				}
				if got, err := m.MaxCandidates(); err != nil || got != p.maxCands {
					t.Errorf("MaxCandidates() = %v, %v; want spec.json's %d", got, err, p.maxCands)
				}
				wantServing := ServingTract
				if b == BackendORT {
					wantServing = ServingORTCPU
				}
				if got, err := m.Serving(); err != nil || got != wantServing {
					t.Errorf("Serving() = %v, %v; want %v", got, err, wantServing)
				}
				h, err := NewHandle(m)
				if err != nil {
					t.Fatalf("NewHandle: %v", err)
				}
				defer h.Close()
				maxDiff := 0.0
				for i := range p.golden.Requests {
					r := &p.golden.Requests[i]
					beh := r.behaviors()
					scores, err := m.Score(beh, r.Candidates, r.RequestTime)
					if err != nil {
						t.Errorf("request %d (%s): %v", i, r.Name, err)
						continue
					}
					maxDiff = math.Max(maxDiff, checkGolden(t, fmt.Sprintf("Score request %d", i), r, scores, r.tol))
					for round := 0; round < 2; round++ {
						cached, err := m.ScoreCached("user-"+r.Name, beh, r.Candidates, r.RequestTime)
						if err != nil {
							t.Errorf("ScoreCached request %d (%s): %v", i, r.Name, err)
							continue
						}
						checkGolden(t, fmt.Sprintf("ScoreCached round %d request %d", round, i), r, cached, r.tol)
					}
					hs, err := h.Score(beh, r.Candidates, r.RequestTime)
					if err != nil {
						t.Errorf("Handle.Score request %d (%s): %v", i, r.Name, err)
						continue
					}
					if !equalScores(hs, scores) {
						t.Errorf("Handle.Score request %d (%s) = %v, Model.Score %v", i, r.Name, hs, scores)
					}
				}
				t.Logf("%s on %s: %d requests, max |diff| vs trainer %.3g (tolerances up to %.3g)", p.name, b, len(p.golden.Requests), maxDiff, p.golden.Tolerance)
			})
		}
	}
}

// TestCacheEqualsUncached: on the split-graph fixture, cached scores equal uncached ones for
// hits, misses and a changed history under the same user key.
func TestCacheEqualsUncached(t *testing.T) {
	p := openPackage(t, "tiny-multigroup", multiDir)
	if !p.split {
		t.Fatalf("%s has no encoder/scorer graphs; the cache test needs them", p.dir)
	}
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) {
			m := load(t, p.dir, b, WithCacheCapacity(4))
			off := load(t, p.dir, b, WithCacheCapacity(0))
			for round := 0; round < 3; round++ {
				for i := range p.golden.Requests {
					r := &p.golden.Requests[i]
					beh := r.behaviors()
					// Two float32 evaluations of one request's logits: its derived 2 D U M, or
					// bound_any_request once the request is no golden one (docs/tolerances.md).
					tol := r.tol
					if round == 2 && len(beh) > 1 { // same key, shorter history: must not hit
						beh = beh[:len(beh)-1]
						tol = p.golden.anyRequestTolerance(t)
					}
					plain, err := m.Score(beh, r.Candidates, r.RequestTime)
					if err != nil {
						t.Fatalf("Score %s: %v", r.Name, err)
					}
					// One key for all users: a cache that ignored the history would fail here.
					cached, err := m.ScoreCached("same-key", beh, r.Candidates, r.RequestTime)
					if err != nil {
						t.Fatalf("ScoreCached %s: %v", r.Name, err)
					}
					uncached, err := off.ScoreCached("same-key", beh, r.Candidates, r.RequestTime)
					if err != nil {
						t.Fatalf("ScoreCached (cache off) %s: %v", r.Name, err)
					}
					for c := range plain {
						if d := math.Abs(float64(plain[c] - cached[c])); !(d <= tol) {
							t.Errorf("round %d %s candidate %d: cached %.9g, uncached %.9g", round, r.Name, c, cached[c], plain[c])
						}
						if d := math.Abs(float64(plain[c] - uncached[c])); !(d <= tol) {
							t.Errorf("round %d %s candidate %d: cache off %.9g, Score %.9g", round, r.Name, c, uncached[c], plain[c])
						}
					}
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	missing := "/nonexistent/atrank-no-such-package"
	_, err := Load(missing, WithBackend(BackendTract))
	expectCode(t, "nonexistent package", err, IO, missing)
	if !errors.Is(err, ErrIO) || errors.Is(err, ErrInvalidPackage) {
		t.Errorf("errors.Is with the sentinels: %v", err)
	}

	_, err = Load("bad\x00dir", WithBackend(BackendTract))
	expectCode(t, "NUL in package_dir", err, InvalidArgument, "package_dir")

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "spec.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad, WithBackend(BackendTract))
	expectCode(t, "malformed spec.json", err, InvalidPackage, "spec")

	_, err = Load(tinyDir, WithBackend(Backend(7)))
	expectCode(t, "unknown backend 7", err, InvalidArgument, "backend 7")
	_, err = Load(tinyDir, WithBackend(BackendTract), WithGPUPolicy(GPUPolicy(5)))
	expectCode(t, "GPU policy 5", err, InvalidArgument, "policy 5")
	_, err = Load(tinyDir, WithBackend(BackendTract), WithIntraThreads(0))
	expectCode(t, "0 intra threads", err, InvalidArgument, "threads")
	_, err = Load(tinyDir, WithBackend(BackendTract), WithIntraThreads(-1))
	expectCode(t, "-1 intra threads", err, InvalidArgument, "intra threads")
	for _, n := range []int{0, 65} {
		_, err = Load(tinyDir, WithBackend(BackendTract), WithSessions(n))
		expectCode(t, fmt.Sprintf("%d sessions", n), err, InvalidArgument, "sessions")
	}
	_, err = Load(tinyDir, WithBackend(BackendTract), WithCacheCapacity(-1))
	expectCode(t, "negative cache", err, InvalidArgument, "cache")
	_, err = Load(tinyDir, WithBackend(BackendTract), WithVerifyHashes(VerifyHashes(2)))
	expectCode(t, "verify_hashes 2", err, InvalidArgument, "verify 2")
	_, err = Load(tinyDir, WithBackend(BackendTract), WithORTLibrary("a\x00b"))
	expectCode(t, "NUL in ORT path", err, InvalidArgument, "ONNX Runtime library")

	// tract has no GPU: strict fails.
	_, err = Load(tinyDir, WithBackend(BackendTract), WithGPUPolicy(GPUStrict))
	expectCode(t, "tract strict GPU", err, BackendUnavailable, "strict")
	m := load(t, tinyDir, BackendTract, WithGPUPolicy(GPUPermissive), WithIntraThreads(2), WithCacheCapacity(8))
	if s, err := m.Serving(); err != nil || s != ServingTract {
		t.Errorf("tract permissive GPU: Serving() = %v, %v; want tract", s, err)
	}

	if b, err := ParseBackend("tract"); err != nil || b != BackendTract {
		t.Errorf("ParseBackend(tract) = %v, %v", b, err)
	}
	_, err = ParseBackend("cuda")
	expectCode(t, "ParseBackend(cuda)", err, InvalidArgument, "cuda")
}

// TestVerifyHashes: both settings load; one flipped byte in a small file (always hashed) is
// refused under both, naming the file.
func TestVerifyHashes(t *testing.T) {
	for _, v := range []VerifyHashes{VerifySmall, VerifyAll} {
		load(t, tinyDir, BackendTract, WithVerifyHashes(v))
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(tinyDir)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vocab", "item_id.atv")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0x40 // a key byte
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range []VerifyHashes{VerifySmall, VerifyAll} {
		_, err := Load(dir, WithBackend(BackendTract), WithVerifyHashes(v))
		expectCode(t, "flipped byte, verify "+v.String(), err, InvalidPackage, "vocab/item_id.atv: SHA-256")
	}
}

// TestGPUPolicyORT: with the CPU ONNX Runtime (or no usable CUDA) strict fails naming CUDA
// and permissive serves on the CPU; where CUDA works, both serve on CUDA.
func TestGPUPolicyORT(t *testing.T) {
	opts := backendOptions(t, BackendORT)
	m, err := Load(tinyDir, append(opts, WithGPUPolicy(GPUStrict))...)
	if err == nil {
		s, _ := m.Serving()
		m.Close()
		if s != ServingORTCUDA {
			t.Errorf("strict GPU loaded but serves on %v", s)
		}
		t.Logf("strict GPU: CUDA is available here")
	} else {
		expectCode(t, "ORT strict GPU without CUDA", err, BackendUnavailable, "CUDA")
	}
	m = load(t, tinyDir, BackendORT, WithGPUPolicy(GPUPermissive))
	s, err := m.Serving()
	if err != nil || (s != ServingORTCPU && s != ServingORTCUDA) {
		t.Errorf("permissive GPU: Serving() = %v, %v", s, err)
	}
	t.Logf("permissive GPU serves on %v", s)
}

func TestScoreErrors(t *testing.T) {
	hist := []Behavior{{Item: "i1", Action: "like", Timestamp: 1000000000}, {Item: "i7", Timestamp: 1000003600}}
	cands := []string{"i1", "i2", "no-such-item"}
	const now = 1000086400
	p := openPackage(t, "tiny", tinyDir)
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) {
			m := load(t, tinyDir, b)
			h, err := NewHandle(m)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			type scorer struct {
				name  string
				score func(beh []Behavior, cands []string) ([]float32, error)
			}
			for _, s := range []scorer{
				{"Model.Score", func(beh []Behavior, c []string) ([]float32, error) { return m.Score(beh, c, now) }},
				{"Model.ScoreCached", func(beh []Behavior, c []string) ([]float32, error) { return m.ScoreCached("u", beh, c, now) }},
				{"Handle.Score", func(beh []Behavior, c []string) ([]float32, error) { return h.Score(beh, c, now) }},
				{"Handle.ScoreCached", func(beh []Behavior, c []string) ([]float32, error) { return h.ScoreCached("u", beh, c, now) }},
			} {
				_, err := s.score(hist, nil)
				expectCode(t, s.name+": no candidates", err, InvalidArgument, "candidates")
				_, err = s.score(hist, []string{"i1", "\xff\xfe"})
				expectCode(t, s.name+": invalid UTF-8 candidate", err, InvalidUTF8, "candidates[1]")
				_, err = s.score([]Behavior{hist[0], {Item: "\xc3\x28", Timestamp: 1}}, cands)
				expectCode(t, s.name+": invalid UTF-8 item", err, InvalidUTF8, "behaviors[1].item")
				_, err = s.score(hist, []string{"i1", "a\x00b"})
				expectCode(t, s.name+": NUL in a candidate", err, InvalidArgument, "candidates[1]")
				_, err = s.score([]Behavior{{Item: "i1", Features: []Feature{{Name: "category", Value: "x\x00"}}}}, cands)
				expectCode(t, s.name+": NUL in a feature", err, InvalidArgument, "behaviors[0].features[0].value")
				_, err = s.score([]Behavior{{Item: "i1", Group: "no-such-group"}}, cands)
				expectCode(t, s.name+": unknown group", err, InvalidArgument, "no-such-group")
				many := make([]string, p.maxCands+1)
				for i := range many {
					many[i] = cands[i%len(cands)]
				}
				_, err = s.score(hist, many)
				expectCode(t, fmt.Sprintf("%s: %d candidates (limit %d)", s.name, len(many), p.maxCands), err, InvalidArgument, "candidates")
				scores, err := s.score(nil, cands)
				if err != nil {
					t.Errorf("%s: empty history: %v", s.name, err)
				}
				for i, v := range scores {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Errorf("%s: empty history: score %d is not finite: %g", s.name, i, v)
					}
				}
			}
			_, err = m.ScoreCached("key\x00", hist, cands, now)
			expectCode(t, "NUL in the user key", err, InvalidArgument, "user_key")
		})
	}
}

func TestMultigroupFeatures(t *testing.T) {
	// A caller feature overrides the catalog: scores change when a behavior's features do.
	m := load(t, multiDir, BackendTract)
	cands := []string{"i1", "i40", "i77"}
	base := []Behavior{{Item: "i3", Group: "item", Action: "click", Timestamp: 1300000000},
		{Item: "q1_0", Group: "query", Action: "search", Timestamp: 1300000100},
		{Item: "cp3_0", Group: "coupon", Action: "claim", Timestamp: 1300000200}}
	plain, err := m.Score(base, cands, 1300086400)
	if err != nil {
		t.Fatal(err)
	}
	withFeat := append([]Behavior(nil), base...)
	withFeat[0].Features = FeaturesFromMap(map[string]string{"shop": "s25", "category": "c3"})
	if withFeat[0].Features[0].Name != "category" {
		t.Errorf("FeaturesFromMap is not sorted: %v", withFeat[0].Features)
	}
	feat, err := m.Score(withFeat, cands, 1300086400)
	if err != nil {
		t.Fatal(err)
	}
	if equalScores(plain, feat) {
		t.Errorf("features {shop: s25, category: c3} on behavior 0 changed no score: %v", plain)
	}
}

// TestConcurrentScoring: 8 goroutines score the golden requests on one model and get exactly
// the scores of a sequential pass.
func TestConcurrentScoring(t *testing.T) {
	for _, p := range packages(t) {
		for _, b := range backends {
			t.Run(p.name+"/"+b.String(), func(t *testing.T) {
				m := load(t, p.dir, b, WithSessions(3)) // a pool of 3 on ORT; tract ignores it
				reqs := p.golden.Requests
				want := make([][]float32, len(reqs))
				for i := range reqs {
					s, err := m.Score(reqs[i].behaviors(), reqs[i].Candidates, reqs[i].RequestTime)
					if err != nil {
						t.Fatalf("sequential request %d (%s): %v", i, reqs[i].Name, err)
					}
					want[i] = s
				}
				const goroutines, rounds = 8, 2
				var wg sync.WaitGroup
				errs := make(chan error, goroutines)
				for w := 0; w < goroutines; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for round := 0; round < rounds; round++ {
							for k := range reqs {
								i := (k + w) % len(reqs) // each goroutine starts elsewhere
								r := &reqs[i]
								got, err := m.Score(r.behaviors(), r.Candidates, r.RequestTime)
								if err != nil {
									errs <- fmt.Errorf("goroutine %d round %d request %d (%s): %w", w, round, i, r.Name, err)
									return
								}
								if !equalScores(got, want[i]) {
									errs <- fmt.Errorf("goroutine %d round %d request %d (%s): %v, sequential %v", w, round, i, r.Name, got, want[i])
									return
								}
							}
						}
					}(w)
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			})
		}
	}
}

// TestClose: Close waits for calls in flight; every call either completes correctly or
// returns ErrClosed; calls after Close return ErrClosed; Close twice is harmless.
func TestClose(t *testing.T) {
	p := openPackage(t, "tiny", tinyDir)
	r := &p.golden.Requests[0]
	beh := r.behaviors()
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) {
			m, err := Load(tinyDir, backendOptions(t, b)...)
			if err != nil {
				t.Fatal(err)
			}
			want, err := m.Score(beh, r.Candidates, r.RequestTime)
			if err != nil {
				t.Fatal(err)
			}
			h, err := NewHandle(m)
			if err != nil {
				t.Fatal(err)
			}
			var ok, closed atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			start := make(chan struct{})
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					<-start
					for {
						var got []float32
						var err error
						if w%2 == 0 {
							got, err = m.Score(beh, r.Candidates, r.RequestTime)
						} else {
							got, err = h.Score(beh, r.Candidates, r.RequestTime)
						}
						switch {
						case errors.Is(err, ErrClosed):
							closed.Add(1)
							return
						case err != nil:
							errs <- fmt.Errorf("goroutine %d: %w", w, err)
							return
						case !equalScores(got, want):
							errs <- fmt.Errorf("goroutine %d: %v, want %v", w, got, want)
							return
						}
						ok.Add(1)
					}
				}(w)
			}
			close(start)
			for ok.Load() < 8 {
				runtime.Gosched()
			}
			if err := m.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			// The handle holds its own reference: it still scores after the model's Close.
			if got, err := h.Score(beh, r.Candidates, r.RequestTime); err != nil || !equalScores(got, want) {
				t.Errorf("Handle.Score after Model.Close: %v, %v", got, err)
			}
			cur, err := h.Current()
			if err != nil {
				t.Fatal(err)
			}
			h.Close()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if closed.Load() != 4 {
				t.Errorf("%d goroutines saw ErrClosed, want 4", closed.Load())
			}
			t.Logf("%d calls completed before Close", ok.Load())
			// Current's model outlives the handle.
			if got, err := cur.Score(beh, r.Candidates, r.RequestTime); err != nil || !equalScores(got, want) {
				t.Errorf("Current().Score after Handle.Close: %v, %v", got, err)
			}
			cur.Close()
			for _, call := range []func() error{
				func() error { _, err := m.Score(beh, r.Candidates, r.RequestTime); return err },
				func() error { _, err := m.ScoreCached("u", beh, r.Candidates, r.RequestTime); return err },
				func() error { _, err := m.Backend(); return err },
				func() error { _, err := m.Serving(); return err },
				func() error { _, err := m.MaxCandidates(); return err },
				func() error { _, err := NewHandle(m); return err },
				func() error { _, err := h.Score(beh, r.Candidates, r.RequestTime); return err },
				func() error { _, err := h.ScoreCached("u", beh, r.Candidates, r.RequestTime); return err },
				func() error { _, err := h.Generation(); return err },
				func() error { _, err := h.Current(); return err },
				func() error { _, _, err := h.Snapshot(); return err },
				func() error { _, err := h.Reload(tinyDir, WithBackend(BackendTract)); return err },
				func() error { _, err := cur.Score(beh, r.Candidates, r.RequestTime); return err },
			} {
				if err := call(); !errors.Is(err, ErrClosed) {
					t.Errorf("call after Close: %v, want ErrClosed", err)
				}
			}
			if err := m.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if err := h.Close(); err != nil {
				t.Errorf("second Handle.Close: %v", err)
			}
		})
	}
}

// TestHandleReload: 4 goroutines score through one handle (plain and cached) while the main
// goroutine reloads 6 times, every other reload failing; no call may fail, scores stay the
// trainer's, and the generation counts the successful reloads.
func TestHandleReload(t *testing.T) {
	for _, p := range []testPackage{openPackage(t, "tiny", tinyDir), openPackage(t, "tiny-multigroup", multiDir)} {
		for _, b := range backends {
			t.Run(p.name+"/"+b.String(), func(t *testing.T) {
				opts := backendOptions(t, b)
				h, err := LoadHandle(p.dir, opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer h.Close()
				if g, err := h.Generation(); err != nil || g != 1 {
					t.Fatalf("new handle: generation %d, %v; want 1", g, err)
				}
				var stop atomic.Bool
				var calls, failures atomic.Int64
				var wg sync.WaitGroup
				var mu sync.Mutex
				var firstErr error
				reqs := p.golden.Requests
				for w := 0; w < 4; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for k := 0; !stop.Load() || k < 20; k++ {
							r := &reqs[(k+w)%len(reqs)]
							var s []float32
							var err error
							if w%2 == 0 {
								s, err = h.Score(r.behaviors(), r.Candidates, r.RequestTime)
							} else {
								s, err = h.ScoreCached(fmt.Sprint("user", w), r.behaviors(), r.Candidates, r.RequestTime)
							}
							calls.Add(1)
							if err == nil {
								for c := range s {
									if !(math.Abs(float64(s[c])-r.Scores[c]) <= r.tol) {
										err = fmt.Errorf("%s candidate %d: %g, trainer %g", r.Name, c, s[c], r.Scores[c])
										break
									}
								}
							}
							if err != nil {
								failures.Add(1)
								mu.Lock()
								if firstErr == nil {
									firstErr = err
								}
								mu.Unlock()
							}
						}
					}(w)
				}
				missing := "/nonexistent/atrank-reload"
				var gen uint64
				for i := 0; i < 6; i++ {
					if i%2 == 0 {
						_, err := h.Reload(missing, opts...)
						expectCode(t, "reload from a missing package", err, IO, missing)
					} else {
						g, err := h.Reload(p.dir, opts...)
						if err != nil {
							t.Errorf("reload %d: %v", i, err)
						}
						gen = g
					}
					time.Sleep(5 * time.Millisecond) // let the scorers run on each generation
				}
				stop.Store(true)
				wg.Wait()
				if g, err := h.Generation(); err != nil || g != 4 || gen != 4 {
					t.Errorf("generation %d (Reload said %d), %v; want 4 after 3 good reloads", g, gen, err)
				}
				if failures.Load() != 0 {
					t.Errorf("%d of %d calls failed during reloads; first: %v", failures.Load(), calls.Load(), firstErr)
				}
				t.Logf("%d calls from 4 goroutines during 6 reloads (3 refused), %d failed", calls.Load(), failures.Load())
			})
		}
	}
}

// TestCleanup: a model and a handle dropped without Close are freed by the cleanup backstop.
// Cleanups run after a GC on their own goroutine; the loop gives them up to ~10 s.
func TestCleanup(t *testing.T) {
	var models, handles atomic.Int64
	f := func(kind string) {
		if kind == "model" {
			models.Add(1)
		} else {
			handles.Add(1)
		}
	}
	cleanupHook.Store(&f)
	defer cleanupHook.Store(nil)
	func() {
		m, err := Load(tinyDir, WithBackend(BackendTract))
		if err != nil {
			t.Fatal(err)
		}
		h, err := NewHandle(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Score([]Behavior{{Item: "i1", Timestamp: 1}}, []string{"i2"}, 2); err != nil {
			t.Fatal(err)
		}
	}()
	for i := 0; i < 200 && (models.Load() < 1 || handles.Load() < 1); i++ {
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
	}
	if models.Load() < 1 || handles.Load() < 1 {
		t.Errorf("after 200 GCs the cleanup freed %d models and %d handles; want at least 1 each", models.Load(), handles.Load())
	}
	// A closed model's cleanup has nothing left to free (the hook only counts real frees).
	models.Store(0)
	func() {
		m, err := Load(tinyDir, WithBackend(BackendTract))
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
	}()
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if models.Load() != 0 {
		t.Errorf("the cleanup freed a model that Close had freed already")
	}
}

// Reloads alternate between the single-group fixture (odd generations) and the multigroup fixture
// (even ones, the only one that knows group "query"); every Snapshot taken meanwhile must pair
// a model with its own generation.
func TestHandleSnapshotPairsModelAndGeneration(t *testing.T) {
	m, err := Load(tinyDir, WithBackend(BackendTract))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h, err := NewHandle(m)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	probe := []Behavior{{Item: "q1_0", Group: "query", Timestamp: 1300000000}}
	var stop atomic.Bool
	var checked atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				cur, gen, err := h.Snapshot()
				if err != nil {
					errs <- err
					return
				}
				_, err = cur.Score(probe, []string{"i1"}, 1300086400)
				cur.Close()
				if multi := gen%2 == 0; multi != (err == nil) {
					errs <- fmt.Errorf("generation %d: a query behavior gave err=%v", gen, err)
					return
				}
				checked.Add(1)
			}
		}()
	}
	for k := 0; k < 6; k++ {
		next := tinyDir
		if k%2 == 0 {
			next = multiDir
		}
		if _, err := h.Reload(next, WithBackend(BackendTract)); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if gen, _ := h.Generation(); gen != 7 {
		t.Errorf("generation %d, want 7", gen)
	}
	t.Logf("%d snapshots checked", checked.Load())
}

// TestExcludeSeen: off by default; WithExcludeSeen(true) scores a candidate from the user's own
// history -Inf and leaves the others' scores as they are.
func TestExcludeSeen(t *testing.T) {
	p := openPackage(t, "tiny", tinyDir)
	var r *goldenRequest
	for i := range p.golden.Requests {
		if len(p.golden.Requests[i].Behaviors) > 0 {
			r = &p.golden.Requests[i]
			break
		}
	}
	if r == nil {
		t.Fatal("no golden request with behaviors")
	}
	history := r.behaviors()
	seen := map[string]bool{}
	for _, b := range history {
		seen[b.Item] = true
	}
	fresh := ""
	for _, c := range r.Candidates {
		if !seen[c] {
			fresh = c
			break
		}
	}
	candidates := []string{history[0].Item, fresh}
	plain := load(t, tinyDir, BackendTract)
	defer plain.Close()
	want, err := plain.Score(history, candidates, r.RequestTime)
	if err != nil {
		t.Fatal(err)
	}
	off := load(t, tinyDir, BackendTract, WithExcludeSeen(false))
	defer off.Close()
	on := load(t, tinyDir, BackendTract, WithExcludeSeen(true))
	defer on.Close()
	gotOff, err := off.Score(history, candidates, r.RequestTime)
	if err != nil {
		t.Fatal(err)
	}
	gotOn, err := on.Score(history, candidates, r.RequestTime)
	if err != nil {
		t.Fatal(err)
	}
	if !equalScores(gotOff, want) || math.IsInf(float64(want[0]), 0) {
		t.Errorf("exclude off: %v, default: %v", gotOff, want)
	}
	if !math.IsInf(float64(gotOn[0]), -1) || gotOn[1] != want[1] {
		t.Errorf("exclude on: %v, want [-Inf %v]", gotOn, want[1])
	}
}
