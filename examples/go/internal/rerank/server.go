// Package rerank is the HTTP service of the rerank-server example: POST /rerank scores a
// user's candidates on a hot-swappable atrank model, POST /admin/reload reloads the package
// without dropping requests, GET /healthz reports the serving generation, GET /metrics the
// library's counters in the Prometheus text format (metrics.go).
package rerank

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"sync"

	atrank "github.com/atrank/atrank/bindings/go"
)

// MaxBody bounds a request body (bytes).
const MaxBody = 8 << 20

// Behavior is one behavior in a /rerank request.
type Behavior struct {
	Item      string            `json:"item"`
	Category  string            `json:"category,omitempty"`
	Action    string            `json:"action,omitempty"`
	Timestamp int64             `json:"timestamp"`
	Group     string            `json:"group,omitempty"`
	Features  map[string]string `json:"features,omitempty"`
}

// Request is the body of POST /rerank. User is optional: when given, the user's history
// encoding is cached (packages with split graphs) and reused while it does not change.
type Request struct {
	User        string     `json:"user,omitempty"`
	Behaviors   []Behavior `json:"behaviors"`
	Candidates  []string   `json:"candidates"`
	RequestTime *int64     `json:"request_time"`
}

// Response is the answer of POST /rerank: one score (a logit, higher ranks first) per
// candidate, in order, and the handle's generation when the call returned.
type Response struct {
	Scores     []float32 `json:"scores"`
	Generation uint64    `json:"generation"`
}

// ErrorResponse is the body of every 4xx/5xx answer. Code is the atrank error code's name
// (e.g. ATRANK_ERROR_INVALID_ARGUMENT) when the library refused the request.
type ErrorResponse struct {
	Error      string `json:"error"`
	Code       string `json:"code,omitempty"`
	CodeNumber uint32 `json:"code_number,omitempty"`
}

// Server serves one atrank.Handle. Reload is what /admin/reload (and the example's SIGHUP)
// runs: typically h.Reload(packageDir, options...).
type Server struct {
	Handle *atrank.Handle
	Reload func() (uint64, error)
	Log    *log.Logger // nil: no log

	reloadMu sync.Mutex // one reload at a time (and no scrape during one); scoring never waits for it

	// Every model this server has served is counted on /metrics for the life of the process:
	// a replaced model stays in `retired` while requests that started on it are in flight, and
	// its final counters move to `folded` when the last one returns.
	mu       sync.Mutex
	inflight map[uint64]int           // generation -> requests scoring on it
	retired  map[uint64]*atrank.Model // replaced models with requests in flight
	folded   counters                 // final counters of replaced models
}

// Handler is the service's http.Handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rerank", s.rerank)
	mux.HandleFunc("POST /admin/reload", s.reload)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.metricsHandler())
	return mux
}

func (s *Server) logf(format string, args ...any) {
	if s.Log != nil {
		s.Log.Printf(format, args...)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError maps atrank codes to HTTP: the caller's fault (bad argument, UTF-8, NULL) is
// 400, a closed handle 503, anything else 500.
func writeError(w http.ResponseWriter, err error) {
	var e *atrank.Error
	switch {
	case errors.As(err, &e):
		status := http.StatusInternalServerError
		switch e.Code {
		case atrank.InvalidArgument, atrank.InvalidUTF8, atrank.NullArgument, atrank.BufferSize:
			status = http.StatusBadRequest
		}
		writeJSON(w, status, ErrorResponse{Error: e.Message, Code: e.Code.String(), CodeNumber: uint32(e.Code)})
	case errors.Is(err, atrank.ErrClosed):
		writeJSON(w, http.StatusServiceUnavailable, ErrorResponse{Error: err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: err.Error()})
	}
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf(format, args...)})
}

func (s *Server) rerank(w http.ResponseWriter, r *http.Request) {
	var req Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		badRequest(w, "invalid request body: %v", err)
		return
	}
	if dec.More() {
		badRequest(w, "invalid request body: more than one JSON value")
		return
	}
	if req.RequestTime == nil {
		badRequest(w, "request_time is required (unix seconds)")
		return
	}
	beh := make([]atrank.Behavior, len(req.Behaviors))
	for i, b := range req.Behaviors {
		beh[i] = atrank.Behavior{Item: b.Item, Category: b.Category, Action: b.Action,
			Timestamp: b.Timestamp, Group: b.Group, Features: atrank.FeaturesFromMap(b.Features)}
	}
	// One snapshot: the generation reported is the one of the model that scored.
	model, gen, err := s.acquire()
	if err != nil {
		writeError(w, err)
		return
	}
	defer s.release(model, gen)
	var scores []float32
	if req.User != "" {
		scores, err = model.ScoreCached(req.User, beh, req.Candidates, *req.RequestTime)
	} else {
		scores, err = model.Score(beh, req.Candidates, *req.RequestTime)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, Response{Scores: scores, Generation: gen})
}

// acquire takes the serving model and its generation, and counts the request in flight on it.
func (s *Server) acquire() (*atrank.Model, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	model, gen, err := s.Handle.Snapshot()
	if err != nil {
		return nil, 0, err
	}
	if s.inflight == nil {
		s.inflight = map[uint64]int{}
	}
	s.inflight[gen]++
	return model, gen, nil
}

// release ends a request that acquired `model`; the last one on a replaced model folds its
// final counters into the process totals and frees it.
func (s *Server) release(model *atrank.Model, gen uint64) {
	model.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight[gen]--
	if s.inflight[gen] > 0 {
		return
	}
	delete(s.inflight, gen)
	if old := s.retired[gen]; old != nil {
		delete(s.retired, gen)
		s.fold(old)
	}
}

// fold adds a replaced model's final counters to the process totals and frees it (s.mu held).
func (s *Server) fold(m *atrank.Model) {
	if st, err := m.Stats(); err == nil {
		s.folded.add(st)
	} else {
		s.logf("cannot read the counters of a replaced model: %v", err)
	}
	m.Close()
}

// DoReload runs one reload (serialised with others) and logs it.
func (s *Server) DoReload() (uint64, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old, oldGen, err := s.Handle.Snapshot()
	if err != nil {
		return 0, err
	}
	gen, err := s.Reload()
	if err != nil {
		old.Close()
		s.logf("reload refused, the current model keeps serving: %v", err)
		return 0, err
	}
	// Requests that took the old model have counted themselves in flight by now (acquire
	// snapshots and counts under s.mu): keep it until the last returns, or fold it at once.
	s.mu.Lock()
	if s.inflight[oldGen] > 0 {
		if s.retired == nil {
			s.retired = map[uint64]*atrank.Model{}
		}
		s.retired[oldGen] = old
	} else {
		s.fold(old)
	}
	s.mu.Unlock()
	s.logf("reloaded: generation %d", gen)
	return gen, nil
}

func (s *Server) reload(w http.ResponseWriter, _ *http.Request) {
	gen, err := s.DoReload()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"generation": gen})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	gen, err := s.Handle.Generation()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "generation": gen, "atrank": atrank.Version()})
}
