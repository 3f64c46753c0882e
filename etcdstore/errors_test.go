package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/watchgate/watchgate/kv"
)

func TestMapErr(t *testing.T) {
	for _, tc := range []struct {
		in   error
		want error
	}{
		{rpctypes.ErrGRPCCompacted, kv.ErrCompacted},
		{rpctypes.ErrCompacted, kv.ErrCompacted},
		{rpctypes.ErrGRPCFutureRev, kv.ErrFutureRev},
		{rpctypes.ErrGRPCDuplicateKey, ErrDuplicateKey},
		{rpctypes.ErrGRPCTooManyOps, kv.ErrTooManyOps},
		{rpctypes.ErrGRPCRequestTooLarge, kv.ErrValueTooLarge},
		{rpctypes.ErrGRPCEmptyKey, kv.ErrEmptyKey},
		{rpctypes.ErrGRPCNoLeader, ErrUnavailable},
		{rpctypes.ErrGRPCLeaderChanged, ErrUnavailable},
		{rpctypes.ErrGRPCTimeoutDueToLeaderFail, ErrUnavailable},
		{status.Error(codes.Unavailable, "connection refused"), ErrUnavailable},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), ErrUnavailable},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), context.DeadlineExceeded},
	} {
		if got := mapErr(context.Background(), "op", tc.in); !errors.Is(got, tc.want) {
			t.Errorf("mapErr(%v) = %v, want it to wrap %v", tc.in, got, tc.want)
		}
	}
	if got := mapErr(context.Background(), "op", rpctypes.ErrGRPCPermissionDenied); errors.Is(got, ErrUnavailable) || got == nil {
		t.Errorf("mapErr(permission denied) = %v", got)
	}
	if got := mapErr(context.Background(), "op", nil); got != nil {
		t.Errorf("mapErr(nil) = %v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := mapErr(ctx, "op", rpctypes.ErrGRPCNoLeader); !errors.Is(got, context.Canceled) || errors.Is(got, ErrUnavailable) {
		t.Errorf("mapErr with the caller's context canceled = %v, want context.Canceled alone", got)
	}
}
