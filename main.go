// Command watchgate serves a durable key-value store and live watches of
// its keys over HTTP: REST writes and reads, Server-Sent Events and a
// multiplexed WebSocket, resumable by revision.
//
// Usage:
//
//	watchgate [flags]              serve
//	watchgate healthcheck [flags]  exit 0 when the server at --addr answers /healthz
//	watchgate token                print a new random token and its sha256 for an access file
//	watchgate hash-token           print the sha256 of the token read from stdin
//
// Every flag also reads an environment variable: --addr from WATCHGATE_ADDR,
// --retain-revisions from WATCHGATE_RETAIN_REVISIONS, and so on; a flag on
// the command line wins over the environment. `watchgate -h` lists them.
// SIGHUP reloads the access file; SIGINT and SIGTERM shut down gracefully.
//
// The store is embedded (--backend=kv, a bbolt file in --data) or an etcd
// v3 cluster (--backend=etcd --etcd-endpoints=...), in front of which any
// number of watchgate processes serve the same revisions. A gateway whose
// etcd store fails for good exits with status 1 after shutting down, so
// that its supervisor restarts it.
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

	"github.com/watchgate/watchgate/access"
	"github.com/watchgate/watchgate/h2srv"
	"github.com/watchgate/watchgate/httpapi"
	"github.com/watchgate/watchgate/watchhub"
	"github.com/watchgate/watchgate/ws"
)

//go:embed openapi.yaml
var openapiYAML []byte

// Server timeouts. There is deliberately no WriteTimeout or ReadTimeout:
// watch streams live for hours; handlers that read a body bound it
// themselves, and streams bound each write.
const (
	shutdownTimeout = 10 * time.Second

	// HTTP/2 keepalive pings of connections that only receive.
	http2PingInterval = 30 * time.Second
	http2PingTimeout  = 15 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && commands[os.Args[1]] != nil {
		err = commands[os.Args[1]](os.Args[2:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	} else {
		err = run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	}
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
	allowQueryToken bool
	secureCookies   bool
	corsOrigins     []string
	logLevel        zerolog.Level
	maxKeySize      int
	maxValueSize    int
	maxTxnOps       int
	writeRate       float64
	writeBurst      int
	maxStreams      int
	maxWatches      int
	readHeaderTO    time.Duration
	idleTO          time.Duration
	http2MaxStreams int
	pprof           bool
	// etcd configures the etcd backend (--backend=etcd); nil means the
	// embedded kv store in data.
	etcd *etcdConfig
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
	var level, origins string
	fs := flag.NewFlagSet("watchgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", ":8080", "listen address (HTTP/1.1 and cleartext HTTP/2)")
	fs.StringVar(&c.data, "data", "./data", "directory of the store (created if missing); with --backend=etcd only where snapshots are staged")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file: serve TLS (HTTP/2 and HTTP/1.1) instead, with --tls-key")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file, with --tls-cert")
	fs.Int64Var(&c.retainRevisions, "retain-revisions", 0, "keep only the last N revisions of history (0 keeps all)")
	fs.DurationVar(&c.retainDuration, "retain-duration", 0, "keep only the last D of history, as 24h (0 keeps all)")
	fs.StringVar(&c.accessFile, "access-file", "", "YAML or JSON file of hashed tokens and their key prefixes, reloaded on SIGHUP (anonymous access when absent)")
	fs.BoolVar(&c.allowQueryToken, "allow-query-token", false, "also accept a token in the access_token query parameter (never logged)")
	fs.BoolVar(&c.secureCookies, "secure-cookies", false, "mark the session cookie Secure on cleartext too (behind a TLS proxy)")
	fs.StringVar(&origins, "cors-origins", "", "comma-separated origins (https://app.example) allowed for CORS and WebSocket, or * (same origin when absent)")
	fs.StringVar(&level, "log-level", "info", "log level: trace, debug, info, warn, error, fatal, panic or disabled")
	fs.IntVar(&c.maxKeySize, "max-key-size", httpapi.DefaultMaxKeySize, "largest key in bytes")
	fs.IntVar(&c.maxValueSize, "max-value-size", httpapi.DefaultMaxValueSize, "largest value in bytes")
	fs.IntVar(&c.maxTxnOps, "max-txn-ops", httpapi.DefaultMaxTxnOps, "most compares, and operations per branch, in one transaction")
	fs.Float64Var(&c.writeRate, "write-rate", 0, "write requests a second allowed to each client (token, or IP address without one); 0 is unlimited")
	fs.IntVar(&c.writeBurst, "write-burst", 0, "writes a client may make at once above --write-rate (default: the rate, at least 1)")
	fs.IntVar(&c.maxStreams, "max-streams", httpapi.DefaultMaxStreams, "open SSE streams and WebSockets allowed to each client")
	fs.IntVar(&c.maxWatches, "max-watches-per-socket", ws.DefaultMaxWatches, "watches allowed on one WebSocket")
	fs.DurationVar(&c.readHeaderTO, "read-header-timeout", 10*time.Second, "time a client has to send a request's headers")
	fs.DurationVar(&c.idleTO, "idle-timeout", 120*time.Second, "time an idle keep-alive connection is kept open")
	fs.IntVar(&c.http2MaxStreams, "http2-max-streams", 1000, "concurrent HTTP/2 streams (watches) on one connection")
	fs.BoolVar(&c.pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ (behind access control)")
	backend := addBackendFlags(fs)
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
	case c.writeRate < 0 || c.writeBurst < 0:
		return config{}, fmt.Errorf("%w: --write-rate and --write-burst must not be negative", errUsage)
	case c.maxStreams < 1 || c.maxWatches < 1 || c.http2MaxStreams < 1:
		return config{}, fmt.Errorf("%w: --max-streams, --max-watches-per-socket and --http2-max-streams must be at least 1", errUsage)
	case c.readHeaderTO <= 0 || c.idleTO <= 0:
		return config{}, fmt.Errorf("%w: --read-header-timeout and --idle-timeout must be positive", errUsage)
	}
	if c.etcd, err = backend.config(&c); err != nil {
		return config{}, err
	}
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if o != "*" {
			if _, err := httpapi.NormalizeOrigin(o); err != nil {
				return config{}, fmt.Errorf("%w: --cors-origins: %v", errUsage, err)
			}
		}
		c.corsOrigins = append(c.corsOrigins, o)
	}
	return c, nil
}

// run serves until ctx is done, then shuts down in order: /readyz turns
// 503, the listener closes, SSE streams end and WebSockets close with 1001,
// open requests finish (for at most shutdownTimeout), then the watch hub
// and the store close. SIGHUP reloads the access file. Logs go to stderr
// as JSON.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := zerolog.New(stderr).Level(cfg.logLevel).With().Timestamp().Logger()
	// The access file is read before anything starts, so a bad one fails
	// the start rather than serving without access control.
	var policy *access.Policy
	if cfg.accessFile != "" {
		if policy, err = access.Load(cfg.accessFile); err != nil {
			return fmt.Errorf("%w: --access-file: %v", errUsage, err)
		}
	}

	store, err := openStore(ctx, &cfg, &log)
	if err != nil {
		return err
	}
	closeStore := func() error {
		if err := store.Close(); err != nil {
			return fmt.Errorf("closing the store: %w", err)
		}
		return nil
	}

	hubLog := log.With().Str("component", "watchhub").Logger()
	hub, err := watchhub.New(store.backendStore, watchhub.Options{Logger: &hubLog})
	if err != nil {
		return errors.Join(fmt.Errorf("starting the watch hub: %w", err), closeStore())
	}
	metrics := httpapi.NewMetrics()
	_, unsubscribe := store.Subscribe(metrics.ObserveCommits)
	closeAll := func() error {
		hub.Close()
		unsubscribe()
		return closeStore()
	}

	// The access log (a line per request) is buffered and written every
	// logFlushInterval rather than with a write(2) per request; the other
	// logs stay unbuffered. Every return below flushes it.
	accessOut := newLogWriter(stderr, logFlushInterval, logBufferLimit)
	defer accessOut.Close()
	httpLog := log.Output(accessOut).With().Str("component", "http").Logger()
	api, err := httpapi.New(store.backendStore, httpapi.Options{
		Logger:       &httpLog,
		MaxKeySize:   cfg.maxKeySize,
		MaxValueSize: cfg.maxValueSize,
		MaxTxnOps:    cfg.maxTxnOps,
		OpenAPI:      openapiYAML,
		Version:      version(),
		TempDir:      cfg.data,
		Hub:          hub,
		WS:           ws.Options{MaxWatches: cfg.maxWatches},

		Access:          policy,
		AllowQueryToken: cfg.allowQueryToken,
		SecureCookies:   cfg.secureCookies,
		CORSOrigins:     cfg.corsOrigins,
		WriteRate:       cfg.writeRate,
		WriteBurst:      cfg.writeBurst,
		MaxStreams:      cfg.maxStreams,
		Metrics:         metrics,
		Ready:           store.ready,
		Pprof:           cfg.pprof,
	})
	if err != nil {
		return errors.Join(err, closeAll())
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: cfg.readHeaderTO,
		IdleTimeout:       cfg.idleTO,
		ErrorLog:          stdlog.New(httpLog, "", 0),
		Protocols:         new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			// Browsers and HTTP/2 clients carry every watch of an origin
			// on one connection; the default of 250 streams would make
			// the 251st watch wait (browsers) or dial again.
			MaxConcurrentStreams: cfg.http2MaxStreams,
			// Detects a dead peer of a connection that only receives.
			SendPingTimeout: http2PingInterval,
			PingTimeout:     http2PingTimeout,
			// Floods and misbehaving peers show in /metrics.
			CountError: metrics.CountHTTP2Error,
		},
	}
	// HTTP/2, cleartext and over TLS, is served by h2srv rather than
	// net/http's own: a watch stream on it keeps no goroutine and costs a
	// few KB instead of ~20, and one write reaches 10,000 streams about
	// ten times faster. It takes its settings from srv.HTTP2.
	h2 := h2srv.New(nil, h2srv.Options{})
	srv.TLSNextProto = h2.TLSNextProto()
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
	tokens := -1 // anonymous
	if policy != nil {
		tokens = policy.Len()
	}
	store.describe(log.Info()).Str("addr", ln.Addr().String()).Bool("tls", useTLS).
		Int64("revision", rev).Int64("compact_revision", compact).Str("version", version()).
		Int("access_tokens", tokens).Strs("cors_origins", cfg.corsOrigins).
		Msg("listening")

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var failure error
	for done := false; !done; {
		select {
		case <-store.failed:
			// The etcd store cannot recover (its commit feed lost its
			// place to a compaction): shut down and exit non-zero, so
			// that a supervisor restarts the gateway; clients resume
			// elsewhere by revision meanwhile.
			failure = fmt.Errorf("the store failed for good: %w", store.failure())
			log.Error().Err(failure).Msg("exiting so that the gateway is restarted")
			done = true
		case err := <-served:
			// Serve returns early only when the listener fails.
			api.SetReady(false)
			return errors.Join(fmt.Errorf("serve: %w", err), closeAll())
		case <-hup:
			reloadAccess(cfg.accessFile, api, log)
		case <-ctx.Done():
			done = true
		}
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
	// srv.Shutdown sent GOAWAY on every HTTP/2 connection and waited for
	// them; h2 waits for the handlers still running.
	if err := h2.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("HTTP/2 requests did not finish in time; closing them")
		h2.Close()
	}
	// http.Server.Shutdown does not wait for hijacked (WebSocket)
	// connections.
	if err := api.WaitStreams(sctx); err != nil {
		log.Warn().Err(err).Msg("WebSocket handlers did not finish in time")
	}
	// No request is left: write out the access log's last lines.
	accessOut.Close()
	hub.Close()
	log.Info().Msg("watch hub closed")
	unsubscribe()
	if err := closeStore(); err != nil {
		return errors.Join(failure, err)
	}
	log.Info().Msg("stopped")
	return failure
}

// reloadAccess reads the access file again and gives it to the API; a
// file that does not load leaves the old policy in force. Requests and
// streams already admitted keep their check.
func reloadAccess(path string, api *httpapi.Server, log zerolog.Logger) {
	if path == "" {
		log.Info().Msg("SIGHUP: no --access-file to reload")
		return
	}
	p, err := access.Load(path)
	if err != nil {
		log.Error().Err(err).Msg("SIGHUP: the access file did not load; the previous one stays in force")
		return
	}
	api.SetAccess(p)
	log.Info().Int("access_tokens", p.Len()).Msg("access file reloaded")
}

// version is the module version the binary was built from, or "dev".
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// commands are the subcommands: watchgate NAME args...
var commands = map[string]func(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error{
	"healthcheck": healthcheck,
	"token":       newToken,
	"hash-token":  hashToken,
}

// healthcheck GETs /healthz of the server that the same flags and
// environment would start (its --addr, on loopback when it listens on every
// address; https when --tls-cert is set, without verifying the certificate
// of this local check) and fails unless it answers 200. It serves as the
// container's HEALTHCHECK, where no curl is installed.
func healthcheck(args []string, getenv func(string) string, _ io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return fmt.Errorf("%w: --addr %q: %v", errUsage, cfg.addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	tr := &http.Transport{}
	if cfg.tlsCert != "" {
		scheme = "https"
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s", url, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// newToken prints a new random token and the access file entry of its
// hash. The token is shown only here; the server keeps only the hash.
func newToken(args []string, _ func(string) string, _ io.Reader, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: token takes no arguments", errUsage)
	}
	t := access.NewToken()
	fmt.Fprintf(stdout, "token:  %s\nsha256: %s\n", t, access.HashHex(t))
	return nil
}

// hashToken prints the hex SHA-256 of the token on stdin (one line; the
// line end is not part of it), as the access file's sha256 member wants.
func hashToken(args []string, _ func(string) string, stdin io.Reader, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: hash-token reads the token from stdin and takes no arguments", errUsage)
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
	if err != nil {
		return err
	}
	t := strings.TrimRight(string(b), "\r\n")
	if t == "" || strings.ContainsAny(t, "\r\n") {
		return fmt.Errorf("%w: hash-token wants one token on stdin", errUsage)
	}
	fmt.Fprintln(stdout, access.HashHex(t))
	return nil
}
