package sse

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// problemTypePrefix starts the type URI of the problems this package
// renders itself, as the API's do.
const problemTypePrefix = "urn:watchgate:problem:"

// writeProblem is the minimal problem+json writer used when the server
// gives none (Options.WriteError).
func writeProblem(w http.ResponseWriter, err error) {
	status, slug, title := http.StatusInternalServerError, "internal", "Internal error"
	detail := "internal error"
	switch {
	case errors.Is(err, ErrBadRequest):
		status, slug, title, detail = http.StatusBadRequest, "bad-request", "Bad request", err.Error()
	case errors.Is(err, kv.ErrKeyTooLarge):
		status, slug, title, detail = http.StatusRequestEntityTooLarge, "key-too-large", "Key too large", err.Error()
	case errors.Is(err, ErrUnavailable):
		status, slug, title, detail = http.StatusServiceUnavailable, "unavailable", "Unavailable", err.Error()
	}
	b := appendProblem(nil, status, slug, title, detail)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func appendProblem(dst []byte, status int, slug, title, detail string) []byte {
	dst = append(dst, `{"type":`...)
	dst = kvjson.AppendString(dst, []byte(problemTypePrefix+slug))
	dst = append(dst, `,"title":`...)
	dst = kvjson.AppendString(dst, []byte(title))
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, `,"detail":`...)
	dst = kvjson.AppendString(dst, []byte(strings.ToValidUTF8(detail, "\uFFFD")))
	return append(dst, '}')
}

// internalProblem is the problem of an error that ends a started stream
// when the server renders none (Options.ProblemJSON): the cause is logged,
// never shown.
func internalProblem(error) []byte {
	return appendProblem(nil, http.StatusInternalServerError, "internal", "Internal error", "internal error")
}
