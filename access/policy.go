package access

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

var (
	// ErrNoToken is returned by Authenticate for a request without a token.
	ErrNoToken = errors.New("access: no token")
	// ErrInvalidToken is returned by Authenticate for a token that the
	// policy does not know.
	ErrInvalidToken = errors.New("access: invalid token")
	// ErrExpired is returned by Authenticate for a token past its expiry.
	ErrExpired = errors.New("access: token expired")
	// ErrBadFile is wrapped by every error of a malformed access file.
	ErrBadFile = errors.New("access: malformed access file")
)

// Policy is a parsed access file: the tokens, by the SHA-256 of their
// value. It is immutable and safe for concurrent use.
type Policy struct {
	byHash map[[sha256.Size]byte]*Principal
}

// fileJSON is the access file's shape.
type fileJSON struct {
	Tokens []tokenJSON `yaml:"tokens"`
}

type tokenJSON struct {
	Name     string    `yaml:"name"`
	SHA256   string    `yaml:"sha256"`
	Read     []string  `yaml:"read"`
	Write    []string  `yaml:"write"`
	ReadB64  []string  `yaml:"read_b64"`
	WriteB64 []string  `yaml:"write_b64"`
	Expires  time.Time `yaml:"expires"`
}

// Load reads and parses the access file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Parse parses an access file (YAML or JSON). Unknown members, a token
// without a name or a well-formed sha256, and two tokens with the same
// name or hash are errors wrapping ErrBadFile. A file with no token is
// valid and lets nobody in.
func Parse(data []byte) (*Policy, error) {
	var f fileJSON
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %v", ErrBadFile, err)
	}
	p := &Policy{byHash: make(map[[sha256.Size]byte]*Principal, len(f.Tokens))}
	names := make(map[string]bool, len(f.Tokens))
	for i, t := range f.Tokens {
		where := fmt.Sprintf("tokens[%d]", i)
		if t.Name == "" {
			return nil, fmt.Errorf("%w: %s: name is required", ErrBadFile, where)
		}
		where += " (" + t.Name + ")"
		if names[t.Name] {
			return nil, fmt.Errorf("%w: %s: the name is used twice", ErrBadFile, where)
		}
		names[t.Name] = true
		h, err := parseHash(t.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadFile, where, err)
		}
		if _, dup := p.byHash[h]; dup {
			return nil, fmt.Errorf("%w: %s: the same token hash as another token", ErrBadFile, where)
		}
		read, err := prefixes(t.Read, t.ReadB64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: read_b64: %v", ErrBadFile, where, err)
		}
		write, err := prefixes(t.Write, t.WriteB64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: write_b64: %v", ErrBadFile, where, err)
		}
		p.byHash[h] = &Principal{
			Name: t.Name, Expires: t.Expires,
			ReadPrefixes: read, WritePrefixes: write,
			read: NewRanges(read), write: NewRanges(write),
		}
	}
	return p, nil
}

func parseHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	s = strings.TrimPrefix(strings.TrimSpace(s), "sha256:")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return h, errors.New("sha256 must be the 64 hex digits of the token's SHA-256 (watchgate hash-token)")
	}
	copy(h[:], b)
	return h, nil
}

func prefixes(text, b64 []string) ([][]byte, error) {
	out := make([][]byte, 0, len(text)+len(b64))
	for _, s := range text {
		out = append(out, []byte(s))
	}
	for _, s := range b64 {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", s, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// Len is the number of tokens.
func (p *Policy) Len() int { return len(p.byHash) }

// Authenticate returns the principal of token at time now: ErrNoToken for
// an empty token, ErrInvalidToken for one the policy does not know,
// ErrExpired for one past its expiry.
func (p *Policy) Authenticate(token string, now time.Time) (*Principal, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	pr, ok := p.byHash[HashToken(token)]
	if !ok {
		return nil, ErrInvalidToken
	}
	if !pr.Expires.IsZero() && !now.Before(pr.Expires) {
		return nil, fmt.Errorf("%w: %s expired at %s", ErrExpired, pr.Name, pr.Expires.Format(time.RFC3339))
	}
	return pr, nil
}

// HashToken is the SHA-256 of token, as the access file stores it (in hex).
func HashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }
