package httpapi

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKeyFromPath(t *testing.T) {
	for _, tc := range []struct {
		path    string
		want    string
		wantErr bool
	}{
		{"/v1/kv/a", "a", false},
		{"/v1/kv/", "", false},
		{"/v1/kv/a/b/", "a/b/", false},
		{"/v1/kv/a%2Fb", "a/b", false},
		{"/v1/kv/a%2fb", "a/b", false},
		{"/v1/kv/%00", "\x00", false},
		{"/v1/kv/%ff", "\xff", false},
		{"/v1/kv/a+b", "a+b", false},
		{"/v1/kv/%", "", true},
		{"/v1/kv/%g0", "", true},
		{"/v1/kv/a%2", "", true},
		{"/v1/other/a", "", true},
	} {
		got, err := keyFromPath(tc.path, kvPathPrefix)
		if (err != nil) != tc.wantErr || (err == nil && string(got) != tc.want) {
			t.Errorf("keyFromPath(%q) = %q, %v; want %q, error %v", tc.path, got, err, tc.want, tc.wantErr)
		}
		if err != nil && StatusOf(err) != http.StatusBadRequest {
			t.Errorf("keyFromPath(%q): %v answered %d, want 400", tc.path, err, StatusOf(err))
		}
	}
}

// FuzzKeyFromPath checks that the URL key parser never panics, answers
// every error with 400, and inverts escapeKey for any key, also through
// net/url's parsing of the request line.
func FuzzKeyFromPath(f *testing.F) {
	for _, seed := range []string{"a", "a/b", "%2F", "%00", "%ff%fe", "%", "%%", "a%2", "ü", "a b", "?x", "#", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := keyFromPath(kvPathPrefix+s, kvPathPrefix)
		if err != nil {
			if StatusOf(err) != http.StatusBadRequest {
				t.Fatalf("keyFromPath(%q): %v answered %d", s, err, StatusOf(err))
			}
		} else if strings.IndexByte(s, '%') < 0 && string(key) != s {
			t.Fatalf("keyFromPath(%q) = %q, want it unchanged", s, key)
		}

		// Any byte string survives escapeKey, the request line and the parser.
		raw := []byte(s)
		escaped := escapeKey(raw)
		u, err := url.ParseRequestURI(kvPathPrefix + escaped)
		if err != nil {
			t.Fatalf("escapeKey(%q) = %q is not a valid request URI: %v", raw, escaped, err)
		}
		back, err := keyFromPath(u.EscapedPath(), kvPathPrefix)
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("round trip of %q via %q: %q, %v", raw, u.EscapedPath(), back, err)
		}
	})
}

func TestParseETagList(t *testing.T) {
	for _, tc := range []struct {
		header  string
		want    etagList
		wantErr bool
	}{
		{`"5"`, etagList{present: true, tags: []entityTag{{rev: 5}}}, false},
		{`W/"5"`, etagList{present: true, tags: []entityTag{{weak: true, rev: 5}}}, false},
		{`"5", "6",W/"7"`, etagList{present: true, tags: []entityTag{{rev: 5}, {rev: 6}, {weak: true, rev: 7}}}, false},
		{`*`, etagList{present: true, any: true}, false},
		{`"abc"`, etagList{present: true, tags: []entityTag{{rev: -1}}}, false},
		{`"+5"`, etagList{present: true, tags: []entityTag{{rev: -1}}}, false},
		{`"0"`, etagList{present: true, tags: []entityTag{{rev: -1}}}, false},
		{`"a,b"`, etagList{present: true, tags: []entityTag{{rev: -1}}}, false},
		{`5`, etagList{}, true},
		{`"5`, etagList{}, true},
		{`"5"x`, etagList{}, true},
		{`*, "5"`, etagList{}, true},
		{`,`, etagList{}, true},
		{`W/`, etagList{}, true},
		{"\"a\x01\"", etagList{}, true},
	} {
		h := http.Header{"If-Match": {tc.header}}
		got, err := parseETagList(h, "If-Match")
		if (err != nil) != tc.wantErr {
			t.Errorf("parseETagList(%q): error %v, want error %v", tc.header, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		got.raw = ""
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(etagList{}, entityTag{})); diff != "" {
			t.Errorf("parseETagList(%q) (-want +got)\n%s", tc.header, diff)
		}
	}
}

func TestContinueToken(t *testing.T) {
	for _, tok := range []continueToken{
		{rev: 1, next: []byte{}},
		{rev: 12345, next: []byte("a/b\x00")},
		{rev: 1 << 40, next: []byte{0xff, 0xfe}},
	} {
		got, err := decodeContinueToken(tok.encode())
		if err != nil || got.rev != tok.rev || !bytes.Equal(got.next, tok.next) {
			t.Errorf("round trip of %+v: %+v, %v", tok, got, err)
		}
	}
	for _, bad := range []string{"", "!!", "AA", "AQ", "AgE", "AYCAgICAgICAgIAB"} {
		if _, err := decodeContinueToken(bad); StatusOf(err) != http.StatusBadRequest {
			t.Errorf("decodeContinueToken(%q) = %v, want a 400 error", bad, err)
		}
	}
}

// FuzzDecodeContinueToken checks that any token either decodes to one that
// encodes back to itself or is a 400 error.
func FuzzDecodeContinueToken(f *testing.F) {
	f.Add(continueToken{rev: 7, next: []byte("k")}.encode())
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := decodeContinueToken(s)
		if err != nil {
			if StatusOf(err) != http.StatusBadRequest {
				t.Fatalf("decodeContinueToken(%q): %v answered %d", s, err, StatusOf(err))
			}
			return
		}
		if tok.rev < 1 {
			t.Fatalf("decodeContinueToken(%q) gave revision %d", s, tok.rev)
		}
		again, err := decodeContinueToken(tok.encode())
		if err != nil || again.rev != tok.rev || !bytes.Equal(again.next, tok.next) {
			t.Fatalf("re-encoding %q: %+v, %v", s, again, err)
		}
	})
}
