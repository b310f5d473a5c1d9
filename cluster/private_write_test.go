package cluster

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A direct write is one revision that watches see and raft writes follow,
// refused on a durable etcd, under the NOSPACE alarm and after Close, and
// kept by a clean stop.
func TestPrivateEtcdWriteDirect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	plain, err := StartPrivateEtcd(ctx, PrivateEtcdConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.WriteDirect(nil, []string{"/k"}, [][]byte{[]byte("v")}); !errors.Is(err, ErrNotRebuildable) {
		t.Fatalf("WriteDirect on a durable etcd: %v, want ErrNotRebuildable", err)
	}
	plain.Close()

	dir := filepath.Join(t.TempDir(), "replica")
	e, err := StartPrivateEtcd(ctx, PrivateEtcdConfig{Dir: dir, Rebuildable: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client().Put(ctx, "/d/gone", "x"); err != nil {
		t.Fatal(err)
	}
	wc := e.Client().Watch(ctx, "/d/", clientv3.WithPrefix(), clientv3.WithRev(e.Revision()+1))
	rev, err := e.WriteDirect([]string{"/d/gone", "/d/never"}, []string{"/d/1", "/d/2"}, [][]byte{[]byte("1"), []byte("2")})
	if err != nil {
		t.Fatal(err)
	}
	if rev != e.Revision() {
		t.Fatalf("WriteDirect returned revision %d, the store is at %d", rev, e.Revision())
	}
	wr := <-wc
	if len(wr.Events) != 3 || wr.Events[0].Type != mvccpb.DELETE || wr.Events[2].Kv.ModRevision != rev || string(wr.Events[2].Kv.Value) != "2" {
		t.Fatalf("the watch saw %+v, want a delete and two puts at revision %d", wr.Events, rev)
	}
	if again, err := e.WriteDirect([]string{"/d/never"}, nil, nil); err != nil || again != rev {
		t.Fatalf("a write that changes nothing: revision %d (%v), want %d", again, err, rev)
	}
	resp, err := e.Client().Put(ctx, "/d/after", "x")
	if err != nil || resp.Header.Revision != rev+1 {
		t.Fatalf("a put after the direct write: %v at %d, want revision %d", err, resp.Header.Revision, rev+1)
	}
	member := uint64(e.e.Server.MemberID())
	if _, err := e.e.Server.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: member, Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.WriteDirect(nil, []string{"/d/3"}, [][]byte{nil}); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("WriteDirect under the NOSPACE alarm: %v, want ErrNoSpace", err)
	}
	if _, err := e.e.Server.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, MemberID: member, Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.WriteDirect(nil, []string{"/d/4"}, [][]byte{nil}); !errors.Is(err, ErrEtcdStopped) {
		t.Fatalf("WriteDirect after Close: %v, want ErrEtcdStopped", err)
	}

	e, err = StartPrivateEtcd(ctx, PrivateEtcdConfig{Dir: dir, Rebuildable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got, err := e.Client().Get(ctx, "/d/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if e.Discarded() || len(got.Kvs) != 3 {
		t.Fatalf("after a clean stop: discarded %v, %d keys (%v); want /d/1, /d/2 and /d/after", e.Discarded(), len(got.Kvs), got.Kvs)
	}
}
