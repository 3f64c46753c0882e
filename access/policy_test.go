package access

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseAndAuthenticate(t *testing.T) {
	bot, dash, old := NewToken(), NewToken(), NewToken()
	yamlFile := `
tokens:
  - name: bot
    sha256: ` + HashHex(bot) + `
    read: ["config/", "status/"]
    write: ["config/"]
  - name: dashboard
    sha256: sha256:` + strings.ToUpper(HashHex(dash)) + `
    read: [""]
    read_b64: ["/w=="]
    expires: 2100-01-01T00:00:00Z
  - name: old
    sha256: ` + HashHex(old) + `
    read: [""]
    expires: 2001-01-01T00:00:00Z
`
	jsonFile := `{"tokens":[{"name":"bot","sha256":"` + HashHex(bot) + `","read":["config/","status/"],"write":["config/"]}]}`
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, data := range map[string]string{"yaml": yamlFile, "json": jsonFile} {
		t.Run(name, func(t *testing.T) {
			p, err := Parse([]byte(data))
			if err != nil {
				t.Fatal(err)
			}
			pr, err := p.Authenticate(bot, now)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{
				"read config/a":   pr.CanRead([]byte("config/a"), nil),
				"read status/":    pr.CanRead([]byte("status/"), []byte("status0")),
				"read secret":     pr.CanRead([]byte("secret"), nil),
				"read everything": pr.CanRead([]byte(""), []byte{0}),
				"write config/a":  pr.CanWrite([]byte("config/a"), nil),
				"write status/a":  pr.CanWrite([]byte("status/a"), nil),
			}
			want := map[string]bool{"read config/a": true, "read status/": true, "write config/a": true,
				"read secret": false, "read everything": false, "write status/a": false}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			if pr.Name != "bot" || pr.IsAnonymous() {
				t.Errorf("principal %+v", pr)
			}
			if _, err := p.Authenticate(bot+"x", now); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("wrong token: %v", err)
			}
			if _, err := p.Authenticate("", now); !errors.Is(err, ErrNoToken) {
				t.Errorf("no token: %v", err)
			}
		})
	}
	p, err := Parse([]byte(yamlFile))
	if err != nil {
		t.Fatal(err)
	}
	pr, err := p.Authenticate(dash, now)
	if err != nil || !pr.CanRead([]byte{0xff, 1}, nil) || pr.CanWrite([]byte("a"), nil) || pr.Expires.Year() != 2100 {
		t.Errorf("dashboard: %+v, %v", pr, err)
	}
	if _, err := p.Authenticate(old, now); !errors.Is(err, ErrExpired) {
		t.Errorf("expired token: %v", err)
	}
	if p.Len() != 3 {
		t.Errorf("Len %d", p.Len())
	}
}

func TestParseErrors(t *testing.T) {
	h := HashHex("t")
	for _, tc := range []struct {
		name, file, want string
	}{
		{"not yaml", "tokens: [", "did not find"},
		{"unknown member", "tokens:\n  - name: a\n    sha256: " + h + "\n    reed: [x]\n", "reed"},
		{"no name", "tokens:\n  - sha256: " + h + "\n", "name is required"},
		{"bad hash", "tokens:\n  - name: a\n    sha256: abc\n", "64 hex digits"},
		{"plain token", "tokens:\n  - name: a\n    sha256: wg_secret\n", "64 hex digits"},
		{"same name", "tokens:\n  - name: a\n    sha256: " + h + "\n  - name: a\n    sha256: " + HashHex("u") + "\n", "used twice"},
		{"same hash", "tokens:\n  - name: a\n    sha256: " + h + "\n  - name: b\n    sha256: " + h + "\n", "same token hash"},
		{"bad base64", "tokens:\n  - name: a\n    sha256: " + h + "\n    read_b64: ['!!']\n", "read_b64"},
		{"bad expiry", "tokens:\n  - name: a\n    sha256: " + h + "\n    expires: soon\n", "soon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file))
			if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse: %v, want ErrBadFile mentioning %q", err, tc.want)
			}
		})
	}
	// An empty file is valid and lets nobody in.
	p, err := Parse(nil)
	if err != nil || p.Len() != 0 {
		t.Errorf("empty file: %v, %d tokens", err, p.Len())
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.yaml")
	if _, err := Load(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(path, []byte("tokens:\n  - name: a\n"), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("bad file: %v, want the path in the error", err)
	}
}

func TestNewToken(t *testing.T) {
	a, b := NewToken(), NewToken()
	if a == b || !strings.HasPrefix(a, TokenPrefix) || len(a) != len(TokenPrefix)+43 {
		t.Errorf("tokens %q %q", a, b)
	}
	// The same as `printf %s t | sha256sum`.
	if got := HashHex("t"); got != "e3b98a4da31a127d4bde6e43033f66ba274cab0eb7eb1c70ec41402bf6273dd8" {
		t.Errorf("HashHex(t) = %s", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("tokens:\n  - name: a\n    sha256: " + HashHex("t") + "\n    read: ['']\n"))
	f.Add([]byte(`{"tokens":[{"name":"a","sha256":"` + HashHex("t") + `","write_b64":["/w=="]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrBadFile) {
				t.Fatalf("error %v does not wrap ErrBadFile", err)
			}
			return
		}
		p.Authenticate("t", time.Now())
	})
}
