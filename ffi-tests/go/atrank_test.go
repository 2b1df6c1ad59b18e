package atrank

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The tests read the model package from $ATRANK_PACKAGE (absolute, or relative to this
// directory or to the repository root) and skip when it is unset. The ORT backend is tested
// only when $ATRANK_ORT_LIB names the ONNX Runtime library; $ATRANK_TOLERANCE overrides the
// golden tolerance.

type goldenBehavior struct {
	Item      string  `json:"item"`
	Category  *string `json:"category"`
	Action    *string `json:"action"`
	Timestamp int64   `json:"timestamp"`
}

type goldenRequest struct {
	Name        string           `json:"name"`
	RequestTime int64            `json:"request_time"`
	Behaviors   []goldenBehavior `json:"behaviors"`
	Candidates  []string         `json:"candidates"`
	Scores      []float64        `json:"scores"`
}

func (r *goldenRequest) behaviors() []Behavior {
	out := make([]Behavior, len(r.Behaviors))
	for i, b := range r.Behaviors {
		out[i] = Behavior{Item: b.Item, Category: b.Category, Action: b.Action, Timestamp: b.Timestamp}
	}
	return out
}

type golden struct {
	Format    string          `json:"format"`
	Tolerance float64         `json:"tolerance"`
	Requests  []goldenRequest `json:"requests"`
}

type spec struct {
	Golden string `json:"golden"`
	Limits struct {
		MaxCandidates int `json:"max_candidates"`
	} `json:"limits"`
}

// packageDir returns the package directory, or skips the test when none is configured.
func packageDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ATRANK_PACKAGE")
	if dir == "" {
		t.Skip("ATRANK_PACKAGE is unset: no model package to test against")
	}
	if !filepath.IsAbs(dir) {
		if _, err := os.Stat(dir); err != nil {
			if _, err2 := os.Stat(filepath.Join("..", "..", dir)); err2 == nil {
				dir = filepath.Join("..", "..", dir)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "spec.json")); err != nil {
		t.Fatalf("ATRANK_PACKAGE=%s is not a model package: %v", os.Getenv("ATRANK_PACKAGE"), err)
	}
	return dir
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cannot read %s: %v", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s is not valid: %v", path, err)
	}
}

func readSpec(t *testing.T, dir string) spec {
	t.Helper()
	var s spec
	readJSON(t, filepath.Join(dir, "spec.json"), &s)
	return s
}

func readGolden(t *testing.T, dir string) golden {
	t.Helper()
	name := readSpec(t, dir).Golden
	if name == "" {
		name = "golden.json"
	}
	var g golden
	path := filepath.Join(dir, name)
	readJSON(t, path, &g)
	if g.Format != "atrank-golden" || len(g.Requests) == 0 {
		t.Fatalf("%s: format %q with %d requests; want \"atrank-golden\" with at least one", path, g.Format, len(g.Requests))
	}
	for i, r := range g.Requests {
		if len(r.Scores) != len(r.Candidates) {
			t.Fatalf("%s: requests[%d] (%s) has %d candidates but %d scores", path, i, r.Name, len(r.Candidates), len(r.Scores))
		}
	}
	if env := os.Getenv("ATRANK_TOLERANCE"); env != "" {
		tol, err := strconv.ParseFloat(env, 64)
		if err != nil || tol < 0 || math.IsInf(tol, 0) || math.IsNaN(tol) {
			t.Fatalf("ATRANK_TOLERANCE=%q is not a non-negative number", env)
		}
		g.Tolerance = tol
	}
	return g
}

// backends are run as subtests; load skips ORT's when ATRANK_ORT_LIB is unset.
var backends = []Backend{BackendORT, BackendTract}

// load loads the package on b (closed when the test ends), skipping the test when b is ORT
// and ATRANK_ORT_LIB is unset.
func load(t *testing.T, dir string, b Backend) *Model {
	t.Helper()
	if b == BackendORT && os.Getenv("ATRANK_ORT_LIB") == "" {
		t.Skip("ATRANK_ORT_LIB is unset: point it at libonnxruntime.so to test the ORT backend")
	}
	m, err := Load(dir, b)
	if err != nil {
		t.Fatalf("cannot load %s on %s: %v", dir, b, err)
	}
	t.Cleanup(m.Close)
	return m
}

// expectCode checks that err is an *Error with code want whose message names needle.
func expectCode(t *testing.T, what string, err error, want Code, needle string) {
	t.Helper()
	var e *Error
	switch {
	case err == nil:
		t.Errorf("%s: expected %s, but the call succeeded", what, want)
	case !errors.As(err, &e):
		t.Errorf("%s: expected an *atrank.Error with %s, got %T: %v", what, want, err, err)
	case e.Code != want:
		t.Errorf("%s: expected %s, got %s: %s", what, want, e.Code, e.Message)
	case e.Message == "":
		t.Errorf("%s: %s with an empty message", what, e.Code)
	case !strings.Contains(e.Message, needle):
		t.Errorf("%s: message does not name %q: %s", what, needle, e.Message)
	default:
		t.Logf("%s: %s: %s", what, e.Code, e.Message)
	}
}

func TestVersion(t *testing.T) {
	header, abi := HeaderVersion()
	if got := Version(); got != header {
		t.Errorf("library version %q differs from atrank.h's %q (stale header or library?)", got, header)
	}
	if got := ABIVersion(); got != abi {
		t.Errorf("library ABI version %d differs from atrank.h's %d", got, abi)
	}
}

func TestGolden(t *testing.T) {
	dir := packageDir(t)
	g := readGolden(t, dir)
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) {
			m := load(t, dir, b)
			if got, err := m.Backend(); err != nil || got != b {
				t.Errorf("Backend() = %v, %v; want %v", got, err, b)
			}
			maxDiff, bad := 0.0, 0
			for i, r := range g.Requests {
				scores, err := m.Score(r.behaviors(), r.Candidates, r.RequestTime)
				if err != nil {
					t.Errorf("request %d (%s): %v", i, r.Name, err)
					continue
				}
				for c, s := range scores {
					diff := math.Abs(float64(s) - r.Scores[c])
					if math.IsNaN(diff) || diff > maxDiff {
						maxDiff = diff
					}
					if !(diff <= g.Tolerance) {
						if bad++; bad <= 10 {
							t.Errorf("request %d (%s) candidate %d (%q): got %.9g, golden %.9g, |diff| %.3g > tolerance %.3g",
								i, r.Name, c, r.Candidates[c], s, r.Scores[c], diff, g.Tolerance)
						}
					}
				}
			}
			if bad > 10 {
				t.Errorf("%d scores out of tolerance in all (first 10 shown)", bad)
			}
			t.Logf("%s: %d requests, max |diff| %.3g (tolerance %.3g)", b, len(g.Requests), maxDiff, g.Tolerance)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	missing := "/nonexistent/atrank-no-such-package"
	_, err := Load(missing, BackendTract)
	expectCode(t, "nonexistent package", err, IO, missing)

	_, err = Load("bad\x00dir", BackendTract)
	expectCode(t, "NUL in package_dir", err, InvalidArgument, "package_dir")

	dir := packageDir(t)
	_, err = Load(dir, Backend(7))
	expectCode(t, "unknown backend 7", err, InvalidArgument, "backend")
}

func TestScoreErrors(t *testing.T) {
	dir := packageDir(t)
	maxCandidates := readSpec(t, dir).Limits.MaxCandidates
	if maxCandidates <= 0 {
		t.Fatalf("%s/spec.json: limits.max_candidates is %d", dir, maxCandidates)
	}
	like := "like"
	history := []Behavior{{Item: "1", Action: &like, Timestamp: 881250000}, {Item: "2", Timestamp: 881250900}}
	cands := []string{"1", "2", "no-such-item"}
	const now = 881250949
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) {
			m := load(t, dir, b)

			_, err := m.Score(history, nil, now)
			expectCode(t, "no candidates", err, InvalidArgument, "candidates")

			_, err = m.Score(history, []string{"1", "\xff\xfe"}, now)
			expectCode(t, "invalid UTF-8 candidate", err, InvalidUTF8, "candidates[1]")

			badItem := []Behavior{history[0], {Item: "\xc3\x28", Timestamp: 881250900}}
			_, err = m.Score(badItem, cands, now)
			expectCode(t, "invalid UTF-8 item", err, InvalidUTF8, "behaviors[1].item")

			many := make([]string, maxCandidates+1)
			for i := range many {
				many[i] = cands[i%len(cands)]
			}
			_, err = m.Score(history, many, now)
			expectCode(t, fmt.Sprintf("%d candidates (limit %d)", len(many), maxCandidates), err, InvalidArgument, "candidates")

			scores, err := m.Score(nil, cands, now)
			if err != nil {
				t.Errorf("empty history: %v", err)
			}
			for i, s := range scores {
				if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
					t.Errorf("empty history: score %d is not finite: %g", i, s)
				}
			}

			closed := load(t, dir, b)
			closed.Close()
			_, err = closed.Score(history, cands, now)
			expectCode(t, "score after Close", err, NullArgument, "model")
		})
	}
}

// TestConcurrentScoring scores the golden requests from 8 goroutines on one model and expects
// exactly the scores of a sequential pass (the model is documented as thread-safe).
func TestConcurrentScoring(t *testing.T) {
	dir := packageDir(t)
	g := readGolden(t, dir)
	const goroutines, rounds = 8, 3
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) {
			m := load(t, dir, b)
			want := make([][]float32, len(g.Requests))
			for i, r := range g.Requests {
				s, err := m.Score(r.behaviors(), r.Candidates, r.RequestTime)
				if err != nil {
					t.Fatalf("sequential request %d (%s): %v", i, r.Name, err)
				}
				want[i] = s
			}
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for w := 0; w < goroutines; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for round := 0; round < rounds; round++ {
						for k := range g.Requests {
							i := (k + w) % len(g.Requests) // each goroutine starts elsewhere
							r := &g.Requests[i]
							got, err := m.Score(r.behaviors(), r.Candidates, r.RequestTime)
							if err != nil {
								errs <- fmt.Errorf("goroutine %d round %d request %d (%s): %w", w, round, i, r.Name, err)
								return
							}
							for c := range got {
								if got[c] != want[i][c] {
									errs <- fmt.Errorf("goroutine %d round %d request %d (%s) candidate %d: %.9g, sequential %.9g",
										w, round, i, r.Name, c, got[c], want[i][c])
									return
								}
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
