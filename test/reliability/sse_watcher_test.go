package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/watchgate/watchgate/internal/sseclient"
	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// sseWatcher follows one watch over Server-Sent Events as a careful
// EventSource would: it reconnects after every disconnect with
// Last-Event-ID, re-reads and watches again after compacted, and discards
// a snapshot cut before its synced.
type sseWatcher struct {
	log      *watchLog
	client   *http.Client
	base     func() string
	rest     *restClient // for the re-read after compacted
	rnd      *rand.Rand
	progress string // progress= parameter
	start    int64  // rev= of the first generation (0: from now)
	// ndjson watches in the newline-delimited JSON form and resumes with
	// the last_event_id query parameter instead of the header.
	ndjson bool

	// Faults the harness injects: cut drops the connection; pause stops
	// reading for a while; away disconnects and stays away for a while.
	cut   chan struct{}
	pause chan time.Duration
	away  chan time.Duration

	// pos is the last revision the stream is known complete up to (an
	// event's revision, a bookmark), for the drain at the end.
	pos atomic.Int64
}

func newSSEWatcher(l *watchLog, client *http.Client, base func() string, rest *restClient, seed uint64, progress string, start int64) *sseWatcher {
	return &sseWatcher{log: l, client: client, base: base, rest: rest, rnd: rand.New(rand.NewPCG(seed, 7)),
		progress: progress, start: start,
		cut: make(chan struct{}, 1), pause: make(chan time.Duration, 1), away: make(chan time.Duration, 1)}
}

// url builds the watch URL; startRev > 0 adds rev=, and an NDJSON watch
// gives its resume id as last_event_id.
func (w *sseWatcher) url(startRev int64, resumeID string) string {
	s := w.log.Spec
	q := url.Values{}
	if w.ndjson {
		q.Set("format", "ndjson")
		if resumeID != "" {
			q.Set("last_event_id", resumeID)
		}
	}
	switch {
	case s.Prefix:
		q.Set("prefix", "true")
	case s.End != "":
		q.Set("range_end", s.End)
	}
	if s.PrevKV {
		q.Set("prev_kv", "true")
	}
	switch {
	case s.NoPut:
		q.Set("events", "delete")
	case s.NoDelete:
		q.Set("events", "put")
	}
	if s.Snapshot {
		q.Set("snapshot", "true")
	}
	q.Set("progress", w.progress)
	if startRev > 0 {
		q.Set("rev", strconv.FormatInt(startRev, 10))
	}
	return w.base() + "/v1/watch/" + escapeKey(s.Key) + "?" + q.Encode()
}

// parseID turns a resume id into the position it resumes at: "R" at R+1,
// "R.S" inside R after S.
func parseID(id string) (int64, int32, bool) {
	r, s, dotted := strings.Cut(id, ".")
	rev, err := strconv.ParseInt(r, 10, 64)
	if err != nil || rev < 0 {
		return 0, 0, false
	}
	if !dotted {
		return rev + 1, 0, true
	}
	sub, err := strconv.ParseInt(s, 10, 32)
	if err != nil || sub < 0 {
		return 0, 0, false
	}
	return rev, int32(sub) + 1, true
}

// run follows the watch until ctx ends.
func (w *sseWatcher) run(ctx context.Context) {
	startRev := w.start
	w.log.newGeneration(startRev, 0, nil)
	var resumeID string
	conns := 0
	for ctx.Err() == nil {
		select {
		case d := <-w.away:
			w.log.stall()
			sleepCtx(ctx, d)
		default:
		}
		compacted := w.connect(ctx, &conns, &resumeID, startRev)
		if compacted && ctx.Err() == nil {
			// The client was told its position is gone: a reconnect with
			// the compacted id must get 204, then it re-reads and
			// watches again from the read's revision + 1.
			if w.rnd.IntN(4) == 0 {
				w.expectNoContent(ctx)
			}
			rev, kvs, err := w.reread(ctx)
			for err != nil && ctx.Err() == nil {
				sleepCtx(ctx, 50*time.Millisecond)
				rev, kvs, err = w.reread(ctx)
			}
			if ctx.Err() != nil {
				return
			}
			startRev, resumeID, conns = rev+1, "", 0
			w.log.newGeneration(startRev, rev, kvs)
		}
		sleepCtx(ctx, time.Duration(w.rnd.IntN(30))*time.Millisecond)
	}
}

// reread reads the watched range as the application does after a
// compacted event.
func (w *sseWatcher) reread(ctx context.Context) (int64, []kvRec, error) {
	return readSpec(ctx, w.rest, w.log.Spec)
}

// readSpec reads the keys a spec selects at the current revision.
func readSpec(ctx context.Context, r *restClient, s watchSpec) (int64, []kvRec, error) {
	q := url.Values{"limit": {"10000"}}
	switch {
	case s.Prefix:
		q.Set("prefix", "true")
	case s.End != "":
		q.Set("range_end", s.End)
	default:
		q.Set("range_end", s.Key+"\x00") // exactly the key, as a range
	}
	var a kvAnswer
	if _, err := r.getJSON(ctx, pathQuery("/v1/kv/"+escapeKey(s.Key), q), &a); err != nil {
		return 0, nil, err
	}
	if a.More {
		return 0, nil, errors.New("range read cut short")
	}
	recs, err := toRecs(a.KVs)
	return a.Revision, recs, err
}

// expectNoContent checks that resuming from the compacted id gets 204.
func (w *sseWatcher) expectNoContent(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url(0, "compacted"), nil)
	if err != nil {
		return
	}
	if !w.ndjson {
		req.Header.Set("Last-Event-ID", "compacted")
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusServiceUnavailable {
		w.log.breach("Last-Event-ID: compacted answered %d, want 204", resp.StatusCode)
	}
}

// connect serves one connection. It reports whether the watch ended with
// compacted.
func (w *sseWatcher) connect(ctx context.Context, conns *int, resumeID *string, startRev int64) (compacted bool) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, w.url(startRev, *resumeID), nil)
	if err != nil {
		w.log.breach("request: %v", err)
		return false
	}
	wantType := "text/event-stream"
	if w.ndjson {
		wantType = "application/x-ndjson"
	} else if *resumeID != "" {
		req.Header.Set("Last-Event-ID", *resumeID)
	}
	req.Header.Set("Accept", wantType)
	resp, err := w.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		return false // shutting down
	default:
		w.log.breach("watch answered %d (Last-Event-ID %q)", resp.StatusCode, *resumeID)
		return false
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != wantType {
		w.log.breach("watch answered Content-Type %q", resp.Header.Get("Content-Type"))
		return false
	}
	created, err := strconv.ParseInt(resp.Header.Get("X-Revision"), 10, 64)
	if err != nil {
		w.log.breach("watch answered without X-Revision")
		return false
	}
	snap := w.log.Spec.Snapshot
	*conns++
	if *conns > 1 {
		switch rev, sub, ok := parseID(*resumeID); {
		case ok:
			w.log.add(logEntry{Kind: entryResume, Rev: rev, Sub: sub, Conn: *conns})
		case startRev > 0:
			w.log.add(logEntry{Kind: entryResume, Rev: startRev, Conn: *conns})
		default:
			w.log.add(logEntry{Kind: entryRestart, Conn: *conns})
		}
	}
	w.log.item(*conns, watchtest.Item{Kind: watchtest.Created, Revision: created})
	if *resumeID == "" && startRev == 0 && !snap {
		// A watch from "now" learns its position from the answer.
		*resumeID = strconv.FormatInt(created, 10)
		w.pos.Store(created)
	}

	// The fault signals end the request from outside the read loop.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-w.cut:
			cancel()
		case <-done:
		}
	}()

	var p eventReader = sseclient.NewParser(resp.Body)
	if w.ndjson {
		p = newNDJSONReader(resp.Body, *resumeID)
	}
	inSnap, snapMark := false, 0
	defer func() {
		if inSnap {
			w.log.dropFrom(snapMark)
		}
	}()
	for {
		select {
		case d := <-w.pause:
			w.log.stall()
			sleepCtx(cctx, d)
		default:
		}
		ev, err := p.Next()
		if err != nil {
			return false
		}
		switch ev.Type {
		case "put", "delete":
			e, err := decodeSSEEvent(ev)
			if err != nil {
				w.log.breach("event %q: %v: %q", ev.Type, err, ev.Data)
				return false
			}
			if inSnap {
				e.ID = ""
				w.log.item(*conns, watchtest.Item{Kind: watchtest.Snapshot, Events: []watchtest.Event{e}})
				continue
			}
			w.log.item(*conns, watchtest.Item{Kind: watchtest.Events, Events: []watchtest.Event{e}})
			*resumeID = ev.ID
			if rev, sub, ok := parseID(ev.ID); ok && sub == 0 {
				w.pos.Store(rev - 1)
			}
		case "progress", "reset", "synced":
			var d struct {
				Revision int64 `json:"revision"`
			}
			if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.Revision <= 0 {
				w.log.breach("%s data %q", ev.Type, ev.Data)
				return false
			}
			switch ev.Type {
			case "progress":
				if ev.ID != strconv.FormatInt(d.Revision, 10) {
					w.log.breach("progress %d with id %q", d.Revision, ev.ID)
				}
				w.log.item(*conns, watchtest.Item{Kind: watchtest.Progress, Revision: d.Revision})
				*resumeID = ev.ID
				w.pos.Store(d.Revision)
			case "reset":
				snapMark, inSnap = w.log.mark(), true
				w.log.item(*conns, watchtest.Item{Kind: watchtest.Reset, Revision: d.Revision})
			case "synced":
				if ev.ID != strconv.FormatInt(d.Revision, 10) {
					w.log.breach("synced %d with id %q", d.Revision, ev.ID)
				}
				w.log.item(*conns, watchtest.Item{Kind: watchtest.Synced, Revision: d.Revision})
				inSnap = false
				*resumeID = ev.ID
				w.pos.Store(d.Revision)
			}
		case "compacted":
			var d struct {
				Compact  int64 `json:"compact_revision"`
				Revision int64 `json:"revision"`
			}
			if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.Compact <= 0 {
				w.log.breach("compacted data %q", ev.Data)
				return false
			}
			if ev.ID != "compacted" {
				w.log.breach("compacted event with id %q", ev.ID)
			}
			w.log.item(*conns, watchtest.Item{Kind: watchtest.Compacted, CompactRevision: d.Compact, Revision: d.Revision})
			*resumeID = ev.ID
			// The stream must end here.
			if ev, err := p.Next(); err == nil {
				w.log.breach("event %q after compacted", ev.Type)
			}
			return true
		case "error":
			w.log.breach("error event: %s", ev.Data)
			w.log.item(*conns, watchtest.Item{Kind: watchtest.Error})
			return false
		default:
			w.log.breach("unknown event type %q: %q", ev.Type, ev.Data)
			return false
		}
	}
}

// decodeSSEEvent decodes a put or delete event's data: the kv with its
// prev_kv inside.
func decodeSSEEvent(ev sseclient.Event) (watchtest.Event, error) {
	var k kvjson.KeyValue
	if err := json.Unmarshal([]byte(ev.Data), &k); err != nil {
		return watchtest.Event{}, err
	}
	e := watchtest.Event{ID: ev.ID, Type: kv.EventPut}
	if ev.Type == "delete" {
		e.Type = kv.EventDelete
	}
	var err error
	if e.KV, err = toKV(&k); err != nil {
		return e, err
	}
	if k.PrevKV != nil {
		p, err := toKV(k.PrevKV)
		if err != nil {
			return e, err
		}
		e.PrevKV = &p
	}
	return e, nil
}

// toKV converts a decoded kv to the store's type.
func toKV(k *kvjson.KeyValue) (kv.KeyValue, error) {
	key, err := k.KeyBytes()
	if err != nil {
		return kv.KeyValue{}, err
	}
	v, err := k.ValueBytes()
	if err != nil {
		return kv.KeyValue{}, err
	}
	if v != nil {
		v = []byte(shrink(string(v)))
	}
	return kv.KeyValue{Key: key, Value: v, CreateRevision: k.CreateRevision, ModRevision: k.ModRevision, Version: k.Version}, nil
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// eventReader reads a watch stream's events: sseclient.Parser, or
// ndjsonReader for the NDJSON form.
type eventReader interface {
	Next() (sseclient.Event, error)
}

// ndjsonReader reads the NDJSON form of a watch and gives each line as the
// SSE event it stands for: the same id (kept from the last line that had
// one, as an EventSource keeps its last event id), type and data.
type ndjsonReader struct {
	r      *bufio.Reader
	lastID string
}

func newNDJSONReader(r io.Reader, lastID string) *ndjsonReader {
	return &ndjsonReader{r: bufio.NewReaderSize(r, 64<<10), lastID: lastID}
}

func (n *ndjsonReader) Next() (sseclient.Event, error) {
	line, err := n.r.ReadBytes('\n')
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF // a line cut off is no line
		}
		return sseclient.Event{}, err
	}
	var m struct {
		ID              *string         `json:"id"`
		Type            string          `json:"type"`
		Revision        int64           `json:"revision"`
		CompactRevision int64           `json:"compact_revision"`
		KV              json.RawMessage `json:"kv"`
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return sseclient.Event{}, fmt.Errorf("ndjson line %q: %w", line, err)
	}
	if m.ID != nil {
		n.lastID = *m.ID
	}
	ev := sseclient.Event{ID: n.lastID, Type: m.Type}
	switch m.Type {
	case "put", "delete":
		ev.Data = string(m.KV)
	case "compacted":
		ev.Data = fmt.Sprintf(`{"compact_revision":%d,"revision":%d}`, m.CompactRevision, m.Revision)
	case "error":
		ev.Data = string(line)
	default:
		ev.Data = fmt.Sprintf(`{"revision":%d}`, m.Revision)
	}
	return ev, nil
}
