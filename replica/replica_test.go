package replica_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/replica"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// etcdOf starts a private etcd member for one side of a test.
func etcdOf(t *testing.T, rebuildable ...bool) *cluster.Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := cluster.StartPrivateEtcd(ctx, cluster.PrivateEtcdConfig{Dir: t.TempDir(), Rebuildable: len(rebuildable) > 0 && rebuildable[0]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// run starts fn in the background and stops it when the test ends.
func run(t *testing.T, fn func(ctx context.Context) error) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("background run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// localFeed calls Hub.Serve in process, through a channel, as the gRPC
// adapter does over the network. Faults are injected by the test.
type localFeed struct {
	hub *replica.Hub
	// cutAfter, when > 0, ends each stream after a random number of
	// messages below it; failOpen fails that share of opens.
	cutAfter int
	failOpen float64
	// hold, when set, blocks delivery of a SnapshotEnd until closed.
	hold chan struct{}

	mu    sync.Mutex
	opens []int64
}

type localStream struct {
	acks   chan int64
	ch     chan replica.Message
	errc   chan error
	cancel context.CancelFunc
	left   int
	hold   chan struct{}
	ctx    context.Context
}

func (f *localFeed) Open(ctx context.Context, cursor int64) (replica.Stream, error) {
	f.mu.Lock()
	f.opens = append(f.opens, cursor)
	f.mu.Unlock()
	if f.failOpen > 0 && rand.Float64() < f.failOpen {
		return nil, errors.New("injected: node unreachable")
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &localStream{acks: make(chan int64, 1), ch: make(chan replica.Message), errc: make(chan error, 1), cancel: cancel, left: -1, hold: f.hold, ctx: ctx}
	if f.cutAfter > 0 {
		s.left = 1 + rand.IntN(f.cutAfter)
	}
	go func() {
		s.errc <- f.hub.Serve(ctx, replica.Peer{Name: "test"}, cursor, func(m replica.Message) error {
			select {
			case s.ch <- m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, s.acks)
	}()
	return s, nil
}

func (s *localStream) Recv() (replica.Message, error) {
	if s.left == 0 {
		return replica.Message{}, errors.New("injected: stream cut")
	}
	if s.left > 0 {
		s.left--
	}
	select {
	case m := <-s.ch:
		if m.SnapshotEnd && s.hold != nil {
			// A test that fails before it lets go must still end.
			select {
			case <-s.hold:
			case <-s.ctx.Done():
				return replica.Message{}, s.ctx.Err()
			}
		}
		return m, nil
	case err := <-s.errc:
		return replica.Message{}, fmt.Errorf("serve ended: %w", err)
	}
}

func (s *localStream) Close() error { s.cancel(); return nil }

// Ack implements replica.Acker as the gRPC adapter does: the latest wins.
func (s *localStream) Ack(applied int64) {
	select {
	case <-s.acks:
	default:
	}
	s.acks <- applied
}

type side struct {
	src, dst *cluster.Etcd
	hub      *replica.Hub
	feed     *localFeed
	// bulk: the copy is a rebuildable etcd that takes a first load's
	// pages and the applied revisions outside raft, as a Follower's is.
	bulk bool
}

func newSide(t *testing.T, hc replica.HubConfig) *side {
	s := &side{src: etcdOf(t), dst: etcdOf(t)}
	hc.Client = s.src.Client()
	hc.Idle = 50 * time.Millisecond
	hub, err := replica.NewHub(hc)
	if err != nil {
		t.Fatal(err)
	}
	s.hub = hub
	s.feed = &localFeed{hub: hub}
	run(t, hub.Run)
	return s
}

func (s *side) replica(t *testing.T) (*replica.Replica, context.CancelFunc) {
	t.Helper()
	lc := replica.LocalConfig{}
	if s.bulk {
		lc.Bulk, lc.Direct = s.dst, s.dst
	}
	r, err := replica.New(context.Background(), replica.Config{Store: replica.NewLocalStore(s.dst.Client(), lc), Feed: s.feed, Backoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r, run(t, r.Run)
}

// dump returns every key under /sower/ of cli.
func dump(t *testing.T, cli *clientv3.Client) map[string]string {
	t.Helper()
	resp, err := cli.Get(context.Background(), "/sower/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

func replicatedOf(all map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range all {
		if replica.Allowed(k) {
			out[k] = v
		}
	}
	return out
}

func waitApplied(t *testing.T, r *replica.Replica, rev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, rev); err != nil {
		t.Fatalf("replica stuck at %d, want %d: %v (status %+v)", r.Applied(), rev, err, r.Status())
	}
}

func sameMaps(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q on the replica, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s is on the replica but not on the source", k)
		}
	}
}

func put(t *testing.T, cli *clientv3.Client, ops ...clientv3.Op) int64 {
	t.Helper()
	resp, err := cli.Txn(context.Background()).Then(ops...).Commit()
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// The allow-list decides what crosses: never seeds, enrollment tokens, the
// CA record, the election or the audit trail, in snapshots or changes.
func TestReplicaCopiesOnlyTheAllowList(t *testing.T) {
	s := newSide(t, replica.HubConfig{})
	src := s.src.Client()
	secret := []clientv3.Op{
		clientv3.OpPut("/sower/seeds/s1", "seed record"),
		clientv3.OpPut("/sower/enroll/abc", "token"),
		clientv3.OpPut("/sower/pki/ca", "CA keys"),
		clientv3.OpPut("/sower/pki/data-keyring-acks/n1", "1"),
		clientv3.OpPut("/sower/cluster/leader", "leader-1"),
		clientv3.OpPut("/sower/audit/1", "event"),
	}
	put(t, src, append(secret, clientv3.OpPut("/sower/policy/facts/a", "1"), clientv3.OpPut("/sower/secrets/x/000000000001", "sealed"))...)
	r, _ := s.replica(t) // snapshot
	waitApplied(t, r, s.hub.Revision())
	put(t, src, secret...) // changes
	put(t, src, clientv3.OpPut("/sower/seeds/s2", "seed"), clientv3.OpPut("/sower/authn/credentials/acme:host:a", "hash"))
	rev := put(t, src, clientv3.OpDelete("/sower/policy/facts/a"), clientv3.OpPut("/sower/pki/revoked/1f", "r"))
	waitApplied(t, r, rev)
	got, want := dump(t, s.dst.Client()), replicatedOf(dump(t, src))
	sameMaps(t, got, want)
	for _, k := range []string{"/sower/seeds/s1", "/sower/seeds/s2", "/sower/enroll/abc", "/sower/pki/ca", "/sower/cluster/leader", "/sower/audit/1", "/sower/pki/data-keyring-acks/n1"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s reached the replica", k)
		}
	}
	if len(got) != 3 {
		t.Errorf("replica holds %d keys, want 3: %v", len(got), got)
	}
}

// Streams cut at random points and failed opens: the replica converges on
// the source, and every source revision appears on it whole, as one local
// revision.
func TestReplicaConvergesThroughFaults(t *testing.T) {
	for name, bulk := range map[string]bool{"transactions": false, "bulk first load": true} {
		t.Run(name, func(t *testing.T) { testConverges(t, bulk) })
	}
}

func testConverges(t *testing.T, bulk bool) {
	s := newSide(t, replica.HubConfig{RingSize: 64})
	if bulk {
		s.dst.Close()
		s.dst, s.bulk = etcdOf(t, true), true
	}
	s.feed.cutAfter, s.feed.failOpen = 12, 0.2
	src, dst := s.src.Client(), s.dst.Client()

	// Every source transaction writes the pair a/i and b/i with one value:
	// a local revision that holds one without the other broke atomicity.
	var torn atomic.Int64
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	wc := dst.Watch(wctx, "/sower/policy/", clientv3.WithPrefix())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for wr := range wc {
			byRev := map[int64]map[string]string{}
			for _, ev := range wr.Events {
				m := byRev[ev.Kv.ModRevision]
				if m == nil {
					m = map[string]string{}
					byRev[ev.Kv.ModRevision] = m
				}
				m[string(ev.Kv.Key)] = string(ev.Kv.Value)
			}
			for _, m := range byRev {
				for k, v := range m {
					var i int
					if _, err := fmt.Sscanf(k, "/sower/policy/a/%d", &i); err == nil && m[fmt.Sprintf("/sower/policy/b/%d", i)] != v {
						torn.Add(1)
					}
				}
			}
		}
	}()

	r, _ := s.replica(t)
	var last int64
	for i := range 300 {
		v := fmt.Sprint(i)
		last = put(t, src, clientv3.OpPut(fmt.Sprintf("/sower/policy/a/%d", i%20), v), clientv3.OpPut(fmt.Sprintf("/sower/policy/b/%d", i%20), v),
			clientv3.OpPut("/sower/audit/x", v))
	}
	waitApplied(t, r, last)
	sameMaps(t, dump(t, dst), replicatedOf(dump(t, src)))
	wcancel()
	<-watched
	if n := torn.Load(); n > 0 {
		t.Errorf("%d local revisions held half of a source revision", n)
	}
	s.feed.mu.Lock()
	opens := len(s.feed.opens)
	s.feed.mu.Unlock()
	if opens < 3 {
		t.Errorf("only %d streams opened; the faults were not exercised", opens)
	}
}

// A replica whose cursor the hub can no longer resume from (its ring moved
// on) gets a new snapshot; until the snapshot is whole the old copy keeps
// answering, then it equals the source, deletions included.
func TestReplicaResyncsKeepingTheOldCopyUntilWhole(t *testing.T) {
	s := newSide(t, replica.HubConfig{RingSize: 2})
	src, dst := s.src.Client(), s.dst.Client()
	first := put(t, src, clientv3.OpPut("/sower/secrets/keep/1", "old"), clientv3.OpPut("/sower/secrets/gone/1", "old"))
	r, stop := s.replica(t)
	// (Not the hub's revision: the hub may not have started yet.)
	waitApplied(t, r, first)
	before := r.Applied()
	stop()

	for i := range 10 {
		put(t, src, clientv3.OpPut(fmt.Sprintf("/sower/secrets/new/%d", i), "v"))
	}
	last := put(t, src, clientv3.OpPut("/sower/secrets/keep/1", "new"), clientv3.OpDelete("/sower/secrets/gone/1"))
	if _, err := src.Compact(context.Background(), last); err != nil {
		t.Fatal(err)
	}

	// The hub must have seen the writes before the replica comes back:
	// otherwise it could resume from its ring and get them live.
	for deadline := time.Now().Add(20 * time.Second); s.hub.Revision() < last; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hub is at %d, never reached %d", s.hub.Revision(), last)
		}
	}
	s.feed.hold = make(chan struct{})
	r2, _ := s.replica(t)
	deadline := time.Now().Add(20 * time.Second)
	for r2.Status().State != replica.StateSnapshotting {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot started: %+v", r2.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := dump(t, dst); got["/sower/secrets/keep/1"] != "old" || got["/sower/secrets/gone/1"] != "old" || r2.Applied() != before {
		t.Fatalf("the copy changed before the snapshot was whole: %v at %d", got, r2.Applied())
	}
	close(s.feed.hold)
	waitApplied(t, r2, last)
	sameMaps(t, dump(t, dst), replicatedOf(dump(t, src)))
}

// A first load writes the snapshot's pages as they arrive, yet the copy is
// not loaded (its cursor not written) until the last one is; a load cut off
// midway is cleared by the next one, so keys deleted meanwhile do not
// survive in the copy.
func TestReplicaFirstLoadWritesPagesAsTheyArrive(t *testing.T) {
	for name, bulk := range map[string]bool{"transactions": false, "bulk writes": true} {
		t.Run(name, func(t *testing.T) { testFirstLoad(t, bulk) })
	}
}

func testFirstLoad(t *testing.T, bulk bool) {
	s := newSide(t, replica.HubConfig{PageSize: 3})
	if bulk {
		s.dst.Close()
		s.dst, s.bulk = etcdOf(t, true), true
	}
	src, dst := s.src.Client(), s.dst.Client()
	var ops []clientv3.Op
	for i := range 20 {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("/sower/secrets/v/%02d", i), "sealed"))
	}
	first := put(t, src, ops...)
	for deadline := time.Now().Add(20 * time.Second); s.hub.Revision() < first; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hub is at %d, never reached %d", s.hub.Revision(), first)
		}
	}
	s.feed.hold = make(chan struct{})
	r, stop := s.replica(t)
	deadline := time.Now().Add(20 * time.Second)
	for len(dump(t, dst)) < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the pages were not written before the snapshot's end: %d keys", len(dump(t, dst)))
		}
		time.Sleep(5 * time.Millisecond)
	}
	applied, err := replica.NewLocalStore(dst, replica.LocalConfig{}).Applied(context.Background())
	if err != nil || applied != 0 || r.Loaded() {
		t.Fatalf("a half-received snapshot counts as loaded: cursor %d, Loaded %v, %v", applied, r.Loaded(), err)
	}
	stop() // cut off before the end

	last := put(t, src, clientv3.OpDelete("/sower/secrets/v/", clientv3.WithPrefix()), clientv3.OpPut("/sower/secrets/w/1", "sealed"))
	s.feed.hold = nil
	r2, _ := s.replica(t)
	waitApplied(t, r2, last)
	sameMaps(t, dump(t, dst), replicatedOf(dump(t, src)))
}

// A snapshot larger than one of the hub's range reads, over several
// prefixes, arrives whole and in order; streams cut in the middle of it
// (the hub's read-ahead abandoned) leave no reader behind (goleak) and the
// next first load starts over cleanly.
func TestHubSnapshotSpansManyReads(t *testing.T) {
	s := newSide(t, replica.HubConfig{PageSize: 2}) // reads of 20 keys
	s.dst.Close()
	s.dst, s.bulk = etcdOf(t, true), true
	src, dst := s.src.Client(), s.dst.Client()
	var ops []clientv3.Op
	for i := range 57 {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("/sower/secrets/v/%03d", i), "sealed"))
	}
	for i := range 33 {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("/sower/policy/facts/%03d", i), "{}"))
	}
	for i := range 21 {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("/sower/authn/credentials/acme:host:h%03d", i), "hmac"))
	}
	ops = append(ops, clientv3.OpPut("/sower/seeds/s1", "never sent"))
	last := put(t, src, ops...)
	for deadline := time.Now().Add(20 * time.Second); s.hub.Revision() < last; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hub is at %d, never reached %d", s.hub.Revision(), last)
		}
	}

	// Streams cut after fewer messages than the snapshot holds.
	s.feed.cutAfter = 20
	r, stop := s.replica(t)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.feed.mu.Lock()
		opens := len(s.feed.opens)
		s.feed.mu.Unlock()
		if opens >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d streams opened", opens)
		}
	}
	stop()
	if r.Loaded() && r.Applied() < last {
		t.Fatalf("a cut snapshot counts as loaded at %d", r.Applied())
	}

	s.feed.cutAfter = 0
	r2, _ := s.replica(t)
	waitApplied(t, r2, last)
	sameMaps(t, dump(t, dst), replicatedOf(dump(t, src)))
}

// A Follower that does not read its stream is cut off instead of holding
// the hub back; it resumes from its cursor on its next stream.
func TestHubCutsOffASlowFollower(t *testing.T) {
	s := newSide(t, replica.HubConfig{Buffer: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	attached := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		first := true
		done <- s.hub.Serve(ctx, replica.Peer{Name: "slow"}, 0, func(m replica.Message) error {
			if first && m.Progress > 0 {
				first = false
				close(attached)
				<-ctx.Done() // never reads again
			}
			return nil
		}, nil)
	}()
	<-attached
	for i := range 20 {
		put(t, s.src.Client(), clientv3.OpPut(fmt.Sprintf("/sower/policy/%d", i), "v"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.hub.Followers()) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow follower is still attached")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, replica.ErrSlow) && !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve = %v, want ErrSlow", err)
	}
}

// The hub's lag is what the Follower acknowledged as applied: a Follower
// that holds a snapshot it has been sent but not applied is behind, and
// once it applies everything it is not.
func TestHubReportsAcknowledgedLag(t *testing.T) {
	s := newSide(t, replica.HubConfig{})
	s.feed.hold = make(chan struct{})
	src := s.src.Client()
	put(t, src, clientv3.OpPut("/sower/policy/facts/a", "1"))
	r, _ := s.replica(t)
	attached := func() replica.Attached {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if fs := s.hub.Followers(); len(fs) == 1 {
				return fs[0]
			}
			if time.Now().After(deadline) {
				t.Fatal("no follower attached")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The snapshot is sent but held back on its way.
	a := attached()
	rev := put(t, src, clientv3.OpPut("/sower/policy/facts/b", "2"))
	deadline := time.Now().Add(10 * time.Second)
	for s.hub.Revision() < rev {
		if time.Now().After(deadline) {
			t.Fatalf("the hub never saw %d", rev)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a = attached(); a.Applied != 0 || a.Lag < rev || a.LagTime <= 0 {
		t.Fatalf("before the Follower applied anything: %+v, want applied 0, lag ≥ %d and a lag time", a, rev)
	}
	close(s.feed.hold)
	waitApplied(t, r, rev)
	deadline = time.Now().Add(10 * time.Second)
	for a = attached(); a.Applied < rev; a = attached() {
		if time.Now().After(deadline) {
			t.Fatalf("the Follower's acknowledgement never reached the hub: %+v, applied %d", a, r.Applied())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a.Lag != s.hub.Revision()-a.Applied || a.LagTime != 0 {
		t.Fatalf("after applying: %+v, want lag %d and no lag time", a, s.hub.Revision()-a.Applied)
	}
}
