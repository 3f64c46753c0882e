package reliability

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/watchgate/watchgate/etcdstore/etcdtest"
	"github.com/watchgate/watchgate/kv"
)

// etcdDeployment is a tier of watchgate gateways (--backend=etcd) in front
// of one etcd cluster: killing a gateway leaves the others serving, and
// killing an etcd member (or the leader) leaves the cluster's quorum.
// Its history is read from etcd itself, through etcd's client, not
// through a gateway.
type etcdDeployment struct {
	ps      *procSet
	cluster *etcdtest.Cluster
	cli     *clientv3.Client
	// compactTo returns the highest compaction asked so far (etcd does not
	// report its compact revision).
	compactTo func() int64
}

// newEtcdDeployment starts an etcd cluster of members members and
// prepares gateways gateways in front of it (started by procs().startAll).
func newEtcdDeployment(tb testing.TB, bin string, members, gateways int, compactTo func() int64) *etcdDeployment {
	c := etcdtest.Start(tb, etcdtest.Options{Members: members})
	eps := strings.Join(c.Endpoints(), ",")
	tmp := tb.TempDir()
	d := &etcdDeployment{cluster: c, cli: c.Client(), compactTo: compactTo}
	d.ps = newProcSet(bin, gateways, func(i int) []string {
		return []string{"--backend", "etcd", "--etcd-endpoints", eps, "--data", filepath.Join(tmp, fmt.Sprintf("gateway-%d", i))}
	})
	return d
}

func (d *etcdDeployment) name() string {
	return fmt.Sprintf("%d gateways in front of a %d-member etcd cluster", d.ps.n(), d.cluster.Size())
}
func (d *etcdDeployment) procs() *procSet     { return d.ps }
func (d *etcdDeployment) unavailableOK() bool { return true }

// record reads etcd's history from the recorded end to its current
// revision.
func (d *etcdDeployment) record(ctx context.Context, hl *historyLog, overlap int64) (rev, compact int64, err error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := d.cli.Get(rctx, staticPrefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", errDown, err)
	}
	// etcd's compaction at C drops the deletes made at C (a tombstone is
	// never kept), so its whole history starts at C+1.
	compact = d.compactTo()
	if compact > 0 {
		compact++
	}
	return hl.add(rctx, &etcdHistory{cli: d.cli, rev: resp.Header.Revision, compact: compact}, overlap)
}

func (d *etcdDeployment) final(ctx context.Context, hl *historyLog) (int64, error) {
	rev, _, err := d.record(ctx, hl, 1000)
	return rev, err
}

// killMember kills an etcd member with SIGKILL: the leader, or another
// one. It returns the member's index.
func (d *etcdDeployment) killMember(leader bool, pick int) int {
	i := d.cluster.Leader()
	if !leader {
		i = (i + 1 + pick%(d.cluster.Size()-1)) % d.cluster.Size()
	}
	d.cluster.Kill(i)
	return i
}

// restartMember starts member i again and waits until it is healthy.
func (d *etcdDeployment) restartMember(i int) { d.cluster.Restart(i) }

// etcdHistory reads etcd's history with a watch from the first revision
// wanted, as `etcdctl watch --rev` would, and converts it to batches as
// the validator knows them: one per revision, events numbered in etcd's
// order, a delete's key-value holding only the key and the revision.
type etcdHistory struct {
	cli          *clientv3.Client
	rev, compact int64
}

func (e *etcdHistory) Revisions() (int64, int64) { return e.rev, e.compact }

func (e *etcdHistory) History(ctx context.Context, from, to int64, _ int) ([]kv.Batch, int64, error) {
	if from > to {
		return nil, from, nil
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := e.cli.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithPrevKV())
	var out []kv.Batch
	last := from - 1
	for last < to {
		resp, ok := <-wch
		if !ok {
			return nil, 0, fmt.Errorf("%w: etcd watch from %d ended at %d: %v", errDown, from, last, ctx.Err())
		}
		if err := resp.Err(); err != nil {
			if resp.CompactRevision > 0 {
				return nil, 0, fmt.Errorf("%w: etcd history from %d compacted at %d: %v", errHistory, from, resp.CompactRevision, err)
			}
			return nil, 0, fmt.Errorf("%w: etcd watch from %d: %v", errDown, from, err)
		}
		for _, ev := range resp.Events {
			rev := ev.Kv.ModRevision
			if rev > to {
				break
			}
			if n := len(out); n == 0 || out[n-1].Revision != rev {
				if rev <= last {
					return nil, 0, fmt.Errorf("%w: etcd watch gave revision %d after %d", errHistory, rev, last)
				}
				out = append(out, kv.Batch{Revision: rev})
				last = rev
			}
			b := &out[len(out)-1]
			k := ev.Kv
			x := kv.Event{Type: kv.EventPut, Sub: int32(len(b.Events)),
				KV: kv.KeyValue{Key: k.Key, Value: k.Value, CreateRevision: k.CreateRevision, ModRevision: k.ModRevision, Version: k.Version}}
			if ev.Type == mvccpb.DELETE {
				x.Type, x.KV = kv.EventDelete, kv.KeyValue{Key: k.Key, ModRevision: rev}
			}
			if p := ev.PrevKv; p != nil {
				x.PrevKV = &kv.KeyValue{Key: p.Key, Value: p.Value, CreateRevision: p.CreateRevision, ModRevision: p.ModRevision, Version: p.Version}
			}
			b.Events = append(b.Events, x)
		}
	}
	return out, to + 1, nil
}
