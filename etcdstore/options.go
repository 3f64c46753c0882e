package etcdstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// Default limits, the same as the kv package's.
const (
	DefaultMaxKeySize   = 4096
	DefaultMaxValueSize = 1 << 20
	DefaultMaxTxnOps    = 128
)

// Options configures a Store. The zero value is the documented default,
// except Endpoints, which must name at least one etcd member.
type Options struct {
	// Endpoints are the client URLs of etcd members
	// ("http://10.0.0.1:2379", "https://etcd-2:2379"). The client spreads
	// requests over them and fails over between them.
	Endpoints []string

	// CertFile and KeyFile are a client certificate and its key (PEM) for
	// etcd's client TLS authentication; CAFile the CA bundle that signed
	// the members' certificates. Setting any of them turns TLS on; TLS,
	// when set, is used instead of the files.
	CertFile, KeyFile, CAFile string
	TLS                       *tls.Config

	// Username and Password authenticate to etcd (etcd's auth); empty
	// means no authentication.
	Username, Password string

	// DialTimeout bounds the first connection (default 5s).
	DialTimeout time.Duration
	// RequestTimeout bounds every call to etcd made on behalf of a caller
	// whose context has no earlier deadline, each round of a history read,
	// and the wait of a write for the commit feed (default 5s).
	RequestTimeout time.Duration
	// HealthInterval is how often the cluster is probed with a
	// linearizable read, for Ready and for compactions made elsewhere
	// (default 1s).
	HealthInterval time.Duration
	// StallTimeout is how long the commit feed may stay behind a revision
	// etcd reported before its watch is reopened (default 5s).
	StallTimeout time.Duration

	// MaxKeySize (default 4096), MaxValueSize (default 1 MiB) and MaxTxnOps
	// (default 128) bound requests as kv.Options does; over them Txn
	// returns kv.ErrKeyTooLarge, kv.ErrValueTooLarge or kv.ErrTooManyOps.
	// etcd has its own limits (--max-txn-ops, default 128, and
	// --max-request-bytes, default 1.5 MiB); a request over those is
	// refused with the same errors.
	MaxKeySize   int
	MaxValueSize int
	MaxTxnOps    int

	// Logger receives the store's logs; nil means zerolog.Nop().
	Logger *zerolog.Logger
}

func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = time.Second
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 5 * time.Second
	}
	if o.MaxKeySize <= 0 {
		o.MaxKeySize = DefaultMaxKeySize
	}
	if o.MaxValueSize <= 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = DefaultMaxTxnOps
	}
	if o.Logger == nil {
		nop := zerolog.Nop()
		o.Logger = &nop
	}
	return o
}

// tlsConfig returns the TLS configuration the options ask for, nil for
// plain connections.
func (o *Options) tlsConfig() (*tls.Config, error) {
	if o.TLS != nil {
		return o.TLS, nil
	}
	if o.CertFile == "" && o.KeyFile == "" && o.CAFile == "" {
		return nil, nil
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("etcdstore: a client certificate and its key go together")
	}
	info := transport.TLSInfo{CertFile: o.CertFile, KeyFile: o.KeyFile, TrustedCAFile: o.CAFile}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcdstore: TLS: %w", err)
	}
	return cfg, nil
}
