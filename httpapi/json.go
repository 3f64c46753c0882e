package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// appendJSONString appends s as a JSON string, replacing invalid UTF-8.
func appendJSONString(dst []byte, s string) []byte {
	return kvjson.AppendString(dst, []byte(strings.ToValidUTF8(s, "\uFFFD")))
}

// appendKVs appends a JSON array of kvs.
func appendKVs(dst []byte, kvs []kv.KeyValue, keysOnly bool) []byte {
	dst = append(dst, '[')
	for i := range kvs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = kvjson.AppendKV(dst, &kvs[i], keysOnly)
	}
	return append(dst, ']')
}

// appendRevision starts a response object with its revision member:
// {"revision":R
func appendRevision(dst []byte, rev int64) []byte {
	dst = append(dst, `{"revision":`...)
	return strconv.AppendInt(dst, rev, 10)
}

// writeJSON answers status with the JSON body b (a newline is added).
func writeJSON(w http.ResponseWriter, r *http.Request, status int, b []byte) {
	setHeader(w, "Content-Type", "application/json")
	b = append(b, '\n')
	setHeader(w, "Content-Length", formatInt(w, int64(len(b)), false))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
