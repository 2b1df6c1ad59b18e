package atrank

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The tests read the committed fixtures (tests/fixtures/tiny, tests/fixtures/tiny-multigroup)
// and $ATRANK_PACKAGE when set (absolute, or relative to the repository root). The ORT backend
// is tested only when $ATRANK_ORT_LIB names the ONNX Runtime library (it skips otherwise);
// $ATRANK_TOLERANCE overrides the golden files' tolerances.

var repoRoot = filepath.Join("..", "..")

type goldenBehavior struct {
	Item      string            `json:"item"` // format 1
	ID        string            `json:"id"`   // formats 2 and 3
	Category  *string           `json:"category"`
	Action    *string           `json:"action"`
	Timestamp int64             `json:"timestamp"`
	Group     *string           `json:"group"`
	Features  map[string]string `json:"features"`
}

type goldenRequest struct {
	Name        string           `json:"name"`
	RequestTime int64            `json:"request_time"`
	Behaviors   []goldenBehavior `json:"behaviors"`
	Candidates  []string         `json:"candidates"`
	Scores      []float64        `json:"scores"`
	// The derived 2 D U M of this request's logits (docs/tolerances.md); absent in files of
	// older exporters.
	Tolerance *float64 `json:"tolerance"`
	// tol bounds any two float32 evaluations of this request's logits (runtime vs trainer,
	// batch vs single, cached vs plain): Tolerance, else the file's; $ATRANK_TOLERANCE when set.
	tol float64
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (r *goldenRequest) behaviors() []Behavior {
	out := make([]Behavior, len(r.Behaviors))
	for i, b := range r.Behaviors {
		item := b.Item
		if item == "" {
			item = b.ID
		}
		out[i] = Behavior{Item: item, Category: deref(b.Category), Action: deref(b.Action),
			Timestamp: b.Timestamp, Group: deref(b.Group), Features: FeaturesFromMap(b.Features)}
	}
	return out
}

type golden struct {
	Format    string  `json:"format"`
	Tolerance float64 `json:"tolerance"` // the largest per-request tolerance
	// 2 D U M_max, for requests that are not golden ones (docs/tolerances.md); nil when the
	// file has none. $ATRANK_TOLERANCE replaces it when set.
	BoundAnyRequest *float64        `json:"bound_any_request"`
	Requests        []goldenRequest `json:"requests"`
}

// anyRequestTolerance is bound_any_request; the test fails when the file has none.
func (g *golden) anyRequestTolerance(t testing.TB) float64 {
	t.Helper()
	if g.BoundAnyRequest == nil {
		t.Fatalf("golden.json has no bound_any_request (re-export the package)")
	}
	return *g.BoundAnyRequest
}

type testPackage struct {
	name, dir string
	golden    golden
	multi     bool // format 2 or 3: groups and features
	split     bool // encoder/scorer graphs (the cache is used)
	maxCands  int
}

type specJSON struct {
	SpecVersion int    `json:"spec_version"`
	Golden      string `json:"golden"`
	Graph       struct {
		Encoder *struct{} `json:"encoder"`
	} `json:"graph"`
	Limits struct {
		MaxCandidates int `json:"max_candidates"`
	} `json:"limits"`
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cannot read %s: %v", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s is not valid: %v", path, err)
	}
}

func openPackage(t testing.TB, name, dir string) testPackage {
	t.Helper()
	var s specJSON
	readJSON(t, filepath.Join(dir, "spec.json"), &s)
	gname := s.Golden
	if gname == "" {
		gname = "golden.json"
	}
	var g golden
	path := filepath.Join(dir, gname)
	readJSON(t, path, &g)
	if g.Format != "atrank-golden" || len(g.Requests) == 0 {
		t.Fatalf("%s: format %q with %d requests; want \"atrank-golden\" with at least one", path, g.Format, len(g.Requests))
	}
	for i, r := range g.Requests {
		if len(r.Scores) != len(r.Candidates) {
			t.Fatalf("%s: requests[%d] (%s) has %d candidates but %d scores", path, i, r.Name, len(r.Candidates), len(r.Scores))
		}
	}
	for i := range g.Requests {
		g.Requests[i].tol = g.Tolerance
		if own := g.Requests[i].Tolerance; own != nil {
			g.Requests[i].tol = *own
		}
	}
	if env := os.Getenv("ATRANK_TOLERANCE"); env != "" {
		tol, err := strconv.ParseFloat(env, 64)
		if err != nil || tol < 0 || math.IsInf(tol, 0) || math.IsNaN(tol) {
			t.Fatalf("ATRANK_TOLERANCE=%q is not a non-negative number", env)
		}
		g.Tolerance, g.BoundAnyRequest = tol, &tol
		for i := range g.Requests {
			g.Requests[i].tol = tol
		}
	}
	if s.Limits.MaxCandidates <= 0 {
		t.Fatalf("%s/spec.json: limits.max_candidates is %d", dir, s.Limits.MaxCandidates)
	}
	return testPackage{name: name, dir: dir, golden: g, multi: s.SpecVersion >= 2,
		split: s.Graph.Encoder != nil, maxCands: s.Limits.MaxCandidates}
}

var (
	tinyDir  = filepath.Join(repoRoot, "tests", "fixtures", "tiny")
	multiDir = filepath.Join(repoRoot, "tests", "fixtures", "tiny-multigroup")
)

// packages are the fixtures plus $ATRANK_PACKAGE.
func packages(t testing.TB) []testPackage {
	t.Helper()
	out := []testPackage{openPackage(t, "tiny", tinyDir), openPackage(t, "tiny-multigroup", multiDir)}
	if env := os.Getenv("ATRANK_PACKAGE"); env != "" {
		dir := env
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(repoRoot, dir)
		}
		out = append(out, openPackage(t, "ATRANK_PACKAGE", dir))
	}
	return out
}

var backends = []Backend{BackendTract, BackendORT}

// backendOptions returns the options for b, skipping the test for ORT without ATRANK_ORT_LIB.
func backendOptions(t testing.TB, b Backend, extra ...Option) []Option {
	t.Helper()
	opts := []Option{WithBackend(b)}
	if b == BackendORT {
		lib := os.Getenv("ATRANK_ORT_LIB")
		if lib == "" {
			t.Skip("ATRANK_ORT_LIB is unset: point it at libonnxruntime.so.<version> to test the ORT backend")
		}
		opts = append(opts, WithORTLibrary(lib))
	}
	return append(opts, extra...)
}

// load loads dir on b (closed when the test ends).
func load(t testing.TB, dir string, b Backend, extra ...Option) *Model {
	t.Helper()
	m, err := Load(dir, backendOptions(t, b, extra...)...)
	if err != nil {
		t.Fatalf("cannot load %s on %s: %v", dir, b, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// expectCode checks that err is an *Error with code want (also through errors.Is with the
// sentinel) whose message contains needle.
func expectCode(t testing.TB, what string, err error, want Code, needle string) {
	t.Helper()
	var e *Error
	switch {
	case err == nil:
		t.Errorf("%s: expected %s, but the call succeeded", what, want)
	case !errors.As(err, &e):
		t.Errorf("%s: expected an *atrank.Error with %s, got %T: %v", what, want, err, err)
	case e.Code != want:
		t.Errorf("%s: expected %s, got %s: %s", what, want, e.Code, e.Message)
	case !errors.Is(err, &Error{Code: want}):
		t.Errorf("%s: errors.Is(err, &Error{Code: %s}) is false", what, want)
	case e.Message == "":
		t.Errorf("%s: %s with an empty message", what, e.Code)
	case !strings.Contains(e.Message, needle):
		t.Errorf("%s: message does not name %q: %s", what, needle, e.Message)
	default:
		t.Logf("%s: %s: %s", what, e.Code, e.Message)
	}
}

// checkGolden compares scores of request i with the trainer's; it returns the max |diff|.
func checkGolden(t testing.TB, what string, r *goldenRequest, scores []float32, tol float64) float64 {
	t.Helper()
	if len(scores) != len(r.Scores) {
		t.Errorf("%s (%s): %d scores for %d candidates", what, r.Name, len(scores), len(r.Scores))
		return math.Inf(1)
	}
	maxDiff, bad := 0.0, 0
	for c, s := range scores {
		diff := math.Abs(float64(s) - r.Scores[c])
		if math.IsNaN(diff) || diff > maxDiff {
			maxDiff = diff
		}
		if !(diff <= tol) {
			if bad++; bad <= 3 {
				t.Errorf("%s (%s) candidate %d (%q): got %.9g, trainer %.9g, |diff| %.3g > tolerance %.3g",
					what, r.Name, c, r.Candidates[c], s, r.Scores[c], diff, tol)
			}
		}
	}
	return maxDiff
}

func equalScores(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
