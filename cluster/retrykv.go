package cluster

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// Reads through the in-process client are retried while etcd answers
// Unavailable ("leader changed", "no leader"), as clientv3's retry
// interceptor does for a networked client: the in-process client
// (v3client) calls the server directly and has no interceptor, so a read
// made during a raft election (a Standby starting just after it joined,
// while the Leader hands raft leadership over) failed at once and the node
// exited. Writes are not retried: a write refused that way may still have
// been applied, and its caller decides.
const (
	readRetries      = 20
	readRetryFirst   = 25 * time.Millisecond
	readRetryBackoff = 500 * time.Millisecond
)

// retryReads wraps cli's KV so that Get retries transient refusals.
func retryReads(cli *clientv3.Client) *clientv3.Client {
	cli.KV = retryKV{KV: cli.KV}
	return cli
}

type retryKV struct{ clientv3.KV }

func (k retryKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	wait := readRetryFirst
	for attempt := 1; ; attempt++ {
		resp, err := k.KV.Get(ctx, key, opts...)
		if err == nil || attempt == readRetries || !transient(err) {
			return resp, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, readRetryBackoff)
	}
}

// transient says whether etcd refused a request for a reason an election
// ends (its code is Unavailable: leader changed, no leader, timeouts due to
// a leader failure).
func transient(err error) bool {
	if ee, ok := rpctypes.Error(err).(rpctypes.EtcdError); ok {
		return ee.Code() == codes.Unavailable
	}
	return false
}
