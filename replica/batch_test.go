package replica_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/replica"
)

// A batch of revisions is one local transaction that leaves every key as
// the last of them left it, and the cursor at the last.
func TestApplyBatchIsOneTransactionOfTheLastState(t *testing.T) {
	forEachWriter(t, testApplyBatchIsOneTransaction)
}

// forEachWriter runs test over a copy written through transactions and
// over a rebuildable one written directly, as a Follower's is.
func forEachWriter(t *testing.T, test func(t *testing.T, dst *clientv3.Client, lc replica.LocalConfig)) {
	t.Run("transactions", func(t *testing.T) { test(t, etcdOf(t).Client(), replica.LocalConfig{}) })
	t.Run("direct writes", func(t *testing.T) {
		e := etcdOf(t, true)
		test(t, e.Client(), replica.LocalConfig{Direct: e})
	})
}

func testApplyBatchIsOneTransaction(t *testing.T, dst *clientv3.Client, lc replica.LocalConfig) {
	ctx := context.Background()
	st := replica.NewLocalStore(dst, lc)
	if err := st.Apply(ctx, replica.Change{Revision: 5, Puts: []replica.KV{{Key: "/sower/policy/gone", Value: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	before := put(t, dst) // an empty transaction: the copy's revision now
	cs := []replica.Change{
		{Revision: 6, Puts: []replica.KV{{Key: "/sower/policy/a", Value: []byte("1")}, {Key: "/sower/policy/b", Value: []byte("1")}}},
		{Revision: 7, Puts: []replica.KV{{Key: "/sower/policy/a", Value: []byte("2")}}, Deletes: []string{"/sower/policy/b", "/sower/policy/gone"}},
		{Revision: 9, Puts: []replica.KV{{Key: "/sower/policy/b", Value: []byte("3")}, {Key: "/sower/policy/c", Value: []byte("3")}}, Deletes: []string{"/sower/policy/a"}},
	}
	if err := st.ApplyBatch(ctx, cs); err != nil {
		t.Fatal(err)
	}
	sameMaps(t, dump(t, dst), map[string]string{"/sower/policy/b": "3", "/sower/policy/c": "3"})
	if applied, err := st.Applied(ctx); err != nil || applied != 9 {
		t.Fatalf("cursor %d (%v), want 9", applied, err)
	}
	if after := put(t, dst); after != before+1 {
		t.Fatalf("the batch took %d local revisions, want 1", after-before)
	}
}

// A revision whose value Rewrite changes is applied at its own place in a
// batch: Rewrite sees the copy with the revisions before it and without
// those after it.
func TestApplyBatchRewritesAtTheRevisionsPlace(t *testing.T) {
	forEachWriter(t, testApplyBatchRewrites)
}

func testApplyBatchRewrites(t *testing.T, dst *clientv3.Client, lc replica.LocalConfig) {
	ctx := context.Background()
	const guard = "/sower/policy/guard"
	var seen []string
	lc.Rewrite = func(key string, value []byte, local replica.LocalView) []byte {
		seen = append(seen, key)
		return fmt.Appendf(nil, "%s after x=%s at a later revision: %v", value, local.Get("/sower/policy/x"), local.Revision() > 1)
	}
	lc.Rewrites = func(key string) bool { return key == guard }
	st := replica.NewLocalStore(dst, lc)
	cs := []replica.Change{
		{Revision: 2, Puts: []replica.KV{{Key: "/sower/policy/x", Value: []byte("1")}}},
		{Revision: 3, Puts: []replica.KV{{Key: "/sower/policy/y", Value: []byte("1")}}},
		{Revision: 4, Puts: []replica.KV{{Key: guard, Value: []byte("claim")}}},
		{Revision: 5, Puts: []replica.KV{{Key: "/sower/policy/x", Value: []byte("2")}}},
	}
	if err := st.ApplyBatch(ctx, cs); err != nil {
		t.Fatal(err)
	}
	sameMaps(t, dump(t, dst), map[string]string{"/sower/policy/x": "2", "/sower/policy/y": "1", guard: "claim after x=1 at a later revision: true"})
	if !slices.Equal(seen, []string{guard}) {
		t.Fatalf("Rewrite was called for %v, want only the guard", seen)
	}
}

// scriptedFeed sends one stream of scripted messages, then streams that
// stay silent until closed.
type scriptedFeed struct {
	mu     sync.Mutex
	script []replica.Message
	// sent is closed once the script has been read whole.
	sent chan struct{}
}

type scriptedStream struct {
	msgs []replica.Message
	sent chan struct{}
	ctx  context.Context
	stop context.CancelFunc
}

func (f *scriptedFeed) Open(ctx context.Context, cursor int64) (replica.Stream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	s := &scriptedStream{msgs: f.script, ctx: ctx, stop: cancel}
	if len(f.script) > 0 {
		s.sent = f.sent
	}
	f.script = nil
	return s, nil
}

func (s *scriptedStream) Recv() (replica.Message, error) {
	if len(s.msgs) == 0 {
		<-s.ctx.Done()
		return replica.Message{}, errors.New("closed")
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	if len(s.msgs) == 0 {
		close(s.sent)
	}
	return m, nil
}

func (s *scriptedStream) Close() error { s.stop(); return nil }

// batchLog is a Store that records how each revision was applied.
type batchLog struct {
	replica.Store
	b       replica.Batcher
	release chan struct{} // the first Apply waits for it, so that the rest queue up

	mu    sync.Mutex
	calls [][]int64
}

func (l *batchLog) Apply(ctx context.Context, c replica.Change) error {
	if l.release != nil {
		<-l.release
		l.release = nil
	}
	l.mu.Lock()
	l.calls = append(l.calls, []int64{c.Revision})
	l.mu.Unlock()
	return l.Store.Apply(ctx, c)
}

func (l *batchLog) ApplyBatch(ctx context.Context, cs []replica.Change) error {
	var revs []int64
	for _, c := range cs {
		revs = append(revs, c.Revision)
	}
	l.mu.Lock()
	l.calls = append(l.calls, revs)
	l.mu.Unlock()
	return l.b.ApplyBatch(ctx, cs)
}

// Changes that arrive together are applied together, except one that
// writes a key Config.Alone names: it is applied by itself and observed
// before anything after it is applied.
func TestReplicaBatchesChangesThatArriveTogether(t *testing.T) {
	const key = "/sower/pki/data-keyring"
	script := []replica.Message{{SnapshotStart: 1, Head: 1}, {Snapshot: []replica.KV{{Key: "/sower/policy/a", Value: []byte("0")}}, Head: 1}, {SnapshotEnd: true, Head: 1}}
	for rev := int64(2); rev <= 40; rev++ {
		c := &replica.Change{Revision: rev, Puts: []replica.KV{{Key: "/sower/policy/a", Value: fmt.Append(nil, rev)}}}
		if rev == 20 {
			c.Puts = append(c.Puts, replica.KV{Key: key, Value: []byte("next")})
		}
		script = append(script, replica.Message{Change: c, Head: 40})
	}
	e := etcdOf(t, true)
	dst := e.Client()
	local := replica.NewLocalStore(dst, replica.LocalConfig{Direct: e})
	log := &batchLog{Store: local, b: local, release: make(chan struct{})}
	var mu sync.Mutex
	var observedAt int64 // the copy's cursor when the key was observed
	feed := &scriptedFeed{script: script, sent: make(chan struct{})}
	r, err := replica.New(context.Background(), replica.Config{
		Store: log, Feed: feed,
		Alone: func(k string) bool { return k == key },
		Observe: func(puts []replica.KV) {
			for _, kv := range puts {
				if kv.Key == key {
					a, _ := local.Applied(context.Background())
					mu.Lock()
					observedAt = a
					mu.Unlock()
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r.Run)
	// The first change is applied once the rest have been read ahead.
	select {
	case <-feed.sent:
	case <-time.After(20 * time.Second):
		t.Fatal("the script was never read whole")
	}
	close(log.release)
	waitApplied(t, r, 40)
	sameMaps(t, dump(t, dst), map[string]string{"/sower/policy/a": "40", key: "next"})
	log.mu.Lock()
	defer log.mu.Unlock()
	var flat []int64
	batched := false
	for _, c := range log.calls {
		flat = append(flat, c...)
		if slices.Contains(c, 20) && len(c) != 1 {
			t.Errorf("revision 20 writes %s but was applied with %v", key, c)
		}
		batched = batched || len(c) > 1
	}
	if !slices.Equal(flat, func() (w []int64) {
		for rev := int64(2); rev <= 40; rev++ {
			w = append(w, rev)
		}
		return w
	}()) {
		t.Errorf("revisions applied in the order %v", flat)
	}
	if !batched {
		t.Errorf("no two revisions were applied together: %v", log.calls)
	}
	mu.Lock()
	defer mu.Unlock()
	if observedAt != 20 {
		t.Errorf("%s was observed with the copy at %d, want 20", key, observedAt)
	}
}

// recorder is a Serve send function that keeps what it was sent.
type recorder struct {
	mu   sync.Mutex
	msgs []replica.Message
	more chan struct{}
}

func (r *recorder) send(m replica.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
	return nil
}

// waitFor returns what was sent once ok holds for the last message.
func (r *recorder) waitFor(t *testing.T, what string, ok func(replica.Message) bool) []replica.Message {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		if n := len(r.msgs); n > 0 && ok(r.msgs[n-1]) {
			out := slices.Clone(r.msgs)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("never sent %s", what)
		}
	}
}

// Revisions that change nothing replicated (the audit trail's) are not a
// message each: a change sent within the delay covers them, and otherwise
// one progress mark does.
func TestHubHoldsBackProgressMarks(t *testing.T) {
	for name, delay := range map[string]time.Duration{"a change covers them": time.Hour, "one mark after the delay": 10 * time.Millisecond} {
		t.Run(name, func(t *testing.T) {
			src := etcdOf(t).Client()
			hub, err := replica.NewHub(replica.HubConfig{Client: src, Idle: time.Hour, ProgressDelay: delay})
			if err != nil {
				t.Fatal(err)
			}
			run(t, hub.Run)
			rec := &recorder{more: make(chan struct{}, 1)}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- hub.Serve(ctx, replica.Peer{Name: "f"}, 0, rec.send, nil) }()
			defer func() { cancel(); <-done }()
			attached := rec.waitFor(t, "the snapshot and the first mark", func(m replica.Message) bool { return m.Progress > 0 })
			var last int64
			for i := range 3 {
				last = put(t, src, clientv3.OpPut(fmt.Sprintf("/sower/audit/events/%d", i), "e"))
			}
			if delay == time.Hour {
				last = put(t, src, clientv3.OpPut("/sower/policy/a", "1"))
				got := rec.waitFor(t, "the change", func(m replica.Message) bool { return m.Change != nil && m.Change.Revision == last })
				if after := got[len(attached):]; len(after) != 1 {
					t.Fatalf("sent %+v after attaching, want only the change", after)
				}
				return
			}
			// How many marks depends on how fast the puts came; that one
			// comes without an idle mark (an hour away) is what counts.
			got := rec.waitFor(t, "a mark past the audit revisions", func(m replica.Message) bool { return m.Progress >= last })
			for _, m := range got[len(attached):] {
				if m.Progress == 0 {
					t.Errorf("sent %+v, want only progress marks", m)
				}
			}
		})
	}
}
