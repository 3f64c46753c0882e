package httpapi

import (
	"encoding/base64"
	"encoding/binary"
)

// continueTokenVersion is the first byte of every continue token, so the
// format can change without old tokens being misread.
const continueTokenVersion = 1

// continueToken is the opaque cursor of a paginated range read: the
// revision of the first page (every page reads at it, so the pages form
// one consistent listing) and the first key of the next page.
type continueToken struct {
	rev  int64
	next []byte
}

// encode returns the token as unpadded base64url: a version byte, the
// revision as a uvarint, then the key's bytes.
func (t continueToken) encode() string {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(t.next))
	b = append(b, continueTokenVersion)
	b = binary.AppendUvarint(b, uint64(t.rev))
	b = append(b, t.next...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeContinueToken parses a token made by encode; anything else is
// ErrBadRequest.
func decodeContinueToken(s string) (continueToken, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != continueTokenVersion {
		return continueToken{}, badRequest("invalid continue token")
	}
	rev, n := binary.Uvarint(b[1:])
	if n <= 0 || rev < 1 || rev > 1<<62 {
		return continueToken{}, badRequest("invalid continue token")
	}
	return continueToken{rev: int64(rev), next: b[1+n:]}, nil
}

// nextKey is the smallest key after k.
func nextKey(k []byte) []byte {
	n := make([]byte, len(k)+1)
	copy(n, k)
	return n
}
