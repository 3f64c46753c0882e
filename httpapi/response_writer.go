package httpapi

import (
	"net/http"
	"strconv"
	"unsafe"
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

	// hv backs the values of the headers that the API sets (setHeader);
	// num holds the digits of the numbers among them (formatInt). Both
	// are only appended to, so the strings handed out stay unchanged.
	hv  [8]string
	nhv int
	num [64]byte
	nn  int
}

// setHeader sets the header key, which must be in canonical form, to the
// single value v. Through the API's responseWriter the value slice comes
// from the writer's own space instead of a new allocation.
func setHeader(w http.ResponseWriter, key, v string) {
	h := w.Header()
	if rw, ok := w.(*responseWriter); ok && rw.nhv < len(rw.hv) {
		i := rw.nhv
		rw.nhv++
		rw.hv[i] = v
		h[key] = rw.hv[i : i+1 : i+1]
		return
	}
	h[key] = []string{v}
}

// formatInt returns n in decimal, with quotes around it when quoted (an
// entity-tag). Through the API's responseWriter the digits are written
// into the writer's own space instead of a new string.
func formatInt(w http.ResponseWriter, n int64, quoted bool) string {
	rw, ok := w.(*responseWriter)
	if !ok || len(rw.num)-rw.nn < 22 {
		if quoted {
			return `"` + strconv.FormatInt(n, 10) + `"`
		}
		return strconv.FormatInt(n, 10)
	}
	start := rw.nn
	b := rw.num[start:start:len(rw.num)]
	if quoted {
		b = append(b, '"')
	}
	b = strconv.AppendInt(b, n, 10)
	if quoted {
		b = append(b, '"')
	}
	rw.nn += len(b)
	return unsafe.String(&rw.num[start], len(b))
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
	_, hasRev := h["X-Revision"]
	_, hasCompact := h["X-Compact-Revision"]
	if !hasRev || !hasCompact {
		rev, compact := w.revisions()
		if !hasRev {
			setHeader(w, "X-Revision", formatInt(w, rev, false))
		}
		if !hasCompact {
			setHeader(w, "X-Compact-Revision", formatInt(w, compact, false))
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
	setHeader(w, "X-Revision", formatInt(w, rev, false))
	if compact > 0 {
		setHeader(w, "X-Compact-Revision", formatInt(w, compact, false))
	}
}
