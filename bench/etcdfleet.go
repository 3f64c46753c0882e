package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdFleet holds watches on etcd over raw gRPC watch streams (the
// Watch RPC through clientv3's connections): perStream watches a stream,
// streams spread over a few client connections, one reading goroutine a
// stream. Like the WebSocket fleet, it multiplexes without a goroutine
// per watch on the client. Connections are dialed by add, as the other
// fleets dial theirs.
type etcdFleet struct {
	fleetBase
	addr      string
	conns     int
	perStream int

	cmu     sync.Mutex
	clients map[int]*clientv3.Client

	mu      sync.Mutex
	streams []*etcdStream
	n       int
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

type etcdStream struct {
	f       *etcdFleet
	idx     int
	base    int
	count   int
	ws      pb.Watch_WatchClient
	pending atomic.Int64
	created chan struct{}
}

func newEtcdFleet(addr string, conns, perStream int) (*etcdFleet, error) {
	f := &etcdFleet{addr: addr, conns: max(conns, 1), perStream: perStream, clients: map[int]*clientv3.Client{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f, nil
}

// client returns connection i, dialing it the first time.
func (f *etcdFleet) client(i int) (*clientv3.Client, error) {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	if c := f.clients[i]; c != nil {
		return c, nil
	}
	c, err := newEtcdClient(f.addr)
	if err != nil {
		return nil, err
	}
	f.clients[i] = c
	return c, nil
}

func (f *etcdFleet) readers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

func (f *etcdFleet) add(ctx context.Context, specs []watchSpec) error {
	type chunk struct {
		s     *etcdStream
		specs []watchSpec
	}
	var chunks []chunk
	f.mu.Lock()
	for len(specs) > 0 {
		n := min(f.perStream, len(specs))
		s := &etcdStream{f: f, idx: len(f.streams), base: f.n, count: n, created: make(chan struct{})}
		f.streams = append(f.streams, s)
		chunks = append(chunks, chunk{s, specs[:n]})
		f.n += n
		specs = specs[n:]
	}
	f.mu.Unlock()
	return parallel(ctx, len(chunks), 32, func(ctx context.Context, i int) error {
		return chunks[i].s.open(ctx, chunks[i].specs)
	})
}

func (s *etcdStream) open(ctx context.Context, specs []watchSpec) error {
	c, err := s.f.client(s.idx % s.f.conns)
	if err != nil {
		return err
	}
	ws, err := pb.NewWatchClient(c.ActiveConnection()).Watch(s.f.ctx)
	if err != nil {
		return fmt.Errorf("etcd watch stream: %w", err)
	}
	s.ws = ws
	s.pending.Store(int64(len(specs)))
	s.f.wg.Add(1)
	go s.read()
	for i, sp := range specs {
		cr := &pb.WatchCreateRequest{Key: []byte(sp.key), StartRevision: sp.rev, WatchId: int64(i + 1)}
		if sp.prefix {
			cr.RangeEnd = []byte(clientv3.GetPrefixRangeEnd(sp.key))
		}
		if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}); err != nil {
			return fmt.Errorf("etcd watch create: %w", err)
		}
	}
	select {
	case <-s.created:
		return nil
	case <-ctx.Done():
		if err := s.f.err(); err != nil {
			return err
		}
		return fmt.Errorf("waiting for %d etcd created responses: %w", s.pending.Load(), ctx.Err())
	}
}

func (s *etcdStream) read() {
	defer s.f.wg.Done()
	for {
		resp, err := s.ws.Recv()
		if err != nil {
			s.f.fail(fmt.Errorf("etcd watch stream: %w", err))
			return
		}
		switch {
		case resp.Created:
			if resp.Canceled || resp.WatchId < 1 || resp.WatchId > int64(s.count) {
				s.f.fail(fmt.Errorf("etcd watch not created: id %d, %s", resp.WatchId, resp.CancelReason))
				return
			}
			if s.pending.Add(-1) == 0 {
				close(s.created)
			}
			continue
		case resp.Canceled || resp.CompactRevision != 0:
			s.f.fail(fmt.Errorf("etcd watch %d canceled (compact revision %d): %s", resp.WatchId, resp.CompactRevision, resp.CancelReason))
			return
		}
		w := s.base + int(resp.WatchId) - 1
		for _, ev := range resp.Events {
			s.f.emit(s.idx, w, ev.Kv.ModRevision, ev.Kv.Key)
		}
	}
}

func (f *etcdFleet) close() {
	f.closing.Store(true)
	f.cancel()
	f.wg.Wait()
	f.cmu.Lock()
	for _, c := range f.clients {
		c.Close()
	}
	f.cmu.Unlock()
}
