package httpapi

import (
	"io"
	"net/http"
	"os"
	"strconv"
)

// snapshot serves GET /v1/snapshot: a consistent copy of the store's bbolt
// file as an attachment named watchgate.db; a server started on a data
// directory holding that file serves the same state. The copy is staged
// in Options.TempDir first, so the answer carries the exact revision it
// holds (X-Revision) and its length, and a failure is a clean 5xx rather
// than a cut stream.
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.authorize(r, modeRead, nil, everyKey); err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := os.CreateTemp(s.opts.TempDir, "watchgate-snapshot-*.db")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Unlinked at once: the open file lives until it is closed, and nothing
	// is left behind if the process dies.
	os.Remove(f.Name())
	defer f.Close()
	rev, n, err := s.store.WriteSnapshot(f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		s.writeError(w, r, err)
		return
	}
	setRevisionHeaders(w, rev, 0)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="watchgate.db"`)
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if _, err := io.CopyN(w, f, n); err != nil {
		s.log.Debug().Err(err).Str("request_id", RequestID(r.Context())).Msg("snapshot download cut short")
	}
}
