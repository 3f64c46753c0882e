package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// compactBodyLimit bounds a POST /v1/compact body.
const compactBodyLimit = 4096

// compact serves POST /v1/compact {"revision":C}: history older than C is
// dropped. It answers {"revision":R,"compact_revision":C}; 400 when C is
// above the current revision, 409 when the store is already compacted at
// or past C.
func (s *Server) compact(w http.ResponseWriter, r *http.Request) {
	// Compaction drops the history of every key.
	if err := s.authorize(r, modeWrite, nil, everyKey); err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := readBody(w, r, compactBodyLimit, ErrTooLarge, "the compact body")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req struct {
		Revision *int64 `json:"revision"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.writeError(w, r, badRequest("compact body: %s", jsonErrorText(err)))
		return
	}
	if dec.More() {
		s.writeError(w, r, badRequest("compact body: data after the JSON object"))
		return
	}
	if req.Revision == nil || *req.Revision < 1 {
		s.writeError(w, r, badRequest(`compact body: "revision" must be a revision of at least 1`))
		return
	}
	if err := s.store.Compact(r.Context(), *req.Revision); err != nil {
		s.writeError(w, r, err)
		return
	}
	rev, compact := s.store.Revisions()
	setRevisionHeaders(w, rev, compact)
	b := appendRevision(nil, rev)
	b = append(b, `,"compact_revision":`...)
	b = append(b, itoa(*req.Revision)...)
	b = append(b, '}')
	writeJSON(w, r, http.StatusOK, b)
}
