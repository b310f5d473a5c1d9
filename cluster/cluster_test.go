package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	testAccount = "acme"
	testCluster = "prod"
)

func hostOf(name string) string {
	return testAccount + ":host:conjur/cluster/" + testCluster + "/" + name
}

// formCluster starts a first member, then enrolls and starts two more
// through the Enroller, as Standbys join; it waits until all three vote.
func formCluster(t *testing.T, ttl time.Duration) (nodes []*testNode, specs []memberSpec, en *Enroller) {
	t.Helper()
	s1 := newSpec(t, "m1")
	n1 := runNode(t, startMember(t, s1), ttl)
	waitLeader(t, n1, func(l Leader) bool { return l.Name == "m1" })
	pol := fakePolicy{members: map[string][]string{ClusterLayer(testAccount, testCluster): {hostOf("m1"), hostOf("m2"), hostOf("m3"), hostOf("m4")}}}
	en, err := NewEnroller(EnrollerConfig{Client: n1.etcd.Client(), Election: n1.el, Policy: pol, Account: testAccount, Cluster: testCluster, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	nodes, specs = []*testNode{n1}, []memberSpec{s1}
	for _, name := range []string{"m2", "m3"} {
		s := newSpec(t, name)
		tok := "token-" + name
		putEnrollment(t, n1.etcd.Client(), tok, Enrollment{SeedID: "seed-" + name, Host: hostOf(name), NodeName: name, ExpiresAt: time.Now().Add(time.Hour)})
		res, err := en.Enroll(context.Background(), EnrollRequest{Token: tok, Name: name, PeerURL: s.peerURL(), Cert: nodeCert(name, "127.0.0.1")})
		if err != nil {
			t.Fatalf("enroll %s: %v", name, err)
		}
		s.initial, s.existing = res.InitialCluster, true
		nodes = append(nodes, runNode(t, startMember(t, s), ttl))
		specs = append(specs, s)
	}
	eventually(t, "three voting members", func() bool {
		resp, err := n1.etcd.Client().MemberList(context.Background())
		if err != nil || len(resp.Members) != 3 {
			return false
		}
		for _, m := range resp.Members {
			if m.IsLearner || m.Name == "" {
				return false
			}
		}
		return true
	})
	return nodes, specs, en
}

func TestQuorumFormsFromEnrollments(t *testing.T) {
	nodes, _, en := formCluster(t, MinFailoverTTL)
	n1 := nodes[0]
	ctx := context.Background()

	t.Run("members and roles", func(t *testing.T) {
		ms, err := n1.members.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		roles := map[string]Role{}
		for _, m := range ms {
			roles[m.Name] = m.Role
			if !m.Reachable {
				t.Errorf("%s unreachable: %s", m.Name, m.Err)
			}
		}
		want := map[string]Role{"m1": RoleLeader, "m2": RoleStandby, "m3": RoleStandby}
		for n, r := range want {
			if roles[n] != r {
				t.Errorf("role of %s = %s, want %s", n, roles[n], r)
			}
		}
		h := Assess(ms, n1.el.leader, true)
		if h.Voters != 3 || h.FaultTolerance != 1 || !h.HasQuorum || len(h.Warnings) != 0 {
			t.Errorf("health = %+v, want 3 voters tolerating 1 failure, no warnings", h)
		}
	})

	t.Run("raft leadership leaves the Leader's member", func(t *testing.T) {
		self := n1.etcd.Info().MemberID
		eventually(t, "raft leader on a Standby", func() bool {
			l := n1.etcd.Info().LeaderID
			return l != 0 && l != self
		})
	})

	t.Run("a used token is refused", func(t *testing.T) {
		s := newSpec(t, "m2")
		_, err := en.Enroll(ctx, EnrollRequest{Token: "token-m2", Name: "m2", PeerURL: s.peerURL(), Cert: nodeCert("m2", "127.0.0.1")})
		if !errors.Is(err, ErrTokenInvalid) {
			t.Fatalf("reused token: err = %v, want ErrTokenInvalid", err)
		}
	})

	t.Run("standbys refuse writes and name the Leader", func(t *testing.T) {
		for _, n := range nodes[1:] {
			l := waitLeader(t, n, anyLeader)
			_, err := n.el.Txn(ctx, nil, []clientv3.Op{clientv3.OpPut("/sower/test/x", "1")}, nil)
			var nle *NotLeaderError
			if !errors.As(err, &nle) || !nle.Known || nle.Leader.Name != l.Name {
				t.Fatalf("%s: write err = %v, want not-leader naming %s", n.name, err, l.Name)
			}
		}
		if _, err := n1.el.Txn(ctx, nil, []clientv3.Op{clientv3.OpPut("/sower/test/x", "1")}, nil); err != nil {
			t.Fatalf("Leader write: %v", err)
		}
	})

	t.Run("handoff to a named Standby", func(t *testing.T) {
		if err := n1.el.Resign(ctx, "m3"); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			waitLeader(t, n, func(l Leader) bool { return l.Name == "m3" })
		}
		eventually(t, "m3 holds the role", nodes[2].el.IsLeader)
		if err := nodes[2].el.Resign(ctx, "m1"); err != nil {
			t.Fatal(err)
		}
		waitLeader(t, n1, func(l Leader) bool { return l.Name == "m1" })
		eventually(t, "m1 holds the role", n1.el.IsLeader)
	})

	t.Run("an abandoned join is undone", func(t *testing.T) {
		s := newSpec(t, "m4")
		putEnrollment(t, n1.etcd.Client(), "token-m4", Enrollment{Host: hostOf("m4"), NodeName: "m4", ExpiresAt: time.Now().Add(time.Hour)})
		if _, err := en.Enroll(ctx, EnrollRequest{Token: "token-m4", Name: "m4", PeerURL: s.peerURL(), Cert: nodeCert("m4", "127.0.0.1")}); err != nil {
			t.Fatal(err)
		}
		if n := memberCount(t, n1); n != 4 {
			t.Fatalf("after enrolling m4: %d members, want 4", n)
		}
		if err := en.Abandon(ctx, "m4", nodeCert("m4")); err != nil {
			t.Fatal(err)
		}
		if n := memberCount(t, n1); n != 3 {
			t.Fatalf("after abandoning m4: %d members, want 3", n)
		}
	})

	t.Run("a learner that never starts is removed after the join timeout", func(t *testing.T) {
		s := newSpec(t, "m4")
		putEnrollment(t, n1.etcd.Client(), "token-m4b", Enrollment{Host: hostOf("m4"), NodeName: "m4", ExpiresAt: time.Now().Add(time.Hour)})
		res, err := en.Enroll(ctx, EnrollRequest{Token: "token-m4b", Name: "m4", PeerURL: s.peerURL(), Cert: nodeCert("m4", "127.0.0.1")})
		if err != nil {
			t.Fatal(err)
		}
		// Backdate the join record past the timeout.
		raw, _ := json.Marshal(joinRecord{Name: "m4", AddedAt: time.Now().Add(-2 * time.Hour)})
		if _, err := n1.etcd.Client().Put(ctx, joinKey(res.MemberID), string(raw)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the stale learner removed", func() bool { return memberCount(t, n1) == 3 })
	})
}

// countKeys reads keys under prefix, retrying the transient errors of a
// raft leader change.
func countKeys(t *testing.T, n *testNode, prefix string) int {
	t.Helper()
	var count int
	eventually(t, "a read of "+prefix, func() bool {
		resp, err := n.etcd.Client().Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return false
		}
		count = int(resp.Count)
		return true
	})
	return count
}

func memberCount(t *testing.T, n *testNode) int {
	t.Helper()
	var count int
	eventually(t, "a member list", func() bool {
		resp, err := n.etcd.Client().MemberList(context.Background())
		if err != nil {
			return false
		}
		count = len(resp.Members)
		return true
	})
	return count
}

func TestFailoverAndFencing(t *testing.T) {
	nodes, _, _ := formCluster(t, MinFailoverTTL)
	n1 := nodes[0]
	ctx := context.Background()
	old, _ := n1.el.Leader()
	if !n1.el.IsLeader() {
		t.Fatal("m1 is not the Leader")
	}

	// The Leader's process dies: its member stops without resigning.
	n1.etcd.Close()
	l := waitLeader(t, nodes[1], func(l Leader) bool { return l.Name != "m1" })
	if l.Revision <= old.Revision {
		t.Fatalf("new term %d not after old term %d", l.Revision, old.Revision)
	}
	var leader *testNode
	for _, n := range nodes[1:] {
		if n.name == l.Name {
			leader = n
		}
	}
	eventually(t, l.Name+" holds the role", leader.el.IsLeader)
	if _, err := leader.el.Txn(ctx, nil, []clientv3.Op{clientv3.OpPut("/sower/test/after", "1")}, nil); err != nil {
		t.Fatalf("write on the new Leader: %v", err)
	}

	t.Run("a former Leader's term can never commit", func(t *testing.T) {
		// A former Leader that still believes it leads (paused, or cut
		// off) sends a write with its old term.
		stale, err := NewElection(ElectionConfig{Client: leader.etcd.Client(), Self: old})
		if err != nil {
			t.Fatal(err)
		}
		stale.rev.Store(old.Revision)
		_, err = stale.Txn(ctx, nil, []clientv3.Op{clientv3.OpPut("/sower/test/stale", "1")}, nil)
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("stale write: err = %v, want ErrNotLeader", err)
		}
		if n := countKeys(t, leader, "/sower/test/stale"); n != 0 {
			t.Fatal("the stale write was applied")
		}
		if stale.IsLeader() {
			t.Fatal("a refused fence left the stale election believing it leads")
		}
	})

	t.Run("removal keeps a quorum", func(t *testing.T) {
		ms, err := leader.members.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h := Assess(ms, l, true)
		if h.HealthyVoters != 2 || h.Remaining != 0 || len(h.Warnings) == 0 {
			t.Fatalf("health after losing m1 = %+v, want 2 of 3 voters, no failure to spare, a warning", h)
		}
		other := nodes[1]
		if other == leader {
			other = nodes[2]
		}
		om, _ := FindMember(ms, other.name)
		if err := leader.members.Remove(ctx, om.ID, false); !errors.Is(err, ErrWouldLoseQuorum) {
			t.Fatalf("removing a healthy Standby with m1 down: err = %v, want ErrWouldLoseQuorum", err)
		}
		lm, _ := FindMember(ms, leader.name)
		if err := leader.members.Remove(ctx, lm.ID, true); !errors.Is(err, ErrIsLeader) {
			t.Fatalf("removing the Leader: err = %v, want ErrIsLeader", err)
		}
		dead, _ := FindMember(ms, "m1")
		if err := leader.members.Remove(ctx, dead.ID, false); err != nil {
			t.Fatalf("removing the dead m1: %v", err)
		}
		if n := memberCount(t, leader); n != 2 {
			t.Fatalf("%d members after removing m1, want 2", n)
		}
	})
}

func TestEnrollRefusals(t *testing.T) {
	s1 := newSpec(t, "m1")
	n1 := runNode(t, startMember(t, s1), MinFailoverTTL)
	waitLeader(t, n1, anyLeader)
	eventually(t, "m1 leads", n1.el.IsLeader)
	cli := n1.etcd.Client()
	ctx := context.Background()
	pol := fakePolicy{members: map[string][]string{ClusterLayer(testAccount, testCluster): {hostOf("m2")}}}
	now := time.Now()
	en, err := NewEnroller(EnrollerConfig{Client: cli, Election: n1.el, Policy: pol, Account: testAccount, Cluster: testCluster, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	valid := Enrollment{Host: hostOf("m2"), NodeName: "m2", ExpiresAt: now.Add(time.Hour)}
	peer := newSpec(t, "m2").peerURL()
	tests := map[string]struct {
		rec  *Enrollment // stored under the token; nil stores nothing
		req  EnrollRequest
		want error
		kept bool // the token must survive the refusal
	}{
		"unknown token":    {nil, EnrollRequest{Name: "m2", PeerURL: peer, Cert: nodeCert("m2", "127.0.0.1")}, ErrTokenInvalid, false},
		"expired":          {&Enrollment{Host: hostOf("m2"), NodeName: "m2", ExpiresAt: now}, EnrollRequest{Name: "m2", PeerURL: peer, Cert: nodeCert("m2", "127.0.0.1")}, ErrTokenExpired, true},
		"other node":       {&valid, EnrollRequest{Name: "m3", PeerURL: peer, Cert: nodeCert("m3", "127.0.0.1")}, ErrTokenInvalid, true},
		"not in layer":     {&Enrollment{Host: hostOf("m9"), NodeName: "m2", ExpiresAt: now.Add(time.Hour)}, EnrollRequest{Name: "m2", PeerURL: peer, Cert: nodeCert("m2", "127.0.0.1")}, ErrNotClusterMember, true},
		"other account":    {&Enrollment{Host: "other:host:conjur/cluster/prod/m2", NodeName: "m2", ExpiresAt: now.Add(time.Hour)}, EnrollRequest{Name: "m2", PeerURL: peer, Cert: nodeCert("m2", "127.0.0.1")}, ErrNotClusterMember, true},
		"no certificate":   {&valid, EnrollRequest{Name: "m2", PeerURL: peer}, ErrCertMismatch, true},
		"cert for another": {&valid, EnrollRequest{Name: "m2", PeerURL: peer, Cert: nodeCert("m3", "127.0.0.1")}, ErrCertMismatch, true},
		"peer not in cert": {&valid, EnrollRequest{Name: "m2", PeerURL: peer, Cert: nodeCert("m2", "10.0.0.1")}, ErrBadPeerURL, true},
		"peer URL path":    {&valid, EnrollRequest{Name: "m2", PeerURL: peer + "/x", Cert: nodeCert("m2", "127.0.0.1")}, ErrBadPeerURL, true},
		"existing name":    {&Enrollment{Host: hostOf("m2"), NodeName: "m1", ExpiresAt: now.Add(time.Hour)}, EnrollRequest{Name: "m1", PeerURL: peer, Cert: nodeCert("m1", "127.0.0.1")}, ErrMemberExists, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tok := "tok-" + name
			tc.req.Token = tok
			if tc.rec != nil {
				putEnrollment(t, cli, tok, *tc.rec)
			}
			_, err := en.Enroll(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n := memberCount(t, n1); n != 1 {
				t.Fatalf("a refused enrollment changed the membership: %d members", n)
			}
			resp, err := cli.Get(ctx, EnrollKey(tok))
			if err != nil {
				t.Fatal(err)
			}
			if kept := len(resp.Kvs) == 1; kept != tc.kept {
				t.Fatalf("token kept = %v, want %v", kept, tc.kept)
			}
		})
	}

	t.Run("on a Standby", func(t *testing.T) {
		stale, err := NewElection(ElectionConfig{Client: cli, Self: Leader{Name: "m9", MemberID: 9}})
		if err != nil {
			t.Fatal(err)
		}
		en2, _ := NewEnroller(EnrollerConfig{Client: cli, Election: stale, Account: testAccount, Cluster: testCluster})
		putEnrollment(t, cli, "tok-standby", valid)
		if _, err := en2.Enroll(ctx, EnrollRequest{Token: "tok-standby", Name: "m2", PeerURL: peer, Cert: nodeCert("m2", "127.0.0.1")}); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("err = %v, want ErrNotLeader", err)
		}
	})
}
