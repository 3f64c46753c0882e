package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/watchgate/watchgate/access"
	"github.com/watchgate/watchgate/sse"
	"github.com/watchgate/watchgate/ws"
)

// watchPrefix is the escaped path before the key of a watch.
const watchPrefix = "/v1/watch/"

// newWatchHandlers builds the two watch transports on Options.Hub: the
// SSE handler renders its errors through the error table, and both take
// the API's key limit and logger.
func (s *Server) newWatchHandlers() error {
	so := s.opts.SSE
	so.PathPrefix = watchPrefix
	so.MaxKeySize = s.opts.MaxKeySize
	so.WriteError = s.writeError
	so.ProblemJSON = s.ProblemJSON
	so.OnSend = s.metrics.onSend("sse", so.OnSend)
	if so.Logger == nil {
		l := s.log.With().Str("transport", "sse").Logger()
		so.Logger = &l
	}
	s.sse = sse.NewHandler(s.opts.Hub, s.store, so)

	wo := s.opts.WS
	wo.MaxKeySize = s.opts.MaxKeySize
	wo.Authorize = s.authorizeWatch
	wo.OnSend = s.metrics.onSend("ws", wo.OnSend)
	wo.Expires = func(r *http.Request) time.Time {
		if p := Principal(r.Context()); p != nil {
			return p.Expires
		}
		return time.Time{}
	}
	if wo.Logger == nil {
		l := s.log.With().Str("transport", "ws").Logger()
		wo.Logger = &l
	}
	h, err := ws.NewHandler(s.opts.Hub, wo)
	if err != nil {
		return err
	}
	s.ws = h
	return nil
}

// watch serves GET /v1/watch/{key}: the key is the rest of the path,
// percent-decoded as for /v1/kv/, and the request is parsed before any
// check so that a malformed one is a 400 whatever else is wrong with it.
func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	key, err := keyFromPath(r.URL.EscapedPath(), watchPrefix)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := s.sse.ParseRequest(r, key)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The same normalised range the hub matches with: End nil for one
	// key, kv.PrefixEnd for a prefix, {0} for every key from Key on.
	if err := s.authorize(r, modeRead, req.Key, req.End); err != nil {
		s.writeError(w, r, err)
		return
	}
	release, ok := s.limitStreams(w, r)
	if !ok {
		return
	}
	// A stream served by h2srv goes on after Serve returns, detached from
	// this goroutine: the client's place is released, and the access log
	// written, when the stream ends.
	req.OnEnd = func(int64) { release() }
	if st := stateOf(r.Context()); st != nil {
		end := st.openStream()
		req.OnEnd = func(detachedBytes int64) {
			release()
			end(detachedBytes)
		}
	}
	s.sse.Serve(w, r, req)
}

// serveWS serves GET /v1/ws: the handshake is authenticated (requireAuth)
// and counted against the client's streams for the socket's lifetime; each
// watch on it is authorized by authorizeWatch.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	release, ok := s.limitStreams(w, r)
	if !ok {
		return
	}
	defer release()
	s.ws.ServeHTTP(w, r)
}

// authorizeWatch is the WebSocket handler's check of each watch: the
// handshake's token is checked again against the current policy (a token
// revoked by a reload opens no new watch; the watches it opened go on), and
// must allow reading the watch's whole normalised range. Its errors are
// the watch's error message: 401 or 403.
func (s *Server) authorizeWatch(r *http.Request, key, end []byte) error {
	p := access.Anonymous
	if policy := s.policy.Load(); policy != nil {
		var err error
		if p, err = policy.Authenticate(authOf(r.Context()).token, time.Now()); err != nil {
			return &ws.Problem{Err: ws.ErrForbidden, Type: ProblemTypePrefix + "unauthorized", Title: "Unauthorized",
				Status: http.StatusUnauthorized, Detail: unauthorized(err).(*requestError).msg}
		}
	}
	if !p.CanRead(key, end) {
		return &ws.Problem{Err: ws.ErrForbidden, Type: ProblemTypePrefix + "forbidden", Title: "Forbidden",
			Status: http.StatusForbidden, Detail: "token " + strconv.Quote(p.Name) + " may not read " + describeRange(key, end)}
	}
	return nil
}

// Shutdown begins to shut the watch transports down and returns at once:
// the server stops being ready, SSE streams end after the write in
// progress (their clients resume from their last id), WebSocket sockets are
// closed with 1001 (going away), and new watches are refused with 503. It
// suits http.Server.RegisterOnShutdown; call WaitStreams after
// http.Server.Shutdown, which does not wait for hijacked connections.
func (s *Server) Shutdown() {
	s.SetReady(false)
	if s.sse == nil {
		return
	}
	s.sse.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// With a done context, ws.Handler.Shutdown starts closing the sockets
	// and returns.
	_ = s.ws.Shutdown(ctx)
}

// WaitStreams shuts the watch transports down (as Shutdown) and waits
// until every WebSocket handler has returned, or ctx ends. SSE streams are
// ordinary requests that http.Server.Shutdown waits for.
func (s *Server) WaitStreams(ctx context.Context) error {
	s.Shutdown()
	if s.ws == nil {
		return nil
	}
	return s.ws.Shutdown(ctx)
}
