// Package ffitests uses the Go module bindings/go the way an application would: from another
// module, through its exported API only. The module's own tests (bindings/go) cover the API in
// depth; this one checks that a consumer builds against it (pkg-config, cgo) and gets the
// trainer's scores.
//
// It scores $ATRANK_PACKAGE (absolute, or relative to the repository root), else
// tests/fixtures/tiny, on tract, and on ONNX Runtime when $ATRANK_ORT_LIB is set.
package ffitests

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	atrank "github.com/atrank/atrank/bindings/go"
)

type golden struct {
	Tolerance float64 `json:"tolerance"`
	Requests  []struct {
		Name        string `json:"name"`
		RequestTime int64  `json:"request_time"`
		Behaviors   []struct {
			Item      string            `json:"item"`
			ID        string            `json:"id"`
			Category  *string           `json:"category"`
			Action    *string           `json:"action"`
			Timestamp int64             `json:"timestamp"`
			Group     *string           `json:"group"`
			Features  map[string]string `json:"features"`
		} `json:"behaviors"`
		Candidates []string  `json:"candidates"`
		Scores     []float64 `json:"scores"`
		// the request's derived 2 D U M (docs/tolerances.md); absent in older files
		Tolerance *float64 `json:"tolerance"`
	} `json:"requests"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func packageDir() string {
	dir := os.Getenv("ATRANK_PACKAGE")
	if dir == "" {
		return filepath.Join("..", "..", "tests", "fixtures", "tiny")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", "..", dir)
	}
	return dir
}

func TestConsumer(t *testing.T) {
	if err := atrank.CheckVersion(); err != nil {
		t.Fatal(err)
	}
	dir := packageDir()
	data, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatalf("%s has no golden.json: %v", dir, err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil || len(g.Requests) == 0 {
		t.Fatalf("%s/golden.json: %v (%d requests)", dir, err, len(g.Requests))
	}
	for _, b := range []atrank.Backend{atrank.BackendTract, atrank.BackendORT} {
		t.Run(b.String(), func(t *testing.T) {
			opts := []atrank.Option{atrank.WithBackend(b)}
			if b == atrank.BackendORT {
				lib := os.Getenv("ATRANK_ORT_LIB")
				if lib == "" {
					t.Skip("ATRANK_ORT_LIB is unset")
				}
				opts = append(opts, atrank.WithORTLibrary(lib))
			}
			h, err := atrank.LoadHandle(dir, opts...)
			if err != nil {
				t.Fatalf("load %s on %s: %v", dir, b, err)
			}
			defer h.Close()
			maxDiff := 0.0
			for _, r := range g.Requests {
				beh := make([]atrank.Behavior, len(r.Behaviors))
				for i, x := range r.Behaviors {
					item := x.Item
					if item == "" {
						item = x.ID
					}
					beh[i] = atrank.Behavior{Item: item, Category: str(x.Category), Action: str(x.Action),
						Timestamp: x.Timestamp, Group: str(x.Group), Features: atrank.FeaturesFromMap(x.Features)}
				}
				scores, err := h.Score(beh, r.Candidates, r.RequestTime)
				if err != nil {
					t.Fatalf("%s: %v", r.Name, err)
				}
				tol := g.Tolerance
				if r.Tolerance != nil {
					tol = *r.Tolerance
				}
				for c, s := range scores {
					d := math.Abs(float64(s) - r.Scores[c])
					if !(d <= tol) {
						t.Errorf("%s candidate %d: %g, trainer %g", r.Name, c, s, r.Scores[c])
					}
					maxDiff = math.Max(maxDiff, d)
				}
			}
			t.Logf("%s on %s: %d requests, max |diff| %.3g (tolerances up to %g)", dir, b, len(g.Requests), maxDiff, g.Tolerance)

			_, err = h.Score(nil, nil, 0)
			var e *atrank.Error
			if !errors.As(err, &e) || e.Code != atrank.InvalidArgument || !errors.Is(err, atrank.ErrInvalidArgument) {
				t.Errorf("no candidates: %v; want an *atrank.Error with InvalidArgument", err)
			}
			h.Close()
			if _, err := h.Score(nil, []string{"x"}, 0); !errors.Is(err, atrank.ErrClosed) {
				t.Errorf("after Close: %v; want ErrClosed", err)
			}
		})
	}
}
