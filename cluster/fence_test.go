package cluster

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestFencedClient(t *testing.T) {
	n := runNode(t, startMember(t, newSpec(t, "m1")), MinFailoverTTL)
	eventually(t, "m1 leads", n.el.IsLeader)
	ctx := context.Background()
	cli := n.el.FencedClient(n.etcd.Client())
	stale, err := NewElection(ElectionConfig{Client: n.etcd.Client(), Self: Leader{Name: "old", MemberID: 7}})
	if err != nil {
		t.Fatal(err)
	}
	stale.rev.Store(1) // a term long over
	staleCli := stale.FencedClient(n.etcd.Client())

	tests := map[string]struct {
		cli     *clientv3.Client
		write   func(*clientv3.Client) error
		wantErr error
	}{
		"put on the Leader":    {cli, func(c *clientv3.Client) error { _, err := c.Put(ctx, "/t/a", "1"); return err }, nil},
		"delete on the Leader": {cli, func(c *clientv3.Client) error { _, err := c.Delete(ctx, "/t/none"); return err }, nil},
		"do put on the Leader": {cli, func(c *clientv3.Client) error { _, err := c.Do(ctx, clientv3.OpPut("/t/b", "1")); return err }, nil},
		"txn on the Leader": {cli, func(c *clientv3.Client) error {
			r, err := c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision("/t/c"), "=", 0)).Then(clientv3.OpPut("/t/c", "1")).Commit()
			if err == nil && !r.Succeeded {
				return errors.New("own compare failed")
			}
			return err
		}, nil},
		"own compare fails without error": {cli, func(c *clientv3.Client) error {
			r, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Value("/t/a"), "=", "other")).Then(clientv3.OpPut("/t/a", "2")).Else(clientv3.OpGet("/t/a")).Commit()
			if err == nil && (r.Succeeded || string(r.Responses[0].GetResponseRange().Kvs[0].Value) != "1") {
				return errors.New("the else branch did not run")
			}
			return err
		}, nil},
		"read-only txn on a former Leader": {staleCli, func(c *clientv3.Client) error {
			_, err := c.Txn(ctx).Then(clientv3.OpGet("/t/a")).Commit()
			return err
		}, nil},
		"get on a former Leader":    {staleCli, func(c *clientv3.Client) error { _, err := c.Get(ctx, "/t/a"); return err }, nil},
		"put on a former Leader":    {staleCli, func(c *clientv3.Client) error { _, err := c.Put(ctx, "/t/x", "1"); return err }, ErrNotLeader},
		"delete on a former Leader": {staleCli, func(c *clientv3.Client) error { _, err := c.Delete(ctx, "/t/a"); return err }, ErrNotLeader},
		"txn on a former Leader": {staleCli, func(c *clientv3.Client) error {
			_, err := c.Txn(ctx).Then(clientv3.OpPut("/t/x", "1")).Commit()
			return err
		}, ErrNotLeader},
	}
	for _, name := range []string{"put on the Leader", "delete on the Leader", "do put on the Leader", "txn on the Leader",
		"own compare fails without error", "read-only txn on a former Leader", "get on a former Leader",
		"put on a former Leader", "delete on a former Leader", "txn on a former Leader"} {
		tc := tests[name]
		t.Run(name, func(t *testing.T) {
			stale.rev.Store(1)
			if err := tc.write(tc.cli); !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if c := countKeys(t, n, "/t/x"); c != 0 {
		t.Fatal("a former Leader's write was applied")
	}
	if c := countKeys(t, n, "/t/a"); c != 1 {
		t.Fatal("a former Leader's delete was applied")
	}
}

func TestTTLChangeKeepsTheTerm(t *testing.T) {
	var ttl atomic.Int64
	ttl.Store(int64(DefaultFailoverTTL))
	e := startMember(t, newSpec(t, "m1"))
	remote, err := DialMembers([]string{e.ClientURL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	el, err := NewElection(ElectionConfig{Client: e.Client(), Self: Leader{Name: "m1", MemberID: e.Info().MemberID},
		TTL: func(context.Context) time.Duration { return time.Duration(ttl.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { el.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	eventually(t, "m1 leads", el.IsLeader)
	term := el.rev.Load()
	granted := func() int64 {
		resp, err := e.Client().Get(ctx, LeaderKey)
		if err != nil || len(resp.Kvs) != 1 {
			return 0
		}
		if resp.Kvs[0].CreateRevision != term {
			t.Fatalf("the term changed: key created at %d, term %d", resp.Kvs[0].CreateRevision, term)
		}
		tl, err := e.Client().TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
		if err != nil {
			return 0
		}
		return tl.GrantedTTL
	}
	eventually(t, "a lease of the default TTL", func() bool { return granted() == int64(DefaultFailoverTTL/time.Second) })
	ttl.Store(int64(3 * time.Second))
	eventually(t, "the key on a 3s lease", func() bool { return granted() == 3 })
	if !el.IsLeader() || el.rev.Load() != term {
		t.Fatal("changing the TTL ended the term")
	}
}
