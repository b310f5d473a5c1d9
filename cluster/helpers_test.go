package cluster

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/sowerproject/sower/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// etcd's peer transport keeps HTTP keep-alive connections of
		// stopped members until they time out.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
	)
}

// testNode is one embedded member with its election and membership
// manager, as a sower node wires them (without TLS).
type testNode struct {
	name    string
	etcd    *Etcd
	remote  *clientv3.Client
	el      *Election
	members *Members
	cancel  context.CancelFunc
	done    chan struct{}
}

type memberSpec struct {
	name, dir, client, peer string
	initial                 string
	existing                bool
}

func newSpec(t *testing.T, name string) memberSpec {
	a := testutil.FreeAddrs(t, 2)
	return memberSpec{name: name, dir: filepath.Join(t.TempDir(), "etcd"), client: a[0], peer: a[1]}
}

func (s memberSpec) peerURL() string { return "http://" + s.peer }

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startMember starts an etcd member; the test closes it.
func startMember(t *testing.T, s memberSpec) *Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := StartEtcd(ctx, EtcdConfig{
		Name: s.name, Dir: s.dir, ClientAddr: s.client, PeerAddr: s.peer,
		InitialCluster: s.initial, Existing: s.existing,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatalf("start member %s: %v", s.name, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// runNode starts the election and membership duties on a member.
func runNode(t *testing.T, e *Etcd, ttl time.Duration) *testNode {
	t.Helper()
	info := e.Info()
	remote, err := DialMembers([]string{e.ClientURL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	el, err := NewElection(ElectionConfig{
		Client:  e.Client(),
		Self:    Leader{Name: info.Name, MemberID: info.MemberID, URL: "https://" + info.Name + ":8443", GRPCAddr: info.Name + ":7443"},
		TTL:     func(context.Context) time.Duration { return ttl },
		IsVoter: func() bool { return !e.Info().IsLearner },
		Logger:  logger(t).With("node", info.Name),
	})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := NewMembers(MembersConfig{Local: e.Client(), Remote: remote, Election: el, JoinTimeout: time.Hour, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{name: info.Name, etcd: e, remote: remote, el: el, members: ms, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		d := make(chan struct{})
		go func() { ms.Run(ctx); close(d) }()
		el.Run(ctx)
		<-d
	}()
	t.Cleanup(n.stop)
	return n
}

// stop ends the node's election (resigning if it leads) and closes its
// remote client; the member keeps running until its own cleanup.
func (n *testNode) stop() {
	n.cancel()
	<-n.done
	n.remote.Close()
}

// waitLeader waits (bounded by ctx) until n observes a Leader accepted by ok.
func waitLeader(t *testing.T, n *testNode, ok func(Leader) bool) Leader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := n.el.WaitLeader(ctx, func(l Leader, known bool) bool { return known && ok(l) })
	if err != nil {
		t.Fatalf("%s: no acceptable Leader observed (last %+v): %v", n.name, l, err)
	}
	return l
}

func anyLeader(Leader) bool { return true }

// eventually polls cond every 50ms for at most a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1200 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// putEnrollment writes an enrollment record as the seed service does.
func putEnrollment(t *testing.T, cli *clientv3.Client, token string, rec Enrollment) {
	t.Helper()
	raw, _ := json.Marshal(rec)
	if _, err := cli.Put(context.Background(), EnrollKey(token), string(raw)); err != nil {
		t.Fatal(err)
	}
}

// nodeCert is the verified client certificate a joining node presents.
func nodeCert(name string, ips ...string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}
	for _, ip := range ips {
		c.IPAddresses = append(c.IPAddresses, net.ParseIP(ip))
	}
	return c
}

// fakePolicy is a policy graph reduced to layer memberships and
// annotations.
type fakePolicy struct {
	members     map[string][]string
	annotations map[string]string
}

func (p fakePolicy) IsMember(role, member string) bool {
	for _, m := range p.members[role] {
		if m == member {
			return true
		}
	}
	return false
}

func (p fakePolicy) Annotation(resource, name string) (string, bool) {
	v, ok := p.annotations[resource+"#"+name]
	return v, ok
}
