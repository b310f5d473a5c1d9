package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestBindCerts: a node adds its certificates to its record, idempotently,
// keeping the newest maxBoundSerials; an enrollment replaces the record,
// and the gate's check admits only recorded serials (or any serial of a
// name without a record).
func TestBindCerts(t *testing.T) {
	e := startMember(t, newSpec(t, "n1"))
	cli := e.Client()
	ctx := context.Background()
	v := &memberView{}
	src := &memberSource{srv: e.e.Server, cli: cli}

	if err := v.bound(src, "n2", "aa"); err != nil {
		t.Fatalf("a name without a record: %v, want admitted by name", err)
	}
	if err := BindCerts(ctx, cli, "n2", "a1", "a2"); err != nil {
		t.Fatal(err)
	}
	rev := func() int64 {
		resp, err := cli.Get(ctx, certKey("n2"))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("record: %v %v", resp, err)
		}
		return resp.Kvs[0].ModRevision
	}
	before := rev()
	if err := BindCerts(ctx, cli, "n2", "a2"); err != nil || rev() != before {
		t.Errorf("binding a recorded serial again: %v, record rewritten: %v", err, rev() != before)
	}
	if err := v.bound(src, "n2", "a1"); err != nil {
		t.Errorf("a recorded serial: %v", err)
	}
	if err := v.bound(src, "n2", "ff"); !errors.Is(err, ErrCertNotBound) {
		t.Errorf("an unrecorded serial: %v, want ErrCertNotBound", err)
	}
	for i := range maxBoundSerials {
		if err := BindCerts(ctx, cli, "n2", fmt.Sprintf("b%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.bound(src, "n2", "a1"); !errors.Is(err, ErrCertNotBound) {
		t.Errorf("a serial older than the last %d: %v, want ErrCertNotBound", maxBoundSerials, err)
	}
	if err := v.bound(src, "n2", fmt.Sprintf("b%d", maxBoundSerials-1)); err != nil {
		t.Errorf("the newest serial: %v", err)
	}

	// An enrollment under the same name replaces the record.
	if _, err := cli.Txn(ctx).Then(certRecordOp("n2", []string{"c1", "c2"})).Commit(); err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{"b0", fmt.Sprintf("b%d", maxBoundSerials-1)} {
		if err := v.bound(src, "n2", old); !errors.Is(err, ErrCertNotBound) {
			t.Errorf("serial %s of the former member after re-enrollment: %v, want ErrCertNotBound", old, err)
		}
	}
	resp, _ := cli.Get(ctx, certKey("n2"))
	if got := string(resp.Kvs[0].Value); got != `{"name":"n2","serials":["c1","c2"]}` {
		t.Errorf("record after enrollment: %s", resp.Kvs[0].Value)
	}
}

// TestGateReadAfterStop: a member that stops on its own (removed from the
// cluster) closes its backend while the gates may still recheck open
// connections; their reads must answer an error, not reach the closed
// backend (where a serializable range panics).
func TestGateReadAfterStop(t *testing.T) {
	e := startMember(t, newSpec(t, "n1"))
	src := &memberSource{srv: e.e.Server, cli: e.Client()}
	v := &memberView{}
	if err := v.bound(src, "n1", "aa"); err != nil {
		t.Fatalf("before the stop: %v", err)
	}
	e.e.Server.Stop()
	<-e.e.Server.StopNotify()
	err := v.bound(src, "n1", "aa")
	if !errors.Is(err, ErrCertNotBound) || !errors.Is(err, errMemberStopped) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after the stop: %v, want a refusal saying the member stopped", err)
	}
	if v.joining(src, "n1") {
		t.Fatal("a stopped member's join records admitted a name")
	}
}
