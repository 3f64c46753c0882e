package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/watchgate/watchgate/kv"
)

var (
	// ErrUnavailable reports an etcd cluster that did not answer: no
	// member reachable, no leader, or no answer within the request
	// timeout. A write that fails with it may still have been applied
	// (etcd itself cannot tell); read the key to know.
	ErrUnavailable = errors.New("etcdstore: etcd cluster unavailable")
	// ErrDuplicateKey is returned by Txn for a branch that writes one key
	// twice (two puts, or a put inside a deleted range). The kv store
	// allows it, etcd refuses it.
	ErrDuplicateKey = errors.New("etcdstore: a transaction branch may write a key only once")
	// ErrFeedLost is the permanent failure of a gateway whose commit feed
	// cannot resume: the revision it needed next was compacted while it
	// was cut off from etcd. The gateway must be restarted; its watch
	// clients resume elsewhere by revision (and are told in-band of the
	// compaction if their own revision is gone).
	ErrFeedLost = errors.New("etcdstore: commit feed lost to compaction")
)

// mapErr turns an error of the etcd client into the kv package's sentinel
// errors where one fits, and into ErrUnavailable for a cluster that did not
// answer. ctx is the caller's context: its own cancellation passes through
// as is.
func mapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx != nil && ctx.Err() != nil {
		return fmt.Errorf("etcdstore: %s: %w", op, ctx.Err())
	}
	err = rpctypes.Error(err)
	var kind error
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		kind = kv.ErrCompacted
	case errors.Is(err, rpctypes.ErrFutureRev):
		kind = kv.ErrFutureRev
	case errors.Is(err, rpctypes.ErrDuplicateKey):
		kind = ErrDuplicateKey
	case errors.Is(err, rpctypes.ErrTooManyOps):
		kind = kv.ErrTooManyOps
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		kind = kv.ErrValueTooLarge
	case errors.Is(err, rpctypes.ErrEmptyKey):
		kind = kv.ErrEmptyKey
	case errors.Is(err, context.DeadlineExceeded):
		// Our own request timeout: the caller's context is still live.
		return fmt.Errorf("etcdstore: %s: %w: %w", op, ErrUnavailable, err)
	case unavailable(err):
		kind = ErrUnavailable
	}
	if kind == nil {
		return fmt.Errorf("etcdstore: %s: %w", op, err)
	}
	return fmt.Errorf("%w (etcd: %s: %v)", kind, op, err)
}

// unavailable reports whether err says that the cluster, not the request,
// failed: no leader, a leader change, a timeout, an unreachable member.
func unavailable(err error) bool {
	switch {
	case errors.Is(err, rpctypes.ErrNoLeader),
		errors.Is(err, rpctypes.ErrLeaderChanged),
		errors.Is(err, rpctypes.ErrNotCapable),
		errors.Is(err, rpctypes.ErrStopped),
		errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost),
		errors.Is(err, rpctypes.ErrTimeoutWaitAppliedIndex),
		errors.Is(err, rpctypes.ErrUnhealthy),
		errors.Is(err, rpctypes.ErrTooManyRequests):
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	if s, ok := status.FromError(err); ok {
		return s.Code() == codes.Unavailable || s.Code() == codes.DeadlineExceeded
	}
	return false
}
