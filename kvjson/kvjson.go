// Package kvjson encodes the store's key-values and events in the JSON shapes
// of the watchgate API, once, for every transport.
//
// Keys and values are JSON strings when they are valid UTF-8; otherwise the
// member is named key_b64 / value_b64 and holds standard base64. Exactly one
// of each pair is present. The encoders append to a caller's buffer so a hot
// path can reuse it; their output is always a complete JSON value.
package kvjson

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/watchgate/watchgate/kv"
)

// AppendKV appends kv as {"key":...,"value":...,"create_revision":C,
// "mod_revision":M,"version":V}. keysOnly leaves the value out.
func AppendKV(dst []byte, kv *kv.KeyValue, keysOnly bool) []byte {
	dst = appendKVMembers(dst, kv, keysOnly)
	return append(dst, '}')
}

// AppendEventKV appends the event's kv as the SSE data line carries it: the
// kv object, with "prev_kv" inside it when withPrev is set and the key had a
// previous version. A delete's kv has only key and mod_revision.
func AppendEventKV(dst []byte, ev *kv.Event, withPrev bool) []byte {
	if ev.Type == kv.EventDelete {
		dst = appendDeletedKVMembers(dst, &ev.KV)
	} else {
		dst = appendKVMembers(dst, &ev.KV, false)
	}
	if withPrev && ev.PrevKV != nil {
		dst = append(dst, `,"prev_kv":`...)
		dst = AppendKV(dst, ev.PrevKV, false)
	}
	return append(dst, '}')
}

// AppendEvent appends the event in the WebSocket form:
// {"type":"put"|"delete","kv":{...},"prev_kv":{...}}, prev_kv only when
// withPrev is set and the key had a previous version.
func AppendEvent(dst []byte, ev *kv.Event, withPrev bool) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, ev.Type.String()...)
	dst = append(dst, `","kv":`...)
	if ev.Type == kv.EventDelete {
		dst = appendDeletedKVMembers(dst, &ev.KV)
		dst = append(dst, '}')
	} else {
		dst = AppendKV(dst, &ev.KV, false)
	}
	if withPrev && ev.PrevKV != nil {
		dst = append(dst, `,"prev_kv":`...)
		dst = AppendKV(dst, ev.PrevKV, false)
	}
	return append(dst, '}')
}

// appendKVMembers appends an unterminated kv object, so callers can add
// members before closing it.
func appendKVMembers(dst []byte, kv *kv.KeyValue, keysOnly bool) []byte {
	dst = append(dst, '{')
	dst = AppendBytesField(dst, "key", kv.Key)
	if !keysOnly {
		dst = append(dst, ',')
		dst = AppendBytesField(dst, "value", kv.Value)
	}
	dst = append(dst, `,"create_revision":`...)
	dst = strconv.AppendInt(dst, kv.CreateRevision, 10)
	dst = append(dst, `,"mod_revision":`...)
	dst = strconv.AppendInt(dst, kv.ModRevision, 10)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, kv.Version, 10)
	return dst
}

func appendDeletedKVMembers(dst []byte, kv *kv.KeyValue) []byte {
	dst = append(dst, '{')
	dst = AppendBytesField(dst, "key", kv.Key)
	dst = append(dst, `,"mod_revision":`...)
	return strconv.AppendInt(dst, kv.ModRevision, 10)
}

// AppendBytesField appends "name":"b" when b is valid UTF-8 and
// "name_b64":"<base64 of b>" otherwise.
func AppendBytesField(dst []byte, name string, b []byte) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	mark := len(dst)
	dst, valid := appendString(dst, b)
	if valid {
		return dst
	}
	// Not UTF-8: take back the string form, found invalid in the same pass
	// that escaped it, and write base64 instead.
	dst = append(dst[:mark-2], `_b64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// plain marks the bytes a JSON string carries as they are: printable
// ASCII other than '"' and '\'. The others are escaped (control
// characters, '"', '\') or start a multi-byte UTF-8 sequence (>= 0x80).
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Word-at-a-time constants: ones has 0x01 in every byte, highs 0x80.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainWord reports whether the eight bytes of v are all plain: none below
// 0x20, none >= 0x80, none '"' or '\\'. The tests are exact (no false
// positive once no byte has its high bit set).
func plainWord(v uint64) bool {
	lt := (v - ones*0x20) & ^v // a byte below 0x20 sets its high bit
	q := v ^ (ones * '"')
	q = (q - ones) & ^q // a zero byte (a '"') sets its high bit
	bs := v ^ (ones * '\\')
	bs = (bs - ones) & ^bs
	return (v|lt|q|bs)&highs == 0
}

// AppendString appends s, which must be valid UTF-8, as a JSON string. It
// escapes what JSON requires and also U+2028 and U+2029, so the output is
// safe inside a JavaScript string literal too. Bytes of invalid UTF-8 are
// copied as they are.
func AppendString(dst []byte, s []byte) []byte {
	dst, _ = appendString(dst, s)
	return dst
}

// appendString is AppendString, reporting also whether s is valid UTF-8:
// one pass that skips runs of plain bytes eight at a time, appends each run
// at once and decodes runes only from the first byte >= 0x80.
func appendString(dst []byte, s []byte) ([]byte, bool) {
	dst = append(dst, '"')
	valid := true
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && plainWord(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
			continue
		}
		// The next eight bytes hold something to escape or decode: take
		// them one at a time before trying a whole word again.
		for end := min(i+8, len(s)); i < end; {
			c := s[i]
			if plain[c] {
				i++
				continue
			}
			if c < utf8.RuneSelf {
				dst = append(dst, s[start:i]...)
				switch c {
				case '"', '\\':
					dst = append(dst, '\\', c)
				case '\n':
					dst = append(dst, '\\', 'n')
				case '\r':
					dst = append(dst, '\\', 'r')
				case '\t':
					dst = append(dst, '\\', 't')
				default:
					dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
				}
				i++
				start = i
				continue
			}
			r, size := utf8.DecodeRune(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				valid = false
			case r == '\u2028' || r == '\u2029':
				dst = append(dst, s[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
				start = i + size
			}
			i += size
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), valid
}
