package cluster

import (
	"context"
	"testing"
	"time"
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
