package httpapi

import (
	"net/url"
	"strings"
)

// keyFromPath returns the key that an escaped request path carries after
// prefix: the whole rest of the path, percent-decoded, so %2F, %00 and any
// other byte can be part of a key and a literal '/' stays in it. It does
// not apply the key-size limit. A path outside prefix or a malformed escape
// is ErrBadRequest.
func keyFromPath(escapedPath, prefix string) ([]byte, error) {
	rest, ok := strings.CutPrefix(escapedPath, prefix)
	if !ok {
		return nil, badRequest("path %q is not under %s", escapedPath, prefix)
	}
	if strings.IndexByte(rest, '%') < 0 {
		return []byte(rest), nil
	}
	key, err := url.PathUnescape(rest)
	if err != nil {
		return nil, badRequest("key is not a valid percent-encoded path: %v", err)
	}
	return []byte(key), nil
}

// escapeKey is the inverse of keyFromPath: it percent-encodes every byte of
// key that is not an unreserved character or '/'.
func escapeKey(key []byte) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(key))
	for _, c := range key {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}
