package cluster

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// failingKV fails its first fails Gets with err.
type failingKV struct {
	clientv3.KV
	fails, calls int
	err          error
}

func (f *failingKV) Get(context.Context, string, ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	f.calls++
	if f.calls <= f.fails {
		return nil, f.err
	}
	return &clientv3.GetResponse{}, nil
}

func TestRetryKVRetriesElectionRefusals(t *testing.T) {
	for _, err := range []error{rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader, rpctypes.ErrGRPCLeaderChanged} {
		f := &failingKV{fails: 3, err: err}
		if _, got := (retryKV{KV: f}).Get(context.Background(), "k"); got != nil {
			t.Errorf("%v: Get failed after retries: %v", err, got)
		}
		if f.calls != 4 {
			t.Errorf("%v: %d calls, want 4 (3 refusals, then the answer)", err, f.calls)
		}
	}
}

func TestRetryKVGivesUp(t *testing.T) {
	other := errors.New("etcdserver: permission denied")
	f := &failingKV{fails: 5, err: other}
	if _, err := (retryKV{KV: f}).Get(context.Background(), "k"); err != other || f.calls != 1 {
		t.Errorf("a lasting error: got %v after %d calls, want it at once", err, f.calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f = &failingKV{fails: 1000, err: rpctypes.ErrLeaderChanged}
	if _, err := (retryKV{KV: f}).Get(ctx, "k"); err == nil || f.calls != 1 {
		t.Errorf("a cancelled read: got %v after %d calls, want the refusal at once", err, f.calls)
	}
	f = &failingKV{fails: 1000, err: rpctypes.ErrLeaderChanged}
	if _, err := (retryKV{KV: f}).Get(context.Background(), "k"); err == nil || f.calls != readRetries {
		t.Errorf("an election that never ends: got %v after %d calls, want the refusal after %d", err, f.calls, readRetries)
	}
}
