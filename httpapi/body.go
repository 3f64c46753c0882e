package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"time"
)

// bodyReadTimeout bounds how long a client may take to send a request body.
// The server has no global ReadTimeout (streams must not have one), so
// handlers that read a body set this deadline themselves.
const bodyReadTimeout = 30 * time.Second

// readBody reads the whole request body, at most limit bytes. A longer body
// is an error of kind tooBig (answered 413) and a body that breaks off is
// ErrBadRequest.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, tooBig error, what string) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &requestError{kind: tooBig, msg: what + " is over the limit of " + formatSize(limit)}
	}
	// Not every connection supports deadlines; the limit still holds.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	if r.ContentLength >= 0 {
		// The length is known and within the limit (net/http never
		// delivers more than it): one buffer of that size.
		b := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, badRequest("reading the request body: %v", err)
		}
		var extra [1]byte
		if n, _ := r.Body.Read(extra[:]); n > 0 {
			return nil, &requestError{kind: tooBig, msg: what + " is over the limit of " + formatSize(limit)}
		}
		return b, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &requestError{kind: tooBig, msg: what + " is over the limit of " + formatSize(limit)}
		}
		return nil, badRequest("reading the request body: %v", err)
	}
	return buf.Bytes(), nil
}

// formatSize writes a byte count as people read limits: 4 KiB, 1 MiB, 100 bytes.
func formatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return itoa(n>>10) + " KiB"
	}
	return itoa(n) + " bytes"
}
