package kvjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// referenceString is the plain byte-at-a-time encoder AppendString must
// match byte for byte: escapes of '"', '\\', \n, \r, \t, \u00XX for the
// other control characters, \u2028 and \u2029, everything else copied.
func referenceString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, `\n`...)
			case c == '\r':
				dst = append(dst, `\r`...)
			case c == '\t':
				dst = append(dst, `\t`...)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// stdString is encoding/json's encoding of the valid UTF-8 string s without
// HTML escaping, with its \b and \f written \u0008 and \u000c as
// AppendString writes them (both are valid JSON for the same string).
func stdString(t testing.TB, s []byte) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(string(s)); err != nil {
		t.Fatal(err)
	}
	in := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	var out []byte
	for i := 0; i < len(in); i++ {
		if in[i] != '\\' {
			out = append(out, in[i])
			continue
		}
		i++
		switch in[i] {
		case 'b':
			out = append(out, `\u0008`...)
		case 'f':
			out = append(out, `\u000c`...)
		default:
			out = append(out, '\\', in[i])
		}
	}
	return out
}

var stringCases = []string{
	"",
	"a",
	"config/service/a",
	"0123456789abcdef0123456789abcdef",
	"quote\" backslash\\ in the middle of a long run of plain text",
	"\x00\x01\x07\x08\x0c\x1f\x7f ~",
	"tabs\tand\nnew\rlines",
	"<html>&amp;</html>",
	"é, ü, 日本語, 🙂 and \u2028 \u2029 \u2027 \u202a",
	"\xff\xfe invalid",
	"valid then invalid \xc3\x28 and truncated \xe2\x82",
	"surrogate \xed\xa0\x80 overlong \xc0\xaf",
	"\uFFFD is valid",
	strings.Repeat("x", 7) + "\"" + strings.Repeat("y", 8) + "\\" + strings.Repeat("z", 9),
}

// TestAppendString checks AppendString against the reference encoder for
// every input, and against encoding/json for valid UTF-8.
func TestAppendString(t *testing.T) {
	for _, s := range stringCases {
		t.Run(s, func(t *testing.T) {
			checkString(t, []byte(s))
		})
	}
}

// FuzzAppendString is the differential check of TestAppendString on any
// input: byte-identical to the reference, equal to encoding/json's output
// for valid UTF-8 and decoded by encoding/json back to the input, and
// AppendBytesField choosing the base64 form exactly for invalid UTF-8.
func FuzzAppendString(f *testing.F) {
	for _, s := range stringCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		checkString(t, s)
	})
}

func checkString(t *testing.T, s []byte) {
	t.Helper()
	got := AppendString([]byte("prefix"), s)
	if diff := cmp.Diff(string(referenceString([]byte("prefix"), s)), string(got)); diff != "" {
		t.Fatalf("AppendString(%q) differs from the reference (-want +got):\n%s", s, diff)
	}
	got = got[len("prefix"):]
	field := string(AppendBytesField(nil, "key", s))
	if !utf8.Valid(s) {
		want := `"key_b64":"` + base64.StdEncoding.EncodeToString(s) + `"`
		if diff := cmp.Diff(want, field); diff != "" {
			t.Fatalf("AppendBytesField(%q) (-want +got):\n%s", s, diff)
		}
		return
	}
	if diff := cmp.Diff(`"key":`+string(got), field); diff != "" {
		t.Fatalf("AppendBytesField(%q) (-want +got):\n%s", s, diff)
	}
	if diff := cmp.Diff(string(stdString(t, s)), string(got)); diff != "" {
		t.Fatalf("AppendString(%q) differs from encoding/json (-want +got):\n%s", s, diff)
	}
	var back string
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("AppendString(%q) = %s: invalid JSON: %v", s, got, err)
	}
	if back != string(s) {
		t.Fatalf("AppendString(%q) = %s decodes to %q", s, got, back)
	}
}

func BenchmarkAppendString(b *testing.B) {
	for _, tc := range []struct {
		name string
		s    []byte
	}{
		{"key", []byte("c/001/02")},
		{"value-100", bytes.Repeat([]byte("v"), 100)},
		{"utf8-100", []byte(strings.Repeat("é", 50))},
		{"escaped-100", bytes.Repeat([]byte("a\"b\n"), 25)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.s)))
			for b.Loop() {
				buf = AppendBytesField(buf[:0], "value", tc.s)
			}
		})
	}
}
