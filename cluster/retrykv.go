package cluster

import (
	"context"
	"sync/atomic"
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

// retryReads wraps cli's KV so that Get retries transient refusals, and
// records in seen the highest revision any answer or watch event of cli
// carried (see Etcd.SeenRevision).
func retryReads(cli *clientv3.Client, seen *revisionSeen) *clientv3.Client {
	cli.KV = retryKV{KV: cli.KV, seen: seen}
	cli.Watcher = seenWatcher{Watcher: cli.Watcher, seen: seen}
	return cli
}

// revisionSeen is the highest etcd revision the node's client has been
// told of, kept without a lock: reading the store's own revision takes the
// backend's read lock, which etcd holds through every backend commit and
// its fsync, so an answer stamped with it waited for the disk.
type revisionSeen struct{ v atomic.Int64 }

func (s *revisionSeen) observe(rev int64) {
	if s == nil {
		return
	}
	for {
		cur := s.v.Load()
		if rev <= cur || s.v.CompareAndSwap(cur, rev) {
			return
		}
	}
}

type retryKV struct {
	clientv3.KV
	seen *revisionSeen
}

func (k retryKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	wait := readRetryFirst
	for attempt := 1; ; attempt++ {
		resp, err := k.KV.Get(ctx, key, opts...)
		if err == nil && resp.Header != nil {
			k.seen.observe(resp.Header.Revision)
		}
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

func (k retryKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	resp, err := k.KV.Put(ctx, key, val, opts...)
	if err == nil && resp.Header != nil {
		k.seen.observe(resp.Header.Revision)
	}
	return resp, err
}

func (k retryKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	resp, err := k.KV.Delete(ctx, key, opts...)
	if err == nil && resp.Header != nil {
		k.seen.observe(resp.Header.Revision)
	}
	return resp, err
}

func (k retryKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	resp, err := k.KV.Do(ctx, op)
	if err == nil {
		switch {
		case resp.Get() != nil && resp.Get().Header != nil:
			k.seen.observe(resp.Get().Header.Revision)
		case resp.Put() != nil && resp.Put().Header != nil:
			k.seen.observe(resp.Put().Header.Revision)
		case resp.Del() != nil && resp.Del().Header != nil:
			k.seen.observe(resp.Del().Header.Revision)
		case resp.Txn() != nil && resp.Txn().Header != nil:
			k.seen.observe(resp.Txn().Header.Revision)
		}
	}
	return resp, err
}

func (k retryKV) Txn(ctx context.Context) clientv3.Txn {
	return seenTxn{Txn: k.KV.Txn(ctx), seen: k.seen}
}

type seenTxn struct {
	clientv3.Txn
	seen *revisionSeen
}

func (t seenTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	return seenTxn{Txn: t.Txn.If(cs...), seen: t.seen}
}

func (t seenTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	return seenTxn{Txn: t.Txn.Then(ops...), seen: t.seen}
}

func (t seenTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	return seenTxn{Txn: t.Txn.Else(ops...), seen: t.seen}
}

func (t seenTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	if err == nil && resp.Header != nil {
		t.seen.observe(resp.Header.Revision)
	}
	return resp, err
}

// seenWatcher records the revision of every watch answer before its
// watcher sees it, so that what a node learned through a watch (its policy
// graph, its caches) is never newer than SeenRevision.
type seenWatcher struct {
	clientv3.Watcher
	seen *revisionSeen
}

func (w seenWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	in := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for resp := range in {
			w.seen.observe(resp.Header.Revision)
			select {
			case out <- resp:
			case <-ctx.Done():
				// The caller stopped reading; drain until the watch
				// closes its channel (it does once ctx is done).
				for range in {
				}
				return
			}
		}
	}()
	return out
}
