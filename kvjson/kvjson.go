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
	if utf8.Valid(b) {
		dst = append(dst, `":`...)
		return AppendString(dst, b)
	}
	dst = append(dst, `_b64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s, which must be valid UTF-8, as a JSON string. It
// escapes what JSON requires and also U+2028 and U+2029, so the output is
// safe inside a JavaScript string literal too.
func AppendString(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
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
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
