package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/watchgate/watchgate/kv"
)

// Range listing limits: a range read returns at most defaultLimit keys per
// page unless limit= asks for another number up to maxLimit.
const (
	defaultLimit = 1000
	maxLimit     = 10000
)

// parseQuery parses the request's query string; a malformed one (a bad
// percent escape, say) is ErrBadRequest rather than silently dropped.
func parseQuery(r *http.Request) (url.Values, error) {
	if r.URL.RawQuery == "" {
		return nil, nil // reads as empty
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("malformed query string: %v", err)
	}
	return q, nil
}

// queryBool reads a boolean parameter: absent is false, present without a
// value ("?prefix") is true, otherwise strconv.ParseBool's spellings.
func queryBool(q url.Values, name string) (bool, error) {
	if !q.Has(name) {
		return false, nil
	}
	v := q.Get(name)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("parameter %s must be true or false, not %q", name, v)
	}
	return b, nil
}

// queryInt reads an integer parameter in [lo, hi]; absent or empty gives def.
func queryInt(q url.Values, name string, def, lo, hi int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("parameter %s must be an integer from %d to %d, not %q", name, lo, hi, v)
	}
	return n, nil
}

// keyRange is the selection of a key-value request: one key (end nil) or
// the range [key, end).
type keyRange struct {
	key, end []byte
}

func (kr keyRange) isRange() bool { return kr.end != nil }

// parseKeyRange combines the key of the path with prefix= and range_end=:
// prefix=true selects every key starting with key (every key when key is
// empty), range_end=END selects [key, END) (END "\x00" means every key from
// key on, as in etcd; an empty range_end selects the single key). The
// empty key is allowed only for a range. maxKey bounds key and range_end.
func parseKeyRange(q url.Values, key []byte, maxKey int) (keyRange, error) {
	if len(key) > maxKey {
		return keyRange{}, tooLarge("key is %d bytes, over the limit of %d", len(key), maxKey)
	}
	prefix, err := queryBool(q, "prefix")
	if err != nil {
		return keyRange{}, err
	}
	end := q.Get("range_end")
	switch {
	case prefix && end != "":
		return keyRange{}, badRequest("give prefix=true or range_end, not both")
	case prefix:
		return keyRange{key: key, end: kv.PrefixEnd(key)}, nil
	case end != "":
		if len(end) > maxKey {
			return keyRange{}, tooLarge("range_end is %d bytes, over the limit of %d", len(end), maxKey)
		}
		return keyRange{key: key, end: []byte(end)}, nil
	case len(key) == 0:
		return keyRange{}, badRequest("the empty key is allowed only as a range: add prefix=true (every key) or range_end")
	}
	return keyRange{key: key}, nil
}
