package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/etcdstore"
	"github.com/watchgate/watchgate/httpapi"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

// The two backends of --backend.
const (
	backendKV   = "kv"
	backendEtcd = "etcd"
)

// defaultEtcdStartTimeout bounds the wait for the etcd cluster at start.
const defaultEtcdStartTimeout = 60 * time.Second

// etcdConfig is the etcd backend's part of the command line; config.etcd
// is nil with the embedded kv store.
type etcdConfig struct {
	endpoints          []string
	certFile, keyFile  string
	caFile             string
	username, password string // the password is never logged
	startTimeout       time.Duration
}

// backendFlags are the flags of the backend choice, as registered on the
// flag set and before validation.
type backendFlags struct {
	backend      string
	endpoints    string
	cert, key    string
	ca           string
	username     string
	password     string
	startTimeout time.Duration
}

// addBackendFlags registers --backend and the --etcd-* flags on fs.
func addBackendFlags(fs *flag.FlagSet) *backendFlags {
	b := &backendFlags{}
	fs.StringVar(&b.backend, "backend", backendKV, "store: kv (embedded, on disk in --data) or etcd (a tier of gateways in front of an etcd v3 cluster, --etcd-endpoints)")
	fs.StringVar(&b.endpoints, "etcd-endpoints", "", "comma-separated client URLs of etcd members (http://10.0.0.1:2379,...), with --backend=etcd")
	fs.StringVar(&b.cert, "etcd-cert", "", "client certificate (PEM) for etcd's TLS client authentication, with --etcd-key")
	fs.StringVar(&b.key, "etcd-key", "", "private key of --etcd-cert")
	fs.StringVar(&b.ca, "etcd-ca", "", "CA bundle (PEM) that signed the etcd members' certificates")
	fs.StringVar(&b.username, "etcd-username", "", "etcd user (etcd auth); it needs read and write on every key")
	fs.StringVar(&b.password, "etcd-password", "", "password of --etcd-username (never logged; prefer the environment variable)")
	fs.DurationVar(&b.startTimeout, "etcd-start-timeout", defaultEtcdStartTimeout, "how long to wait for the etcd cluster at start")
	return b
}

// config checks the backend flags against the rest of c and returns the
// etcd backend's configuration, nil for the kv store.
func (b *backendFlags) config(c *config) (*etcdConfig, error) {
	etcdOnly := b.endpoints != "" || b.cert != "" || b.key != "" || b.ca != "" || b.username != "" || b.password != ""
	switch b.backend {
	case backendKV:
		if etcdOnly {
			return nil, fmt.Errorf("%w: --etcd-* flags need --backend=etcd", errUsage)
		}
		return nil, nil
	case backendEtcd:
	default:
		return nil, fmt.Errorf("%w: --backend %q: want kv or etcd", errUsage, b.backend)
	}
	e := &etcdConfig{certFile: b.cert, keyFile: b.key, caFile: b.ca,
		username: b.username, password: b.password, startTimeout: b.startTimeout}
	for _, ep := range strings.Split(b.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			e.endpoints = append(e.endpoints, ep)
		}
	}
	switch {
	case len(e.endpoints) == 0:
		return nil, fmt.Errorf("%w: --backend=etcd needs --etcd-endpoints", errUsage)
	case (e.certFile == "") != (e.keyFile == ""):
		return nil, fmt.Errorf("%w: --etcd-cert and --etcd-key go together", errUsage)
	case e.password != "" && e.username == "":
		return nil, fmt.Errorf("%w: --etcd-password needs --etcd-username", errUsage)
	case c.retainRevisions != 0 || c.retainDuration != 0:
		return nil, fmt.Errorf("%w: --retain-revisions and --retain-duration apply to the kv backend; "+
			"with --backend=etcd, compaction is etcd's (--auto-compaction-mode, --auto-compaction-retention)", errUsage)
	case e.startTimeout <= 0:
		return nil, fmt.Errorf("%w: --etcd-start-timeout must be positive", errUsage)
	}
	for _, ep := range e.endpoints {
		if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") && strings.Contains(ep, "://") {
			return nil, fmt.Errorf("%w: --etcd-endpoints: %q: want http://host:port or https://host:port", errUsage, ep)
		}
	}
	return e, nil
}

// backendStore is what the server needs of either backend: the HTTP API's
// store and the watch hub's, and Close.
type backendStore interface {
	httpapi.Store
	watchhub.Store
	Close() error
}

var (
	_ backendStore = (*kv.Store)(nil)
	_ backendStore = (*etcdstore.Store)(nil)
)

// openedStore is an open store of either backend.
type openedStore struct {
	backendStore
	// ready reports whether the store can serve (nil with the kv store,
	// which can whenever it is open).
	ready func() error
	// failed is closed when the store has failed for good and the process
	// must exit (nil, never closed, with the kv store).
	failed <-chan struct{}
	// describe names the store in the log.
	describe func(*zerolog.Event) *zerolog.Event
}

// openStore opens the store cfg asks for. The etcd store waits for its
// cluster until ctx is done or cfg.etcd.startTimeout has passed.
func openStore(ctx context.Context, cfg *config, log *zerolog.Logger) (*openedStore, error) {
	if err := os.MkdirAll(cfg.data, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if cfg.etcd == nil {
		store, err := kv.Open(cfg.data, kv.Options{
			MaxKeySize:      cfg.maxKeySize,
			MaxValueSize:    cfg.maxValueSize,
			MaxTxnOps:       cfg.maxTxnOps,
			RetainRevisions: cfg.retainRevisions,
			RetainDuration:  cfg.retainDuration,
			Logger:          log,
		})
		if err != nil {
			return nil, fmt.Errorf("opening the store in %s: %w", cfg.data, err)
		}
		return &openedStore{backendStore: store, describe: func(e *zerolog.Event) *zerolog.Event {
			return e.Str("backend", backendKV).Str("data", cfg.data)
		}}, nil
	}
	e := cfg.etcd
	sctx, cancel := context.WithTimeout(ctx, e.startTimeout)
	defer cancel()
	store, err := etcdstore.New(sctx, etcdstore.Options{
		Endpoints:    e.endpoints,
		CertFile:     e.certFile,
		KeyFile:      e.keyFile,
		CAFile:       e.caFile,
		Username:     e.username,
		Password:     e.password,
		MaxKeySize:   cfg.maxKeySize,
		MaxValueSize: cfg.maxValueSize,
		MaxTxnOps:    cfg.maxTxnOps,
		Logger:       log,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("opening the etcd store: %w", ctx.Err())
		}
		return nil, fmt.Errorf("opening the etcd store at %s: %w", strings.Join(e.endpoints, ","), err)
	}
	return &openedStore{backendStore: store, ready: store.Ready, failed: store.Failed(),
		describe: func(ev *zerolog.Event) *zerolog.Event {
			return ev.Str("backend", backendEtcd).Strs("etcd_endpoints", e.endpoints).
				Bool("etcd_tls", e.certFile != "" || e.caFile != "").Str("etcd_username", e.username)
		}}, nil
}

// failure is why a store that closed its failed channel failed.
func (s *openedStore) failure() error {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			return err
		}
	}
	return errors.New("the store failed")
}
