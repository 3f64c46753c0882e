package reliability

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
)

// historyLog assembles the store's whole history, from revision 1, out of
// pieces read from bbolt files: snapshots downloaded before each
// compaction (GET /v1/snapshot) and the data file after the final
// shutdown. Compaction is only ever asked up to the end of what was read,
// so no revision is lost to it.
type historyLog struct {
	mu      sync.Mutex
	batches []kv.Batch
	last    int64 // last recorded revision; 1 on an empty store
	// compared counts the revisions read twice and found equal (pieces
	// overlap), pieces the files read.
	compared, pieces int
}

func newHistoryLog() *historyLog { return &historyLog{last: 1} }

// Last is the last recorded revision.
func (h *historyLog) Last() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// errHistory marks a history that contradicts itself: a bug of the store.
var errHistory = errors.New("history")

// readFile opens the store in dir (a copy of a data directory), checks
// its bbolt file and adds its history (see add). It returns the file's
// revision and compact revision.
func (h *historyLog) readFile(ctx context.Context, dir string, overlap int64) (rev, compact int64, err error) {
	s, err := kv.Open(dir, kv.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		return 0, 0, fmt.Errorf("%w: bbolt check of %s: %v", errHistory, dir, err)
	}
	return h.add(ctx, s, overlap)
}

// historySource is a store whose history can be read: a kv store opened
// on a file, or an etcd cluster read through its own client.
type historySource interface {
	// Revisions returns the current and the compact revision.
	Revisions() (rev, compact int64)
	// History returns the batches from..to, at most about maxEvents
	// events, and the revision to read next.
	History(ctx context.Context, from, to int64, maxEvents int) ([]kv.Batch, int64, error)
}

// add adds the history of s after the recorded end; revisions it holds
// that were already recorded (back to overlap revisions) must be
// identical. It returns the source's revision and compact revision.
func (h *historyLog) add(ctx context.Context, s historySource, overlap int64) (rev, compact int64, err error) {
	rev, compact = s.Revisions()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pieces++
	if rev < h.last {
		return rev, compact, fmt.Errorf("%w: a file at revision %d, after revision %d was recorded: the revision went back", errHistory, rev, h.last)
	}
	if compact > h.last+1 {
		return rev, compact, fmt.Errorf("%w: file compacted at %d but only revisions up to %d were recorded", errHistory, compact, h.last)
	}
	// Overlap: what was recorded must still be there, unchanged.
	from := max(compact, h.last-overlap+1, 2)
	if from <= h.last {
		got, err := readHistory(ctx, s, from, h.last)
		if err != nil {
			return rev, compact, err
		}
		for _, b := range got {
			shrinkBatch(b)
		}
		i := sortSearchBatches(h.batches, from)
		want := h.batches[i:]
		if err := sameBatches(want, got); err != nil {
			return rev, compact, fmt.Errorf("%w: revisions %d..%d changed: %v", errHistory, from, h.last, err)
		}
		h.compared += int(h.last - from + 1)
	}
	if rev > h.last {
		got, err := readHistory(ctx, s, h.last+1, rev)
		if err != nil {
			return rev, compact, err
		}
		for _, b := range got {
			shrinkBatch(b)
			if b.Revision != h.last+1 {
				return rev, compact, fmt.Errorf("%w: revision %d follows %d: a revision is missing from the file", errHistory, b.Revision, h.last)
			}
			h.batches = append(h.batches, b)
			h.last = b.Revision
		}
		if h.last != rev {
			return rev, compact, fmt.Errorf("%w: file at revision %d holds history only up to %d", errHistory, rev, h.last)
		}
	}
	return rev, compact, nil
}

// shrinkBatch shrinks the values of a batch read from a file (see shrink).
func shrinkBatch(b kv.Batch) {
	for i := range b.Events {
		e := &b.Events[i]
		if len(e.KV.Value) > 64 {
			e.KV.Value = []byte(shrink(string(e.KV.Value)))
		}
		if e.PrevKV != nil && len(e.PrevKV.Value) > 64 {
			p := *e.PrevKV
			p.Value = []byte(shrink(string(p.Value)))
			e.PrevKV = &p
		}
	}
}

func sortSearchBatches(bs []kv.Batch, rev int64) int {
	lo, hi := 0, len(bs)
	for lo < hi {
		m := (lo + hi) / 2
		if bs[m].Revision < rev {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// readHistory reads every batch from..to.
func readHistory(ctx context.Context, s historySource, from, to int64) ([]kv.Batch, error) {
	var out []kv.Batch
	for from <= to {
		bs, next, err := s.History(ctx, from, to, 10000)
		if err != nil {
			return nil, fmt.Errorf("history %d..%d: %w", from, to, err)
		}
		out = append(out, bs...)
		if next <= from {
			return nil, fmt.Errorf("history %d..%d made no progress", from, to)
		}
		from = next
	}
	return out, nil
}

func sameBatches(want, got []kv.Batch) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d revisions, %d before", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Revision != g.Revision || len(w.Events) != len(g.Events) {
			return fmt.Errorf("revision %d (%d events) now %d (%d events)", w.Revision, len(w.Events), g.Revision, len(g.Events))
		}
		for j := range w.Events {
			a, b := &w.Events[j], &g.Events[j]
			if a.Type != b.Type || a.Sub != b.Sub || !bytes.Equal(a.KV.Key, b.KV.Key) || !bytes.Equal(a.KV.Value, b.KV.Value) ||
				a.KV.CreateRevision != b.KV.CreateRevision || a.KV.Version != b.KV.Version {
				return fmt.Errorf("revision %d event %d: %s now %s", w.Revision, j, fmtEvent(a), fmtEvent(b))
			}
		}
	}
	return nil
}

func fmtEvent(e *kv.Event) string {
	if e.Type == kv.EventDelete {
		return fmt.Sprintf("%d.%d delete %q", e.KV.ModRevision, e.Sub, e.KV.Key)
	}
	return fmt.Sprintf("%d.%d put %q=%q(c%d v%d)", e.KV.ModRevision, e.Sub, e.KV.Key, trimValue(string(e.KV.Value)), e.KV.CreateRevision, e.KV.Version)
}

// History returns the recorded history for the watch validator.
func (h *historyLog) History() (*watchtest.History, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return watchtest.NewHistory(1, h.batches)
}

// Batch returns revision rev's batch, if recorded.
func (h *historyLog) Batch(rev int64) (kv.Batch, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := sortSearchBatches(h.batches, rev)
	if i < len(h.batches) && h.batches[i].Revision == rev {
		return h.batches[i], true
	}
	return kv.Batch{}, false
}

// Around formats the batches from rev-before to rev+after, for failures.
func (h *historyLog) Around(rev int64, before, after int64) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for i := sortSearchBatches(h.batches, rev-before); i < len(h.batches) && h.batches[i].Revision <= rev+after; i++ {
		for _, e := range h.batches[i].Events {
			fmt.Fprintf(&b, "    %s\n", fmtEvent(&e))
		}
	}
	return b.String()
}

// downloadSnapshot fetches GET /v1/snapshot into dir/watchgate.db and
// returns the revision the answer claims (X-Revision).
func downloadSnapshot(ctx context.Context, c *http.Client, base, dir string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/snapshot", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("GET /v1/snapshot: status %d: %s", resp.StatusCode, b)
	}
	rev, err := strconv.ParseInt(resp.Header.Get("X-Revision"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: snapshot without X-Revision", errContract)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	f, err := os.Create(filepath.Join(dir, "watchgate.db"))
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return 0, fmt.Errorf("snapshot of %d bytes, %d announced", n, resp.ContentLength)
	}
	return rev, nil
}

// valueIndex maps every put value of the history to its events: a value
// is written by one request only, so it must appear at most once.
func valueIndex(batches []kv.Batch) (map[string]*kv.Event, error) {
	idx := map[string]*kv.Event{}
	for i := range batches {
		for j := range batches[i].Events {
			e := &batches[i].Events[j]
			if e.Type != kv.EventPut {
				continue
			}
			if prev, ok := idx[string(e.KV.Value)]; ok {
				return nil, fmt.Errorf("value %q written twice: %s and %s", trimValue(string(e.KV.Value)), fmtEvent(prev), fmtEvent(e))
			}
			idx[string(e.KV.Value)] = e
		}
	}
	return idx, nil
}

// checkAcknowledged checks every acknowledged write against the history:
// its revision holds exactly the events it made, and every put in the
// history comes from a request that was sent (acknowledged or unknown).
func checkAcknowledged(h *historyLog, ops []*op) []error {
	h.mu.Lock()
	batches := h.batches
	h.mu.Unlock()
	var errs []error
	idx, err := valueIndex(batches)
	if err != nil {
		errs = append(errs, err)
	}
	sent := map[string]bool{}
	for _, o := range ops {
		for _, v := range putValues(&o.In) {
			sent[v] = true
		}
	}
	for v, e := range idx {
		if !sent[v] {
			errs = append(errs, fmt.Errorf("%s: a value no request wrote", fmtEvent(e)))
		}
	}
	find := func(rev int64) (kv.Batch, bool) {
		i := sortSearchBatches(batches, rev)
		if i < len(batches) && batches[i].Revision == rev {
			return batches[i], true
		}
		return kv.Batch{}, false
	}
	for _, o := range ops {
		if o.Out.Unknown || !writes(o) {
			continue
		}
		b, ok := find(o.Out.Rev)
		if !ok {
			errs = append(errs, fmt.Errorf("acknowledged write lost: revision %d is not in the history: %s", o.Out.Rev, o))
			continue
		}
		if err := matchBatch(o, b); err != nil {
			errs = append(errs, fmt.Errorf("acknowledged write %s: revision %d holds %s: %v", o, b.Revision, fmtBatch(b), err))
		}
	}
	return errs
}

func fmtBatch(b kv.Batch) string {
	var parts []string
	for _, e := range b.Events {
		parts = append(parts, fmtEvent(&e))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// putValues lists the values a request may write.
func putValues(in *opInput) []string {
	switch in.Kind {
	case opPut:
		return []string{in.Value}
	case opTxn:
		var out []string
		for _, o := range in.Success {
			if o.Type == kv.OpPut {
				out = append(out, o.Value)
			}
		}
		return out
	}
	return nil
}

// writes reports whether an acknowledged request made a revision.
func writes(o *op) bool {
	switch o.In.Kind {
	case opPut:
		return o.Out.Status == 200 || o.Out.Status == 201
	case opDelete, opDeleteRange:
		return o.Out.Status == 200 && o.Out.Deleted > 0
	case opTxn:
		if !o.Out.Succeeded {
			return false
		}
		for _, s := range o.In.Success {
			if s.Type == kv.OpPut {
				return true
			}
		}
		return o.Out.Deleted > 0
	}
	return false
}

// matchBatch checks that batch b is exactly what o wrote.
func matchBatch(o *op, b kv.Batch) error {
	var want []txnOp
	switch o.In.Kind {
	case opPut:
		want = []txnOp{{Type: kv.OpPut, Key: o.In.Key, Value: o.In.Value}}
	case opDelete, opDeleteRange:
		want = []txnOp{{Type: kv.OpDelete, Key: o.In.Key, Prefix: o.In.Kind == opDeleteRange}}
	case opTxn:
		want = o.In.Success
	}
	evs := b.Events
	var deleted int64
	for _, w := range want {
		switch w.Type {
		case kv.OpPut:
			if len(evs) == 0 || evs[0].Type != kv.EventPut || string(evs[0].KV.Key) != w.Key || string(evs[0].KV.Value) != w.Value {
				return fmt.Errorf("put %q=%q missing or out of order", w.Key, trimValue(w.Value))
			}
			evs = evs[1:]
		case kv.OpDelete:
			for len(evs) > 0 && evs[0].Type == kv.EventDelete &&
				(string(evs[0].KV.Key) == w.Key || (w.Prefix && strings.HasPrefix(string(evs[0].KV.Key), w.Key))) {
				evs = evs[1:]
				deleted++
				if !w.Prefix {
					break
				}
			}
		}
	}
	if len(evs) > 0 {
		return fmt.Errorf("%d events the request did not make", len(evs))
	}
	if deleted != o.Out.Deleted {
		return fmt.Errorf("%d deletes, the answer said %d", deleted, o.Out.Deleted)
	}
	return nil
}
