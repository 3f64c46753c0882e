// Command watchgate serves a durable key-value store and live watches of
// its keys over HTTP: REST writes and reads, Server-Sent Events and a
// multiplexed WebSocket, resumable by revision.
//
// Usage:
//
//	watchgate [flags]
//
// Every flag also reads an environment variable: --addr from WATCHGATE_ADDR,
// --retain-revisions from WATCHGATE_RETAIN_REVISIONS, and so on; a flag on
// the command line wins over the environment. `watchgate -h` lists them.
package main

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/httpapi"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

//go:embed openapi.yaml
var openapiYAML []byte

// Server timeouts. There is deliberately no WriteTimeout or ReadTimeout:
// watch streams live for hours; handlers that read a body bound it
// themselves.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	shutdownTimeout   = 10 * time.Second

	// HTTP/2: streams per connection (every watch of a browser tab shares
	// one connection) and the keepalive pings of connections that only
	// receive.
	http2MaxStreams   = 4096
	http2PingInterval = 30 * time.Second
	http2PingTimeout  = 15 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "watchgate:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "watchgate:", err)
		os.Exit(1)
	}
}

// errUsage marks a bad command line or environment.
var errUsage = errors.New("usage")

// config is the command line, after the environment and the flags.
type config struct {
	addr            string
	data            string
	tlsCert, tlsKey string
	retainRevisions int64
	retainDuration  time.Duration
	accessFile      string
	corsOrigins     string
	logLevel        zerolog.Level
	maxKeySize      int
	maxValueSize    int
	maxTxnOps       int
}

// envName is the environment variable of a flag: --max-key-size reads
// WATCHGATE_MAX_KEY_SIZE.
func envName(flagName string) string {
	return "WATCHGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig reads the flags in args over the environment (getenv) over
// the defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	var level string
	fs := flag.NewFlagSet("watchgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", ":8080", "listen address (HTTP/1.1 and cleartext HTTP/2)")
	fs.StringVar(&c.data, "data", "./data", "directory of the store (created if missing)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file: serve TLS (HTTP/2 and HTTP/1.1) instead, with --tls-key")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file, with --tls-cert")
	fs.Int64Var(&c.retainRevisions, "retain-revisions", 0, "keep only the last N revisions of history (0 keeps all)")
	fs.DurationVar(&c.retainDuration, "retain-duration", 0, "keep only the last D of history, as 24h (0 keeps all)")
	fs.StringVar(&c.accessFile, "access-file", "", "file of tokens and their key prefixes (anonymous access when absent)")
	fs.StringVar(&c.corsOrigins, "cors-origins", "", "comma-separated origins allowed for CORS and WebSocket (same origin when absent)")
	fs.StringVar(&level, "log-level", "info", "log level: trace, debug, info, warn, error, fatal, panic or disabled")
	fs.IntVar(&c.maxKeySize, "max-key-size", httpapi.DefaultMaxKeySize, "largest key in bytes")
	fs.IntVar(&c.maxValueSize, "max-value-size", httpapi.DefaultMaxValueSize, "largest value in bytes")
	fs.IntVar(&c.maxTxnOps, "max-txn-ops", httpapi.DefaultMaxTxnOps, "most compares, and operations per branch, in one transaction")
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " [$" + envName(f.Name) + "]" })

	var envErrs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%w: %s=%q: %v", errUsage, envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(envErrs...); err != nil {
		return config{}, err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	lv, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return config{}, fmt.Errorf("%w: --log-level %q: want trace, debug, info, warn, error, fatal, panic or disabled", errUsage, level)
	}
	c.logLevel = lv
	switch {
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return config{}, fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	case c.retainRevisions < 0 || c.retainDuration < 0:
		return config{}, fmt.Errorf("%w: --retain-revisions and --retain-duration must not be negative", errUsage)
	case c.maxKeySize < 1 || c.maxValueSize < 1 || c.maxTxnOps < 1:
		return config{}, fmt.Errorf("%w: --max-key-size, --max-value-size and --max-txn-ops must be at least 1", errUsage)
	case c.data == "":
		return config{}, fmt.Errorf("%w: --data must name a directory", errUsage)
	}
	return c, nil
}

// run serves until ctx is done, then shuts down in order: /readyz turns
// 503, the listener closes and open requests finish (for at most
// shutdownTimeout), then the store closes. Logs go to stderr as JSON.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := zerolog.New(stderr).Level(cfg.logLevel).With().Timestamp().Logger()
	if cfg.accessFile != "" {
		return fmt.Errorf("%w: --access-file: access control is not available in this version; refusing to serve without it", errUsage)
	}
	if cfg.corsOrigins != "" {
		return fmt.Errorf("%w: --cors-origins: cross-origin access is not available in this version", errUsage)
	}

	if err := os.MkdirAll(cfg.data, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	store, err := kv.Open(cfg.data, kv.Options{
		MaxKeySize:      cfg.maxKeySize,
		MaxValueSize:    cfg.maxValueSize,
		MaxTxnOps:       cfg.maxTxnOps,
		RetainRevisions: cfg.retainRevisions,
		RetainDuration:  cfg.retainDuration,
		Logger:          &log,
	})
	if err != nil {
		return fmt.Errorf("opening the store in %s: %w", cfg.data, err)
	}
	closeStore := func() error {
		if err := store.Close(); err != nil {
			return fmt.Errorf("closing the store: %w", err)
		}
		return nil
	}

	hubLog := log.With().Str("component", "watchhub").Logger()
	hub, err := watchhub.New(store, watchhub.Options{Logger: &hubLog})
	if err != nil {
		return errors.Join(fmt.Errorf("starting the watch hub: %w", err), closeStore())
	}
	closeAll := func() error {
		hub.Close()
		return closeStore()
	}

	httpLog := log.With().Str("component", "http").Logger()
	api, err := httpapi.New(store, httpapi.Options{
		Logger:       &httpLog,
		MaxKeySize:   cfg.maxKeySize,
		MaxValueSize: cfg.maxValueSize,
		MaxTxnOps:    cfg.maxTxnOps,
		OpenAPI:      openapiYAML,
		Version:      version(),
		TempDir:      cfg.data,
		Hub:          hub,
	})
	if err != nil {
		return errors.Join(err, closeAll())
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          stdlog.New(httpLog, "", 0),
		Protocols:         new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			// Browsers and HTTP/2 clients carry every watch of an origin
			// on one connection; the default of 250 streams would make
			// the 251st watch wait (browsers) or dial again.
			MaxConcurrentStreams: http2MaxStreams,
			// Detects a dead peer of a connection that only receives.
			SendPingTimeout: http2PingInterval,
			PingTimeout:     http2PingTimeout,
		},
	}
	// Streams end and sockets close (1001) as soon as the shutdown
	// starts; their clients resume by revision elsewhere or after restart.
	srv.RegisterOnShutdown(api.Shutdown)
	useTLS := cfg.tlsCert != ""
	srv.Protocols.SetHTTP1(true)
	if useTLS {
		// Loaded before listening, so a bad pair fails the start cleanly.
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return errors.Join(fmt.Errorf("--tls-cert/--tls-key: %w", err), closeAll())
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		srv.Protocols.SetHTTP2(true)
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen: %w", err), closeAll())
	}
	served := make(chan error, 1)
	go func() {
		if useTLS {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	api.SetReady(true)
	// Logged once ready: the line tells a supervisor (and the tests) that
	// the server takes traffic at addr.
	rev, compact := store.Revisions()
	log.Info().Str("addr", ln.Addr().String()).Bool("tls", useTLS).Str("data", cfg.data).
		Int64("revision", rev).Int64("compact_revision", compact).Str("version", version()).
		Msg("listening")

	select {
	case err := <-served:
		// Serve returns early only when the listener fails.
		api.SetReady(false)
		return errors.Join(fmt.Errorf("serve: %w", err), closeAll())
	case <-ctx.Done():
	}

	// Shutdown order: not ready -> stop accepting, end streams, close
	// sockets, finish open requests -> hub -> store.
	log.Info().Msg("shutting down")
	api.SetReady(false)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("open requests did not finish in time; closing them")
		srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn().Err(err).Msg("serve")
	}
	// http.Server.Shutdown does not wait for hijacked (WebSocket)
	// connections.
	if err := api.WaitStreams(sctx); err != nil {
		log.Warn().Err(err).Msg("WebSocket handlers did not finish in time")
	}
	hub.Close()
	log.Info().Msg("watch hub closed")
	if err := closeStore(); err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

// version is the module version the binary was built from, or "dev".
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
