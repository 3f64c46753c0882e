package httpapi

import (
	"net/http"
	"strconv"

	"github.com/watchgate/watchgate/kvjson"
	"github.com/watchgate/watchgate/watchhub"
)

// status serves GET /v1/status:
// {"revision","compact_revision","keys","db_size_bytes",
// "watchers":{"synced","unsynced","victim"},"connections":{"sse","ws"},"version"}.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.store.Status()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var wc watchhub.Stats
	var sseConns, wsConns int64
	if s.opts.Hub != nil {
		wc = s.opts.Hub.Stats()
		sseConns, wsConns = s.sse.Streams(), int64(s.ws.Connections())
	}
	// The published revisions, as every other answer shows them; the
	// file's may be one group commit ahead of them for a moment.
	rev, compact := s.store.Revisions()
	setRevisionHeaders(w, rev, compact)
	b := appendRevision(make([]byte, 0, 256), rev)
	for _, m := range []struct {
		name string
		n    int64
	}{
		{`,"compact_revision":`, compact},
		{`,"keys":`, st.Keys},
		{`,"db_size_bytes":`, st.DBSizeBytes},
		{`,"watchers":{"synced":`, int64(wc.Synced)},
		{`,"unsynced":`, int64(wc.Unsynced)},
		{`,"victim":`, int64(wc.Victim)},
		{`},"connections":{"sse":`, sseConns},
		{`,"ws":`, wsConns},
	} {
		b = append(b, m.name...)
		b = strconv.AppendInt(b, m.n, 10)
	}
	b = append(b, `},"version":`...)
	b = kvjson.AppendString(b, []byte(s.opts.Version))
	b = append(b, '}')
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, r, http.StatusOK, b)
}
