package kv_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/watchgate/watchgate/kv"
)

func ExampleStore() {
	dir, err := os.MkdirTemp("", "kv-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := kv.Open(dir, kv.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	// Subscribe returns the revision it starts after: an empty store is at 1.
	rev, cancel := s.Subscribe(func(bs []kv.Batch) {
		for _, b := range bs {
			for _, e := range b.Events {
				fmt.Printf("  event: %s %s at %d.%d\n", e.Type, e.KV.Key, b.Revision, e.Sub)
			}
		}
	})
	defer cancel()
	fmt.Println("subscribed after revision", rev)

	if _, err := s.Put(ctx, []byte("config/a"), []byte("on")); err != nil {
		log.Fatal(err)
	}
	put, err := s.Put(ctx, []byte("config/a"), []byte("off"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("put at revision", put.Revision)

	// Compare-and-swap: write config/b only if config/a was last changed
	// at put.Revision; both writes share one revision.
	txn, err := s.Txn(ctx, kv.TxnRequest{
		Compare: []kv.Compare{{Key: []byte("config/a"), Target: kv.CompareMod, Op: kv.CompareEqual, Number: put.Revision}},
		Success: []kv.Op{
			{Type: kv.OpPut, Key: []byte("config/b"), Value: []byte("1")},
			{Type: kv.OpDelete, Key: []byte("config/a")},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("txn succeeded:", txn.Succeeded, "at revision", txn.Revision)

	prefix := kv.RangeRequest{Key: []byte("config/"), End: kv.PrefixEnd([]byte("config/"))}
	now, err := s.Range(ctx, prefix)
	if err != nil {
		log.Fatal(err)
	}
	prefix.Rev = 3
	then, err := s.Range(ctx, prefix)
	if err != nil {
		log.Fatal(err)
	}
	for _, res := range []kv.RangeResult{now, then} {
		for _, kv := range res.KVs {
			fmt.Printf("at %d: %s=%s (version %d)\n", res.Rev, kv.Key, kv.Value, kv.Version)
		}
	}

	batches, next, err := s.History(ctx, 3, 0, 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("history from 3:", len(batches), "revisions, next", next)

	if err := s.Compact(ctx, 4); err != nil {
		log.Fatal(err)
	}
	_, err = s.Range(ctx, prefix)
	fmt.Println("read at 3 after compacting to 4:", err)
	// Output:
	// subscribed after revision 1
	//   event: put config/a at 2.0
	//   event: put config/a at 3.0
	// put at revision 3
	//   event: put config/b at 4.0
	//   event: delete config/a at 4.1
	// txn succeeded: true at revision 4
	// at 4: config/b=1 (version 1)
	// at 3: config/a=off (version 2)
	// history from 3: 2 revisions, next 5
	// read at 3 after compacting to 4: kv: required revision has been compacted: revision 3, compact revision 4
}
