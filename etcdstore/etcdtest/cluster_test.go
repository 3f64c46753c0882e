package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/watchgate/watchgate/etcdstore/etcdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestClusterSurvivesLeaderRestart checks the helper itself: the cluster
// elects a new leader when the leader is killed, and a write made while it
// is down reaches it once it restarted.
func TestClusterSurvivesLeaderRestart(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old := c.Leader()
	c.Kill(old)
	if c.Running(old) {
		t.Fatal("killed member still running")
	}
	if now := c.Leader(); now == old {
		t.Fatalf("member %d still reported as leader after it was killed", old)
	}
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put with the old leader down: %v", err)
	}
	c.Restart(old)
	for {
		st, err := cli.Status(ctx, c.Member(old).ClientURL)
		if err == nil && st.Header.Revision == 2 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("restarted member never reached revision 2: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
