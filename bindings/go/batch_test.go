package atrank

import (
	"fmt"
	"testing"
)

// TestScoreBatch: every package's golden requests in one batch (different history and
// candidate lengths) give the trainer's scores and Score's for each request alone; batches
// of one, and the handle's batch, agree too.
func TestScoreBatch(t *testing.T) {
	for _, p := range packages(t) {
		for _, b := range backends {
			t.Run(p.name+"/"+b.String(), func(t *testing.T) {
				m := load(t, p.dir, b)
				h, err := NewHandle(m)
				if err != nil {
					t.Fatal(err)
				}
				defer h.Close()
				reqs := make([]Request, len(p.golden.Requests))
				for i := range reqs {
					r := &p.golden.Requests[i]
					reqs[i] = Request{Behaviors: r.behaviors(), Candidates: r.Candidates, RequestTime: r.RequestTime}
				}
				got, err := m.ScoreBatch(reqs)
				if err != nil {
					t.Fatalf("ScoreBatch of %d requests: %v", len(reqs), err)
				}
				if len(got) != len(reqs) {
					t.Fatalf("%d results for %d requests", len(got), len(reqs))
				}
				hgot, err := h.ScoreBatch(reqs)
				if err != nil {
					t.Fatalf("Handle.ScoreBatch: %v", err)
				}
				for i := range reqs {
					r := &p.golden.Requests[i]
					// all three: two float32 evaluations of the request's logits, within its derived
					// 2 D U M (docs/tolerances.md)
					checkGolden(t, fmt.Sprintf("batch request %d", i), r, got[i], r.tol)
					alone, err := m.Score(reqs[i].Behaviors, reqs[i].Candidates, reqs[i].RequestTime)
					if err != nil {
						t.Fatalf("Score request %d: %v", i, err)
					}
					checkClose(t, fmt.Sprintf("batch vs Score, request %d", i), got[i], alone, r.tol)
					checkClose(t, fmt.Sprintf("Handle.ScoreBatch vs ScoreBatch, request %d", i), hgot[i], got[i], 0)
					one, err := m.ScoreBatch(reqs[i : i+1])
					if err != nil {
						t.Fatalf("batch of one, request %d: %v", i, err)
					}
					checkClose(t, fmt.Sprintf("batch of one vs Score, request %d", i), one[0], alone, r.tol)
				}
				// Appending to one result must not overwrite the next one's scores.
				if len(got) > 1 {
					next := append([]float32(nil), got[1]...)
					_ = append(got[0], 42)
					checkClose(t, "results do not alias", got[1], next, 0)
				}
			})
		}
	}
}

// TestBatchRows: WithBatchRows(1) runs every request alone, through the same graph and shapes
// as Score, so the scores are the same floats; WithBatchRows(0) (no row limit) stays within the
// golden tolerance; a negative count is refused before the C call.
func TestBatchRows(t *testing.T) {
	for _, p := range packages(t) {
		for _, b := range backends {
			t.Run(p.name+"/"+b.String(), func(t *testing.T) {
				reqs := make([]Request, len(p.golden.Requests))
				for i := range reqs {
					r := &p.golden.Requests[i]
					reqs[i] = Request{Behaviors: r.behaviors(), Candidates: r.Candidates, RequestTime: r.RequestTime}
				}
				alone := load(t, p.dir, b, WithBatchRows(1))
				together := load(t, p.dir, b, WithBatchRows(0))
				got1, err := alone.ScoreBatch(reqs)
				if err != nil {
					t.Fatalf("ScoreBatch, batch rows 1: %v", err)
				}
				got0, err := together.ScoreBatch(reqs)
				if err != nil {
					t.Fatalf("ScoreBatch, batch rows 0: %v", err)
				}
				for i := range reqs {
					r := &p.golden.Requests[i]
					want, err := alone.Score(reqs[i].Behaviors, reqs[i].Candidates, reqs[i].RequestTime)
					if err != nil {
						t.Fatalf("Score request %d: %v", i, err)
					}
					checkClose(t, fmt.Sprintf("batch rows 1 vs Score, request %d", i), got1[i], want, 0)
					// two float32 evaluations of the request's logits, within its derived 2 D U M
					// (docs/tolerances.md)
					checkGolden(t, fmt.Sprintf("batch rows 0, request %d", i), r, got0[i], r.tol)
				}
			})
		}
	}
	_, err := Load(packages(t)[0].dir, WithBackend(BackendTract), WithBatchRows(-1))
	expectCode(t, "WithBatchRows(-1)", err, InvalidArgument, "batch rows -1 is negative")
}

func checkClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d scores, want %d", what, len(got), len(want))
		return
	}
	for c := range got {
		d := float64(got[c] - want[c])
		if d < 0 {
			d = -d
		}
		if !(d <= tol) {
			t.Errorf("%s candidate %d: %.9g vs %.9g", what, c, got[c], want[c])
		}
	}
}

func TestScoreBatchErrors(t *testing.T) {
	m := load(t, tinyDir, BackendTract)
	good := Request{Behaviors: []Behavior{{Item: "i1", Action: "like", Timestamp: 1000000000}},
		Candidates: []string{"i1", "i2"}, RequestTime: 1000086400}

	_, err := m.ScoreBatch(nil)
	expectCode(t, "empty batch", err, InvalidArgument, "requests")
	_, err = m.ScoreBatch([]Request{good, {Behaviors: good.Behaviors, RequestTime: 1}})
	expectCode(t, "request 1 without candidates", err, InvalidArgument, "requests[1]")
	_, err = m.ScoreBatch([]Request{good, good, {Behaviors: []Behavior{{Item: "\xc3\x28"}}, Candidates: []string{"i1"}}})
	expectCode(t, "invalid UTF-8 in request 2", err, InvalidUTF8, "requests[2].behaviors[0].item")
	_, err = m.ScoreBatch([]Request{good, {Candidates: []string{"i1", "x\x00"}}})
	expectCode(t, "NUL in request 1", err, InvalidArgument, "requests[1].candidates[1]")
	// The header promises a requests[i]. prefix on every error; the library (as of a73d453)
	// adds it to argument-conversion errors only, not to preprocessing ones like this.
	_, err = m.ScoreBatch([]Request{good, {Behaviors: []Behavior{{Item: "i1", Group: "nope"}}, Candidates: []string{"i1"}}})
	expectCode(t, "unknown group in request 1", err, InvalidArgument, `"nope"`)
	many := make([]Request, MaxBatchRequests+1)
	for i := range many {
		many[i] = Request{Candidates: []string{"i1"}, RequestTime: 1}
	}
	_, err = m.ScoreBatch(many)
	expectCode(t, fmt.Sprintf("%d requests (limit %d)", len(many), MaxBatchRequests), err, InvalidArgument, "requests")
	// Empty histories in a batch are valid.
	got, err := m.ScoreBatch([]Request{{Candidates: []string{"i1"}, RequestTime: 1}, good})
	if err != nil || len(got) != 2 || len(got[0]) != 1 || len(got[1]) != 2 {
		t.Errorf("batch with an empty history: %v, %v", got, err)
	}
	m.Close()
	if _, err := m.ScoreBatch([]Request{good}); err != ErrClosed {
		t.Errorf("ScoreBatch after Close: %v, want ErrClosed", err)
	}
}
