package cluster

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
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

// TestSeenRevision: the revision stamped on a node's answers is at least
// the revision of every write the node made and every watch event it was
// given, before the watcher sees the event, and never goes back.
func TestSeenRevision(t *testing.T) {
	e := startMember(t, newSpec(t, "n1"))
	cli := e.Client()
	ctx := context.Background()
	put, err := cli.Put(ctx, "/t/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.SeenRevision(); got < put.Header.Revision {
		t.Fatalf("after a put at %d: seen %d", put.Header.Revision, got)
	}
	txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("/t/a"), ">", 0)).Then(clientv3.OpPut("/t/b", "2")).Commit()
	if err != nil || !txn.Succeeded {
		t.Fatalf("txn: %v %v", txn, err)
	}
	if got := e.SeenRevision(); got < txn.Header.Revision {
		t.Fatalf("after a txn at %d: seen %d", txn.Header.Revision, got)
	}
	// A write the node's client did not make (another member's, here a
	// second client on the server) reaches the node through a watch.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wc := cli.Watch(wctx, "/t/c")
	other := v3client.New(e.e.Server)
	defer other.Close()
	op, err := other.Put(ctx, "/t/c", "3")
	if err != nil {
		t.Fatal(err)
	}
	ev := <-wc
	if len(ev.Events) != 1 || ev.Events[0].Kv.ModRevision != op.Header.Revision {
		t.Fatalf("watch: %+v", ev)
	}
	if got := e.SeenRevision(); got < op.Header.Revision {
		t.Fatalf("after a watch event at %d: seen %d", op.Header.Revision, got)
	}
	before := e.SeenRevision()
	if _, err := cli.Get(ctx, "/t/a", clientv3.WithRev(put.Header.Revision)); err != nil {
		t.Fatal(err)
	}
	if got := e.SeenRevision(); got < before {
		t.Fatalf("an old read took the revision back from %d to %d", before, got)
	}
	cancel()
	for range wc {
	}
}

// TestQuorumHistoryCompacted: a quorum member compacts its history (etcd
// keeps every overwritten and deleted value until it does, and the
// database would grow to its quota).
func TestQuorumHistoryCompacted(t *testing.T) {
	e := startMember(t, newSpec(t, "n1"))
	cfg := e.e.Config()
	if cfg.AutoCompactionMode != "periodic" || cfg.AutoCompactionRetention != historyRetention {
		t.Fatalf("auto-compaction %q %q, want periodic %s", cfg.AutoCompactionMode, cfg.AutoCompactionRetention, historyRetention)
	}
}
