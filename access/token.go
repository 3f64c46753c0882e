package access

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
)

// TokenPrefix starts every token NewToken makes, so that a leaked token is
// easy to recognise (secret scanners) and to tell from other secrets.
const TokenPrefix = "wg_"

// NewToken returns a new random token: TokenPrefix and 256 random bits in
// unpadded base64url.
func NewToken() string {
	var b [32]byte
	rand.Read(b[:])
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// HashHex is the hex SHA-256 of token, the form the access file's sha256
// member takes; the same as `printf %s "$TOKEN" | sha256sum`.
func HashHex(token string) string {
	h := HashToken(token)
	return hex.EncodeToString(h[:])
}
