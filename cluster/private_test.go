package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
