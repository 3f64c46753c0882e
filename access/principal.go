package access

import "time"

// Principal is who a request acts as and what it may do. It is immutable.
type Principal struct {
	// Name identifies the token in logs and limits; "anonymous" without
	// access control.
	Name string
	// Expires is when the token stops being accepted; zero never.
	Expires time.Time
	// ReadPrefixes and WritePrefixes are the prefixes of the access file.
	ReadPrefixes, WritePrefixes [][]byte

	read, write Ranges
	anonymous   bool
}

// Anonymous is the principal of every request when there is no access
// file: it may read and write every key.
var Anonymous = &Principal{
	Name: "anonymous", ReadPrefixes: [][]byte{{}}, WritePrefixes: [][]byte{{}},
	read: All(), write: All(), anonymous: true,
}

// IsAnonymous reports whether p is Anonymous.
func (p *Principal) IsAnonymous() bool { return p.anonymous }

// CanRead reports whether p may read every key of the range (key, end),
// in the store's conventions (see Ranges.Covers).
func (p *Principal) CanRead(key, end []byte) bool { return p.read.Covers(key, end) }

// CanWrite reports whether p may write every key of the range (key, end).
func (p *Principal) CanWrite(key, end []byte) bool { return p.write.Covers(key, end) }
