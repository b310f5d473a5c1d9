package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestPrivateEtcdServesInProcessOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := StartPrivateEtcd(ctx, PrivateEtcdConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Client().Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := e.Client().Get(ctx, "/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
	if e.Revision() != resp.Header.Revision {
		t.Fatalf("Revision() = %d, want %d", e.Revision(), resp.Header.Revision)
	}
	if n := len(e.e.Clients) + len(e.e.Peers); n != 0 {
		t.Fatalf("private etcd has %d listeners, want none", n)
	}
}

// A Rebuildable etcd never fsyncs, so what a process left behind without
// closing it cleanly is thrown away at the next start; what it closed
// cleanly is kept.
func TestPrivateEtcdRebuildableKeepsOnlyCleanStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "replica")
	start := func() *Etcd {
		t.Helper()
		e, err := StartPrivateEtcd(ctx, PrivateEtcdConfig{Dir: dir, Rebuildable: true})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	count := func(e *Etcd) int {
		t.Helper()
		resp, err := e.Client().Get(ctx, "/k")
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Kvs)
	}

	e := start()
	if e.Discarded() {
		t.Fatal("a new directory was reported as discarded")
	}
	if _, err := e.Client().Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + ".clean"); err != nil {
		t.Fatalf("no clean mark after Close: %v", err)
	}

	e = start()
	if e.Discarded() || count(e) != 1 {
		t.Fatalf("after a clean stop: discarded %v, %d keys; want the copy kept", e.Discarded(), count(e))
	}
	if _, err := os.Stat(dir + ".clean"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the clean mark outlived the start: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash is a stop without the mark.
	if err := os.Remove(dir + ".clean"); err != nil {
		t.Fatal(err)
	}

	e = start()
	defer e.Close()
	if !e.Discarded() || count(e) != 0 {
		t.Fatalf("after an unclean stop: discarded %v, %d keys; want an empty copy", e.Discarded(), count(e))
	}
}

// BulkPut writes a batch as one revision that a watch sees like any other
// and that a clean stop keeps; it is refused on an etcd that is not a
// rebuildable cache and while the NOSPACE alarm is raised.
func TestPrivateEtcdBulkPut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	plain, err := StartPrivateEtcd(ctx, PrivateEtcdConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.BulkPut([]string{"/k"}, [][]byte{[]byte("v")}); !errors.Is(err, ErrNotRebuildable) {
		t.Fatalf("BulkPut on a durable etcd: %v, want ErrNotRebuildable", err)
	}
	plain.Close()

	dir := filepath.Join(t.TempDir(), "replica")
	e, err := StartPrivateEtcd(ctx, PrivateEtcdConfig{Dir: dir, Rebuildable: true})
	if err != nil {
		t.Fatal(err)
	}
	wc := e.Client().Watch(ctx, "/b/", clientv3.WithPrefix(), clientv3.WithRev(e.Revision()+1))
	rev, err := e.BulkPut([]string{"/b/1", "/b/2", "/b/3"}, [][]byte{[]byte("1"), []byte("2"), []byte("3")})
	if err != nil {
		t.Fatal(err)
	}
	if rev != e.Revision() {
		t.Fatalf("BulkPut returned revision %d, the store is at %d", rev, e.Revision())
	}
	wr := <-wc
	if len(wr.Events) != 3 || wr.Events[0].Kv.ModRevision != rev || string(wr.Events[2].Kv.Value) != "3" {
		t.Fatalf("the watch saw %+v, want the three puts at revision %d", wr.Events, rev)
	}
	// Writes through raft go on from there.
	resp, err := e.Client().Put(ctx, "/after", "x")
	if err != nil || resp.Header.Revision != rev+1 {
		t.Fatalf("a put after the bulk write: %v at %d, want revision %d", err, resp.Header.Revision, rev+1)
	}
	if _, err := e.e.Server.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: uint64(e.e.Server.MemberID()), Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.BulkPut([]string{"/b/4"}, [][]byte{nil}); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("BulkPut under the NOSPACE alarm: %v, want ErrNoSpace", err)
	}
	if _, err := e.e.Server.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, MemberID: uint64(e.e.Server.MemberID()), Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.BulkPut([]string{"/b/5"}, [][]byte{nil}); !errors.Is(err, ErrEtcdStopped) {
		t.Fatalf("BulkPut after Close: %v, want ErrEtcdStopped", err)
	}

	e, err = StartPrivateEtcd(ctx, PrivateEtcdConfig{Dir: dir, Rebuildable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got, err := e.Client().Get(ctx, "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if e.Discarded() || len(got.Kvs) != 4 {
		t.Fatalf("after a clean stop: discarded %v, %d keys (%v); want the three bulk keys and /after", e.Discarded(), len(got.Kvs), got.Kvs)
	}
}
