package etcdstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/watchgate/watchgate/etcdstore"
	"github.com/watchgate/watchgate/etcdstore/etcdtest"
	"github.com/watchgate/watchgate/kv"
)

// TestTLSAndAuth runs a gateway against a cluster that requires client
// certificates and etcd authentication, with the options main passes from
// --etcd-cert, --etcd-key, --etcd-ca, --etcd-username and --etcd-password.
func TestTLSAndAuth(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{TLS: true})
	ctx := ctxT(t)
	cli := c.Client()
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("enabling etcd auth: %v", err)
		}
	}
	opts := testOptions(c)
	opts.CertFile, opts.KeyFile, opts.CAFile = c.TLS.ClientCert, c.TLS.ClientKey, c.TLS.CA
	opts.Username, opts.Password = "root", "root-pw"
	s := openStore(t, c, opts)
	f := subscribe(t, s)
	for i := range 3 {
		put(t, s, fmt.Sprintf("k%d", i), "v")
	}
	res, err := s.Range(ctx, kv.RangeRequest{Key: []byte("k"), End: kv.PrefixEnd([]byte("k"))})
	if err != nil || res.Count != 3 {
		t.Fatalf("Range = %+v, %v", res, err)
	}
	if bs := f.waitFor(t, res.Rev); len(bs) != 3 {
		t.Errorf("feed: %d revisions, want 3", len(bs))
	}
	if bs, next, err := s.History(ctx, 2, 0, 0); err != nil || len(bs) != 3 || next != 5 {
		t.Errorf("History = %d batches, next %d, %v", len(bs), next, err)
	}
	waitReady(t, s)

	for name, o := range map[string]func(*etcdstore.Options){
		"wrong password":    func(o *etcdstore.Options) { o.Password = "nope" },
		"no client cert":    func(o *etcdstore.Options) { o.CertFile, o.KeyFile = "", "" },
		"cert without key":  func(o *etcdstore.Options) { o.KeyFile = "" },
		"missing CA file":   func(o *etcdstore.Options) { o.CAFile = c.TLS.CA + ".missing" },
		"plain connections": func(o *etcdstore.Options) { o.CertFile, o.KeyFile, o.CAFile = "", "", "" },
	} {
		t.Run(name, func(t *testing.T) {
			bad := opts
			o(&bad)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			s, err := etcdstore.New(ctx, bad)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			t.Logf("New: %v", err)
		})
	}
}
