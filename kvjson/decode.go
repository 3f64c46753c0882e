package kvjson

import (
	"encoding/base64"
	"errors"
	"fmt"
)

var (
	// ErrBothForms is returned when a field is given both as text and as
	// base64.
	ErrBothForms = errors.New("kvjson: field given both as text and as base64")
	// ErrBadBase64 is returned for a _b64 member that is not standard base64.
	ErrBadBase64 = errors.New("kvjson: invalid base64")
)

// KeyValue is the decoded JSON shape of a kv, for clients and tests.
type KeyValue struct {
	Key            *string   `json:"key,omitempty"`
	KeyB64         *string   `json:"key_b64,omitempty"`
	Value          *string   `json:"value,omitempty"`
	ValueB64       *string   `json:"value_b64,omitempty"`
	CreateRevision int64     `json:"create_revision,omitempty"`
	ModRevision    int64     `json:"mod_revision"`
	Version        int64     `json:"version,omitempty"`
	PrevKV         *KeyValue `json:"prev_kv,omitempty"`
}

// KeyBytes returns the key, decoding key_b64 when that is the form given.
func (k *KeyValue) KeyBytes() ([]byte, error) { return Bytes("key", k.Key, k.KeyB64) }

// ValueBytes returns the value, decoding value_b64 when that is the form
// given; nil when neither is present.
func (k *KeyValue) ValueBytes() ([]byte, error) { return Bytes("value", k.Value, k.ValueB64) }

// Bytes resolves a text/base64 member pair: at most one may be present.
// Neither present gives nil, nil.
func Bytes(name string, text, b64 *string) ([]byte, error) {
	switch {
	case text != nil && b64 != nil:
		return nil, fmt.Errorf("%w: %s and %s_b64", ErrBothForms, name, name)
	case text != nil:
		return []byte(*text), nil
	case b64 != nil:
		b, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("%w in %s_b64: %v", ErrBadBase64, name, err)
		}
		return b, nil
	}
	return nil, nil
}
