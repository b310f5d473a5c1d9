package policy_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	policyapi "github.com/sowerproject/sower/server/api/policy"
)

// branchPolicy gives host/loader create (append) on the branch "apps" only.
const branchPolicy = `
- !host loader
- !policy
  id: apps
  body: []
- !permit
  role: !host loader
  privileges: [read, create]
  resource: !policy apps
`

// TestAliasBombIsRefusedAndOtherLoadsGoOn: the 526-byte alias bomb, sent
// as a dry run by a host with only create on a branch, is refused with an
// error naming the alias limit, and an administrator's load sent at the
// same time is stored.
func TestAliasBombIsRefusedAndOtherLoadsGoOn(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	n := newNode(t, cli, bigTxns)
	if _, err := n.svc.LoadPolicy(as("admin"), loadReq("root", appendMode, branchPolicy)); err != nil {
		t.Fatal(err)
	}
	bomb, err := os.ReadFile("../../../policy/testdata/alias-bomb.yml")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg                sync.WaitGroup
		bombErr, adminErr error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		req := loadReq("apps", appendMode, string(bomb))
		req.DryRun = true
		_, bombErr = n.svc.LoadPolicy(as("host/loader"), req)
	}()
	go func() {
		defer wg.Done()
		_, adminErr = n.svc.LoadPolicy(as("admin"), loadReq("root", appendMode, "- !user alice\n"))
	}()
	wg.Wait()
	st, _ := status.FromError(bombErr)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "Aliases expand this policy to more than 10000 YAML nodes") {
		t.Fatalf("bomb: %v, want InvalidArgument naming the alias limit", bombErr)
	}
	if adminErr != nil {
		t.Fatalf("the load sent with the bomb: %v", adminErr)
	}
	if _, err := n.svc.LoadPolicy(as("admin"), loadReq("root", appendMode, "- !user bob\n")); err != nil {
		t.Fatalf("a load after the bomb: %v", err)
	}
}

// TestLoadStopsAtItsTimeout: a load that holds the policy lock longer than
// the load timeout is stopped with an answer naming the limit and its flag,
// and stores nothing.
func TestLoadStopsAtItsTimeout(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	n := newNode(t, cli, bigTxns, func(c *policyapi.Config) { c.LoadTimeout = time.Nanosecond })
	before := etcdState(t, cli)
	_, err := n.svc.LoadPolicy(as("admin"), loadReq("root", appendMode, "- !user alice\n"))
	st, _ := status.FromError(err)
	if st.Code() != codes.DeadlineExceeded || !strings.Contains(st.Message(), "policy load timeout (1ns, the node's --policy-load-timeout)") {
		t.Fatalf("LoadPolicy = %v, want DeadlineExceeded naming the policy load timeout", err)
	}
	if !sameState(before, etcdState(t, cli)) {
		t.Fatal("a load stopped at its timeout changed etcd")
	}
}

// TestCanceledLoadStopsAndStoresNothing: a load whose request has ended
// (the client went away) does no planning and stores nothing.
func TestCanceledLoadStopsAndStoresNothing(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	n := newNode(t, cli, bigTxns)
	before := etcdState(t, cli)
	ctx, cancel := context.WithCancel(as("admin"))
	cancel()
	_, err := n.svc.LoadPolicy(ctx, loadReq("root", appendMode, "- !user alice\n"))
	if st, _ := status.FromError(err); st.Code() != codes.Canceled {
		t.Fatalf("LoadPolicy = %v, want Canceled", err)
	}
	if !sameState(before, etcdState(t, cli)) {
		t.Fatal("a canceled load changed etcd")
	}
}

// TestOverLargeAnnotationIsInvalid: an annotation larger than etcd could
// store is refused as invalid policy (422 on the Conjur path) naming the
// limit, not failed in etcd (500), and nothing is stored.
func TestOverLargeAnnotationIsInvalid(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	n := newNode(t, cli, bigTxns)
	before := etcdState(t, cli)
	text := "- !variable\n  id: big\n  annotations:\n    blob: " + strings.Repeat("x", 2<<20) + "\n"
	_, err := n.svc.LoadPolicy(as("admin"), loadReq("root", appendMode, text))
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "annotation 'blob' is 2097156 bytes; the limit is 1048576 bytes") {
		t.Fatalf("LoadPolicy = %v, want InvalidArgument naming the annotation limit", err)
	}
	if !sameState(before, etcdState(t, cli)) {
		t.Fatal("a refused load changed etcd")
	}
}
