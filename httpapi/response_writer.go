package httpapi

import (
	"net/http"
	"strconv"
)

// responseWriter records the status and size of a response for the access
// log and the recoverer, and adds X-Revision and X-Compact-Revision to every
// response whose handler did not set them, at the moment its header is
// written. It implements Flush and Unwrap so http.ResponseController,
// streaming handlers and WebSocket upgrades reach the connection beneath.
type responseWriter struct {
	http.ResponseWriter
	revisions   func() (rev, compact int64)
	status      int
	bytes       int64
	wroteHeader bool
	// principal is the name the request acts as, for the access log.
	principal string
}

var _ http.Flusher = (*responseWriter)(nil)

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	// 1xx answers other than 101 precede the real one.
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.Header()
	if h.Get("X-Revision") == "" || h.Get("X-Compact-Revision") == "" {
		rev, compact := w.revisions()
		if h.Get("X-Revision") == "" {
			h.Set("X-Revision", strconv.FormatInt(rev, 10))
		}
		if h.Get("X-Compact-Revision") == "" {
			h.Set("X-Compact-Revision", strconv.FormatInt(compact, 10))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Flush sends buffered data to the client; it writes the header first if
// the handler had not.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// setRevisionHeaders sets the revision headers of a response explicitly,
// for handlers whose answer shows a revision other than the current one.
func setRevisionHeaders(w http.ResponseWriter, rev, compact int64) {
	h := w.Header()
	h.Set("X-Revision", strconv.FormatInt(rev, 10))
	if compact > 0 {
		h.Set("X-Compact-Revision", strconv.FormatInt(compact, 10))
	}
}
