package clustertest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestAKilledLeadersLoadDoesNotHoldPolicy is issue 11's fifth point: kill
// -9 of the Leader while it writes a large policy load (one claimed in
// batches, under a 30 s lease) leaves the policy guard claimed; the new
// Leader rolls the load back as soon as it leads, so a load succeeds
// within the failover time, not after the dead writer's lease.
func TestAKilledLeadersLoadDoesNotHoldPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	h := newHarness(t, "prod", 2)
	l1 := h.node("leader-1", "127.0.0.2")
	s1 := h.node("standby-1", "127.0.0.3")
	s2 := h.node("standby-2", "127.0.0.4")
	all := []string{"leader-1", "standby-1", "standby-2"}
	if err := l1.start("--cluster", "prod"); err != nil {
		t.Fatal(err)
	}
	tok, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := h.loadPolicy(l1.url(), tok, h.clusterPolicy(all...)); err != nil || code != http.StatusCreated {
		t.Fatalf("load the cluster policy: %d %s %v", code, body, err)
	}
	for _, p := range []*proc{s1, s2} {
		if err := h.join(l1.url(), p); err != nil {
			t.Fatal(err)
		}
	}
	h.waitVoters(l1.url(), all...)

	// Watch the policy guard through a Standby's etcd with its own
	// member certificate.
	cli := h.etcdClient(t, s1, certOf(t, s1, "node"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wc := cli.Watch(ctx, "/sower/policy/guard")

	// Far more writes than one transaction takes (16,384 operations).
	var b strings.Builder
	b.WriteString("- !layer big\n")
	for i := range 40000 {
		fmt.Fprintf(&b, "- !host big-%05d\n", i)
	}
	go h.loadPolicy(l1.url(), tok, b.String())
	claimed := false
	for !claimed {
		select {
		case wr := <-wc:
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut && strings.Contains(string(ev.Kv.Value), `"intent"`) {
					claimed = true
				}
			}
		case <-ctx.Done():
			t.Fatal("the large load never claimed the policy guard")
		}
	}
	l1.kill9()
	newLeader := h.waitLeader(func(l leaderInfo) bool { return l.Name != "leader-1" })
	elected := time.Now()

	// Well under the dead writer's 30 s lease.
	tok2, err := h.authenticate(newLeader.URL)
	if err != nil {
		t.Fatal(err)
	}
	deadline := elected.Add(15 * time.Second)
	for {
		code, body, err := h.loadPolicy(newLeader.URL, tok2, "- !variable after-failover\n")
		if err == nil && code == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no load accepted within 15 s of %s leading: %d %s %v", newLeader.Name, code, body, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("a load was accepted %s after %s took over", time.Since(elected).Round(time.Millisecond), newLeader.Name)
	if missing := h.missingVariables(newLeader.URL, []string{"after-failover"}); len(missing) != 0 {
		t.Fatal("the accepted load is not there")
	}
}
