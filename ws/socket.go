package ws

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/watchhub"
)

// outboxSize bounds the replies the read loop may have waiting for the
// write loop; a client that sends faster than it reads is then no longer
// read from until it reads.
const outboxSize = 64

// reply is a message the read loop produced itself (pong, error), waiting
// in the outbox for its place in the socket's one ordered sequence of
// messages.
type reply struct {
	// after is the number of created and canceled responses that the read
	// loop's hub calls had queued when the reply was made: the reply goes
	// after that many of them and before the next.
	after int64
	msg   []byte
}

// socket is one accepted WebSocket: its hub stream, its read loop and its
// write loop.
//
// Ordering: control replies and events go out in one order. The hub's
// stream queue carries the watches' responses; the read loop's own replies
// go through the outbox, each marked with how many created and canceled
// responses precede it. The hub queues those two kinds only synchronously
// inside Stream.Watch and Stream.Cancel, which only the read loop calls, so
// the write loop, counting them as it writes the hub's responses, puts each
// reply exactly where the read loop made it: "watch w1; bad message with id
// w1; cancel w1" always reads created, error, canceled.
type socket struct {
	h      *Handler
	r      *http.Request
	conn   *websocket.Conn
	cork   *corkConn
	stream *watchhub.Stream
	log    zerolog.Logger

	outbox   chan reply
	drained  chan struct{} // signalled after each drain of the hub's queue
	done     chan struct{} // closed when the write loop ends
	readDone chan struct{} // closed when the read loop ends
	readErr  error         // why it ended, set before readDone is closed

	// Read loop state.
	queued int64 // created and canceled responses queued by our hub calls
	rbuf   bytes.Buffer

	// Write loop state.
	written int64 // created and canceled responses written
	next    *reply
	resps   []watchhub.Response
	msg     []byte
	// Change events written in this batch and the earliest notify time
	// among them, kept only when Options.OnSend is set.
	sent         int
	oldestNotify time.Time
	lastCounted  *watchhub.Event // the last event countSent looked at, in this batch
}

func newSocket(h *Handler, r *http.Request, conn *websocket.Conn, cork *corkConn, stream *watchhub.Stream) *socket {
	return &socket{
		h:        h,
		r:        r,
		conn:     conn,
		cork:     cork,
		stream:   stream,
		log:      h.log.With().Str("remote", r.RemoteAddr).Logger(),
		outbox:   make(chan reply, outboxSize),
		drained:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		readDone: make(chan struct{}),
	}
}

// serve runs the socket until it closes: the read loop in a new goroutine,
// the write loop in this one. It returns after both have ended.
func (s *socket) serve() {
	go s.readLoop()
	code, reason, err := s.writeLoop()
	close(s.done)
	s.stream.Close()
	switch {
	case err != nil:
		// A write failed (the client stopped reading for WriteTimeout, or
		// went away); the connection is already closed.
		s.conn.CloseNow()
	case code != 0:
		s.conn.Close(code, reason)
	default:
		// The read loop ended: the client closed (the library answered
		// its close frame) or broke the protocol (the library sent the
		// close code, 1009 for a message over the limit).
		s.conn.CloseNow()
	}
	<-s.readDone
	ev := s.log.Debug().Int("close_code", int(code))
	if err != nil {
		ev = ev.AnErr("write_error", err).Bool("write_timeout", s.cork.timedOut())
	}
	if s.readErr != nil && websocket.CloseStatus(s.readErr) == -1 {
		ev = ev.AnErr("read_error", s.readErr)
	}
	ev.Msg("websocket closed")
}

// readLoop reads and handles client messages until the connection fails
// or the socket ends. Reads have no deadline (a client may watch in
// silence for ever); closing the connection ends them.
func (s *socket) readLoop() {
	defer close(s.readDone)
	for {
		typ, rd, err := s.conn.Reader(context.Background())
		if err != nil {
			s.readErr = err
			return
		}
		s.rbuf.Reset()
		if _, err := s.rbuf.ReadFrom(rd); err != nil {
			s.readErr = err
			return
		}
		var ok bool
		if typ != websocket.MessageText {
			ok = s.replyError("", newProblem(ErrBadMessage, "messages are JSON text; binary messages are not part of %s", Subprotocol))
		} else {
			ok = s.handle(s.rbuf.Bytes())
		}
		if !ok {
			return
		}
		if s.rbuf.Cap() > 16<<10 {
			s.rbuf = bytes.Buffer{} // do not keep a large message's buffer
		}
	}
}

// handle serves one client message. It reports false when the socket is
// ending.
func (s *socket) handle(data []byte) bool {
	req, err := ParseRequest(data, ParseOptions{MaxKeySize: s.h.opts.MaxKeySize})
	if err != nil {
		return s.replyError(req.ID, err)
	}
	switch req.Op {
	case OpPing:
		return s.send(appendPong(nil))
	case OpProgress:
		return s.stream.RequestProgress() == nil
	case OpCancel:
		switch err := s.stream.Cancel(req.ID); {
		case err == nil:
			s.queued++
			return true
		case errors.Is(err, watchhub.ErrWatchNotFound):
			return s.replyError(req.ID, newProblem(ErrUnknownID, "no active watch %q on this socket", req.ID))
		default:
			return false
		}
	}
	return s.watch(&req)
}

// watch starts the watch req asks for.
func (s *socket) watch(req *Request) bool {
	w := &req.Watch
	if n := s.stream.Len(); n >= s.h.opts.MaxWatches {
		return s.replyError(req.ID, newProblem(ErrTooManyWatches, "this socket has %d watches, its limit; cancel one first or open another socket", n))
	}
	if auth := s.h.opts.Authorize; auth != nil {
		if err := auth(s.r, w.Key, w.End); err != nil {
			var p *Problem
			if !errors.As(err, &p) {
				p = newProblem(ErrForbidden, "%v", err)
			}
			return s.replyError(req.ID, p)
		}
	}
	hreq := watchhub.WatchRequest{
		ID:       req.ID,
		Key:      w.Key,
		End:      w.End,
		StartRev: w.Rev,
		PrevKV:   w.PrevKV,
		NoPut:    w.NoPut,
		NoDelete: w.NoDelete,
		Snapshot: w.Snapshot,
	}
	_, err := s.stream.Watch(hreq)
	for errors.Is(err, watchhub.ErrStreamFull) {
		// The client adds watches faster than it reads their responses:
		// stop reading from it until the write loop has drained the
		// queue. A client that reads nothing is disconnected by the write
		// timeout meanwhile.
		select {
		case <-s.drained:
		case <-s.done:
			return false
		}
		_, err = s.stream.Watch(hreq)
	}
	switch {
	case err == nil:
		s.queued++
		return true
	case errors.Is(err, watchhub.ErrWatchExists):
		return s.replyError(req.ID, newProblem(ErrDuplicateID, "watch %q is already active on this socket; cancel it first or use another id", req.ID))
	case errors.Is(err, watchhub.ErrInvalidRange), errors.Is(err, watchhub.ErrInvalidRequest):
		return s.replyError(req.ID, newProblem(ErrBadKey, "%v", err))
	default:
		return false // the stream or the hub is closed
	}
}

func (s *socket) replyError(id string, err error) bool {
	var p *Problem
	if !errors.As(err, &p) {
		p = newProblem(ErrBadMessage, "%v", err)
	}
	return s.send(appendError(nil, id, p))
}

// send queues a reply of the read loop; it waits while the outbox is full
// and reports false if the socket ends meanwhile.
func (s *socket) send(msg []byte) bool {
	select {
	case s.outbox <- reply{after: s.queued, msg: msg}:
		return true
	case <-s.done:
		return false
	}
}

// writeLoop writes the socket's messages until it must close. It returns
// the close code and reason to send, or the write error that ended it, or
// neither when the read loop ended first.
func (s *socket) writeLoop() (websocket.StatusCode, string, error) {
	var expired <-chan time.Time
	if f := s.h.opts.Expires; f != nil {
		if t := f(s.r); !t.IsZero() {
			timer := time.NewTimer(time.Until(t))
			defer timer.Stop()
			expired = timer.C
		}
	}
	// After a burst the write loop and the hub's queue each hold an array
	// as large as the burst; they are kept while the socket is busy and
	// given up once it has been idle for shrinkAfter.
	shrink := time.NewTimer(shrinkAfter)
	shrink.Stop()
	defer shrink.Stop()
	for {
		outbox := s.outbox
		if s.next != nil {
			outbox = nil // a reply waits for its place already
		}
		closing, shrinking := false, false
		select {
		case <-shrink.C:
			shrinking = true
		case <-s.stream.Ready():
		case r := <-outbox:
			s.next = &r
		case <-s.stream.Done():
			closing = true // the hub closed: write what it queued, then go
		case <-s.readDone:
			select {
			case <-s.stream.Done():
				// The read loop ended because the hub closed.
				closing = true
			default:
				return 0, "", nil
			}
		case <-s.h.shutdownc:
			return websocket.StatusGoingAway, "server shutting down", nil
		case <-expired:
			return websocket.StatusPolicyViolation, "access expired", nil
		}
		if err := s.writeBatch(shrinking); err != nil {
			return 0, "", err
		}
		if cap(s.resps) > keepResponses {
			shrink.Reset(shrinkAfter)
		}
		if closing {
			return websocket.StatusGoingAway, "server shutting down", nil
		}
	}
}

// Bounds of what an idle socket keeps: no response array (one of up to
// keepResponses goes back to the streams' shared arrays after each
// batch), a larger one until it has been idle for shrinkAfter.
const (
	keepResponses = 256
	shrinkAfter   = time.Second
)

// writeBatch writes everything queued, corked, in order. With shrink it
// gives the hub no spare array, so the hub's queue array comes back, and
// drops its own afterwards.
func (s *socket) writeBatch(shrink bool) error {
	if shrink {
		s.resps = nil
	}
	s.resps = s.stream.Drain(s.resps[:0])
	select {
	case s.drained <- struct{}{}:
	default:
	}
	s.cork.cork()
	err := s.writeResponses()
	if shrink || cap(s.resps) <= keepResponses {
		// Released (events cleared, the array back to the streams'
		// shared ones): an idle socket holds no array.
		s.stream.Release(s.resps)
		s.resps = nil
	} else {
		clear(s.resps) // a burst's array, kept while the socket is busy
	}
	if err2 := s.cork.uncork(); err == nil {
		err = err2
	}
	sent, oldest := s.sent, s.oldestNotify
	s.sent, s.oldestNotify, s.lastCounted = 0, time.Time{}, nil
	if err == nil && sent > 0 {
		s.h.opts.OnSend(sent, oldest)
	}
	return err
}

func (s *socket) writeResponses() error {
	for i := range s.resps {
		r := &s.resps[i]
		if r.Kind == watchhub.KindCreated || r.Kind == watchhub.KindCanceled {
			if err := s.writeReplies(); err != nil {
				return err
			}
			s.written++
		}
		if err := s.writeResponse(r); err != nil {
			return err
		}
	}
	return s.writeReplies()
}

// writeReplies writes the outbox's replies whose place has come.
func (s *socket) writeReplies() error {
	for {
		if s.next == nil {
			select {
			case r := <-s.outbox:
				s.next = &r
			default:
				return nil
			}
		}
		if s.next.after > s.written {
			return nil
		}
		if err := s.write(s.next.msg); err != nil {
			return err
		}
		s.next = nil
	}
}

// writeResponse writes one hub response as its protocol messages.
func (s *socket) writeResponse(r *watchhub.Response) error {
	switch r.Kind {
	case watchhub.KindCreated:
		return s.write(appendRevMessage(s.msg[:0], TypeCreated, r.WatchID, r.Revision))
	case watchhub.KindEvents, watchhub.KindSnapshot:
		if r.Kind == watchhub.KindEvents && s.h.opts.OnSend != nil {
			s.countSent(r.Events)
		}
		return s.writeEvents(r)
	case watchhub.KindProgress:
		return s.write(appendProgress(s.msg[:0], r.Revision))
	case watchhub.KindReset:
		return s.write(appendRevMessage(s.msg[:0], TypeReset, r.WatchID, r.Revision))
	case watchhub.KindSynced:
		return s.write(appendRevMessage(s.msg[:0], TypeSynced, r.WatchID, r.Revision))
	case watchhub.KindCompacted:
		return s.write(appendCompacted(s.msg[:0], r.WatchID, r.CompactRevision, r.Revision))
	case watchhub.KindCanceled:
		return s.write(appendCanceled(s.msg[:0], r.WatchID, r.Reason))
	case watchhub.KindError:
		s.log.Warn().Err(r.Err).Str("watch", r.WatchID).Msg("watch failed")
		p := newProblem(ErrWatchFailed, "the server could not serve this watch; watch again from the last revision received + 1")
		return s.write(appendError(s.msg[:0], r.WatchID, p))
	}
	// KindWatchProgress is never asked for on a socket.
	return nil
}

// writeEvents writes an events or snapshot response as events messages of
// about MaxEventsMessage bytes at most, split only between revisions. Each
// message's revision is the last revision it completes: the response's
// revision for its last message, the revision of its last event for the
// others. A snapshot chunk's messages all carry the snapshot's revision.
func (s *socket) writeEvents(r *watchhub.Response) error {
	evs := r.Events
	if len(evs) == 1 {
		// The common case of a live write: one event, one message.
		head := appendEventsStart(s.msg[:0], r.WatchID, r.Revision)
		s.msg = head
		return s.cork.writeEvent(head, evs[0].JSON(r.PrevKV))
	}
	limit := s.h.opts.MaxEventsMessage
	for i := 0; i < len(evs); {
		j, size := i, 0
		for j < len(evs) {
			// The next group that cannot be split: a revision's events,
			// or one put of a snapshot.
			k := j + 1
			if r.Kind == watchhub.KindEvents {
				for k < len(evs) && evs[k].KV.ModRevision == evs[j].KV.ModRevision {
					k++
				}
			}
			group := 0
			for _, e := range evs[j:k] {
				group += len(e.JSON(r.PrevKV)) + 1
			}
			if j > i && size+group > limit {
				break
			}
			size += group
			j = k
		}
		rev := r.Revision
		if j < len(evs) && r.Kind == watchhub.KindEvents {
			rev = evs[j-1].KV.ModRevision
		}
		head := appendEventsStart(s.msg[:0], r.WatchID, rev)
		s.msg = head
		// size counts a comma after every event; the message has one
		// fewer.
		if err := s.cork.writeEvents(head, evs[i:j], r.PrevKV, size-1); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// countSent adds evs, about to be written, to the batch's OnSend figures.
// A write that many watches of the socket match puts the same event in
// each of their responses: its notify time is looked at once.
func (s *socket) countSent(evs []*watchhub.Event) {
	s.sent += len(evs)
	for _, e := range evs {
		if e == s.lastCounted {
			continue
		}
		s.lastCounted = e
		if n := e.Notified(); !n.IsZero() && (s.oldestNotify.IsZero() || n.Before(s.oldestNotify)) {
			s.oldestNotify = n
		}
	}
}

// write sends one message. The connection is corked, so this only copies
// into the cork's buffer until it is large enough to be written; the
// network write has WriteTimeout as its deadline (corkConn).
func (s *socket) write(msg []byte) error {
	err := s.cork.writeText(msg)
	if cap(msg) <= 4<<10 {
		s.msg = msg[:0]
	} else {
		s.msg = nil // an error with a long id or reason; do not keep it
	}
	return err
}
