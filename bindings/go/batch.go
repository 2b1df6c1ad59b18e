package atrank

// #include <stdlib.h>
// #include "atrank.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// MaxBatchRequests is the most requests one ScoreBatch call accepts
// (ATRANK_MAX_BATCH_REQUESTS).
const MaxBatchRequests = C.ATRANK_MAX_BATCH_REQUESTS

// marshalBatch copies reqs into one C allocation: the atrank_request array, then the
// behavior, feature and candidate arrays, then the strings.
func marshalBatch(reqs []Request) (*cCall, *C.atrank_request, int, error) {
	var s callSize
	total := 0
	for i := range reqs {
		if err := s.add(fmt.Sprintf("requests[%d].", i), reqs[i].Behaviors, reqs[i].Candidates); err != nil {
			return nil, nil, 0, err
		}
		total += len(reqs[i].Candidates)
	}
	// At least one slot, so that the array's address is never NULL: with no requests the
	// library reports the empty batch.
	reqBytes := max(len(reqs), 1) * int(C.sizeof_atrank_request)
	call := newCall(reqBytes, &s)
	creqs := unsafe.Slice((*C.atrank_request)(call.take(reqBytes)), max(len(reqs), 1))
	a := call.reserveArrays(&s)
	for i := range reqs {
		args := call.put(a, reqs[i].Behaviors, reqs[i].Candidates)
		creqs[i] = C.atrank_request{behaviors: args.behaviors, behaviors_len: args.nb,
			candidates: args.candidates, candidates_len: args.nc, request_time: C.int64_t(reqs[i].RequestTime)}
	}
	return call, &creqs[0], total, nil
}

// splitScores cuts the flat scores into one slice per request.
func splitScores(flat []float32, reqs []Request) [][]float32 {
	out := make([][]float32, len(reqs))
	off := 0
	for i := range reqs {
		n := len(reqs[i].Candidates)
		out[i] = flat[off : off+n : off+n]
		off += n
	}
	return out
}

func scoreBatch(m *C.atrank_model, reqs []Request) ([][]float32, error) {
	call, creqs, total, err := marshalBatch(reqs)
	if err != nil {
		return nil, err
	}
	defer call.free()
	flat := newScores(total)
	if err := takeError(C.atrank_model_score_batch(m, creqs, C.size_t(len(reqs)), scoresPtr(flat), C.size_t(total))); err != nil {
		return nil, err
	}
	return splitScores(flat, reqs), nil
}

// ScoreBatch scores several users' requests in few runs of the graph (padded into batches of
// at most WithBatchRows candidate rows): better throughput than one Score per request when
// many arrive together. Result i holds
// request i's scores, equal to Score's for that request alone. All or nothing: an invalid
// request fails the whole call with its error, named requests[i]. At most MaxBatchRequests.
func (m *Model) ScoreBatch(reqs []Request) ([][]float32, error) {
	p, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	return scoreBatch(p, reqs)
}

// ScoreBatch is Model.ScoreBatch on the current model (the whole batch on one model).
func (h *Handle) ScoreBatch(reqs []Request) ([][]float32, error) {
	p, err := h.acquire()
	if err != nil {
		return nil, err
	}
	defer h.release()
	var m *C.atrank_model
	if err := takeError(C.atrank_handle_current(p, &m)); err != nil {
		return nil, err
	}
	defer C.atrank_model_free(m)
	return scoreBatch(m, reqs)
}
