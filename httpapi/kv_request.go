package httpapi

import (
	"net/http"
	"net/url"
)

// kvRequest is what every /v1/kv/{key} handler reads first: the key of
// the path, the query string and the selection of keys.
type kvRequest struct {
	key []byte     // the key of the path, percent-decoded
	q   url.Values // the query string; nil when empty (reads as empty)
	kr  keyRange   // the selection: {key, nil}, or a range
}

// kvSelection says what a handler lets the path and query select.
type kvSelection int

const (
	// oneKeyWrite: exactly the path's key, which must be writable (not
	// empty, within MaxKeySize); prefix and range_end are not read (PUT).
	oneKeyWrite kvSelection = iota
	// rangeRead and rangeWrite: the key, or the range that prefix=true or
	// range_end select (GET and HEAD; DELETE).
	rangeRead
	rangeWrite
)

// parseKVRequest parses the common part of a key-value request and checks
// that the request's principal may read or write the selection. The first
// failure is returned, in this order: the path, the query string (for a
// range), the key's limits, the access check, the query string (for one
// key). The error is ready for writeError.
func (s *Server) parseKVRequest(r *http.Request, sel kvSelection) (kvRequest, error) {
	var kr kvRequest
	key, err := keyFromPath(r.URL.EscapedPath(), kvPathPrefix)
	if err != nil {
		return kr, err
	}
	kr.key = key
	mode := modeRead
	if sel == oneKeyWrite {
		if err := s.checkWriteKey(key); err != nil {
			return kr, err
		}
		kr.kr = keyRange{key: key}
		mode = modeWrite
	} else {
		if kr.q, err = parseQuery(r); err != nil {
			return kr, err
		}
		if kr.kr, err = parseKeyRange(kr.q, key, s.opts.MaxKeySize); err != nil {
			return kr, err
		}
		if sel == rangeWrite {
			mode = modeWrite
		}
	}
	if err := s.authorize(r, mode, kr.kr.key, kr.kr.end); err != nil {
		return kr, err
	}
	if sel == oneKeyWrite {
		if kr.q, err = parseQuery(r); err != nil {
			return kr, err
		}
	}
	return kr, nil
}
