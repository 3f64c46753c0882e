package kv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// crashChild is the child process of TestCrashRecovery: it opens the store
// in $KV_DIR and writes from several goroutines until it is killed,
// printing every acknowledged write as "put KEY REV" (unique keys, never
// deleted) or "hot KEY REV" (keys overwritten by everyone), and compacting
// as it goes so that a kill can land in the middle of a compaction.
func crashChild() int {
	dir, cycle := os.Getenv("KV_DIR"), os.Getenv("KV_CYCLE")
	s, err := Open(dir, Options{compactChunk: 16})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		return 1
	}
	ctx := context.Background()
	var outMu sync.Mutex
	emit := func(kind string, key []byte, rev int64) {
		line := fmt.Sprintf("%s %x %d\n", kind, key, rev)
		outMu.Lock()
		// One write per line: a kill never leaves half a line.
		_, _ = os.Stdout.WriteString(line)
		outMu.Unlock()
	}
	for w := 0; w < 8; w++ {
		go func() {
			for n := 0; ; n++ {
				key := []byte(fmt.Sprintf("c%s/w%d/%06d", cycle, w, n))
				resp, err := s.Put(ctx, key, []byte(strings.Repeat("v", n%200)))
				if err != nil {
					fmt.Fprintln(os.Stderr, "child: put:", err)
					os.Exit(1)
				}
				emit("put", key, resp.Revision)
				hot := []byte(fmt.Sprintf("hot/%d", n%5))
				resp, err = s.Txn(ctx, TxnRequest{Success: []Op{
					{Type: OpPut, Key: hot, Value: key},
					{Type: OpDelete, Key: []byte("tmp/"), End: PrefixEnd([]byte("tmp/"))},
					{Type: OpPut, Key: []byte(fmt.Sprintf("tmp/%d", w)), Value: key},
				}})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child: txn:", err)
					os.Exit(1)
				}
				emit("hot", hot, resp.Revision)
			}
		}()
	}
	for {
		time.Sleep(5 * time.Millisecond)
		if rev, compact := s.Revisions(); rev-100 > compact {
			if err := s.Compact(ctx, rev-100); err != nil {
				fmt.Fprintln(os.Stderr, "child: compact:", err)
				return 1
			}
		}
	}
}

type ack struct {
	kind string
	key  []byte
	rev  int64
}

// parseAcks reads the child's lines until EOF, closing first after the
// first one.
func parseAcks(t *testing.T, r io.Reader, first chan<- struct{}) []ack {
	var acks []ack
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if len(acks) == 0 {
			close(first)
		}
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			t.Errorf("bad child line %q", sc.Text())
			continue
		}
		var a ack
		a.kind = f[0]
		if _, err := fmt.Sscanf(f[1], "%x", &a.key); err != nil {
			t.Errorf("bad key in %q", sc.Text())
		}
		rev, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Errorf("bad revision in %q", sc.Text())
		}
		a.rev = rev
		acks = append(acks, a)
	}
	return acks
}

// TestCrashRecovery kills a writing process with SIGKILL at a random moment,
// several times, and checks after each kill that every acknowledged write
// is there with its revision, that the revision never went back, and that
// the file is consistent (including after an interrupted compaction).
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	var lastRev int64 = 1
	total, interrupted := 0, 0
	for cycle := 0; cycle < 4; cycle++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "KV_CHILD=1", "KV_DIR="+dir, "KV_CYCLE="+strconv.Itoa(cycle))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acksc := make(chan []ack)
		first := make(chan struct{})
		go func() { acksc <- parseAcks(t, out, first) }()
		// Kill once the child has acknowledged something, at a random
		// moment after that.
		select {
		case <-first:
		case <-time.After(30 * time.Second):
			t.Log("child acknowledged nothing in 30s")
		}
		time.Sleep(time.Duration(50+rand.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		acks := <-acksc
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("cycle %d: child ended by itself (%v): %s", cycle, err, stderr.String())
		}
		if len(acks) == 0 {
			t.Fatalf("cycle %d: child acknowledged nothing: %s", cycle, stderr.String())
		}
		total += len(acks)

		if compactionUnfinished(t, dir) {
			interrupted++
		}
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("cycle %d: reopen: %v", cycle, err)
		}
		rev, _ := s.Revisions()
		maxAck := int64(0)
		for _, a := range acks {
			maxAck = max(maxAck, a.rev)
		}
		if rev < maxAck || rev < lastRev {
			t.Fatalf("cycle %d: revision %d after restart; acknowledged %d, before %d", cycle, rev, maxAck, lastRev)
		}
		lastRev = rev
		for _, a := range acks {
			res := mustRange(t, s, RangeRequest{Key: a.key})
			switch {
			case len(res.KVs) != 1:
				t.Fatalf("cycle %d: acknowledged %s %q at %d is missing", cycle, a.kind, a.key, a.rev)
			case a.kind == "put" && res.KVs[0].ModRevision != a.rev:
				t.Fatalf("cycle %d: %q at %d, acknowledged at %d", cycle, a.key, res.KVs[0].ModRevision, a.rev)
			case a.kind == "hot" && res.KVs[0].ModRevision < a.rev:
				t.Fatalf("cycle %d: hot %q at %d, acknowledged at %d", cycle, a.key, res.KVs[0].ModRevision, a.rev)
			}
		}
		// History from the compact revision is complete and ordered.
		_, compact := s.Revisions()
		bs, next, err := s.History(context.Background(), compact, 0, 0)
		if err != nil || next != rev+1 {
			t.Fatalf("cycle %d: History: next %d, %v", cycle, next, err)
		}
		for i := 1; i < len(bs); i++ {
			if bs[i].Revision <= bs[i-1].Revision {
				t.Fatalf("cycle %d: history out of order", cycle)
			}
		}
		checkAndClose(t, s)
	}
	t.Logf("%d acknowledged writes checked over 4 kills (%d in a compaction); revision %d", total, interrupted, lastRev)
}

// compactionUnfinished reports whether the store file in dir was left in
// the middle of a compaction.
func compactionUnfinished(t *testing.T, dir string) bool {
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var unfinished bool
	if err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		unfinished = !bytes.Equal(meta.Get(metaCompact), meta.Get(metaCompactDone))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return unfinished
}
