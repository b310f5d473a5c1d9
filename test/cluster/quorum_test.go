package clustertest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQuorum is issue 7's acceptance on real processes: three nodes formed
// from seeds; etcdctl agrees with sower; kill -9 of the Leader under 50
// writes/s loses no acknowledged write; the old Leader restarted with its
// data cannot write; after --reenroll it is a Standby again.
func TestQuorum(t *testing.T) {
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

	// Both Standbys join at once, each from its own seed.
	pin := h.pin()
	var starts []func() error
	for _, p := range []*proc{s1, s2} {
		seedFile, keyFile := h.standbySeed(l1.url(), p)
		starts = append(starts, func() error {
			return p.start("--seed", seedFile, "--seed-identity", keyFile, "--ca-pin", pin)
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(starts))
	for i, f := range starts {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ms := h.waitVoters(l1.url(), all...)
	if l := h.leader(); l.Name != "leader-1" {
		t.Fatalf("Leader after the joins = %q, want leader-1", l.Name)
	}

	if !t.Run("etcdctl agrees with sower cluster members", func(t *testing.T) {
		for _, p := range []*proc{l1, s1, s2} {
			checkAgree(t, h, p, ms)
		}
	}) {
		t.FailNow()
	}

	var newLeader leaderInfo
	if !t.Run("kill -9 of the Leader while writing", func(t *testing.T) {
		w := h.startWriter(20 * time.Millisecond)
		defer w.halt()
		w.waitAcked(t, 50)
		killAt := time.Now()
		l1.kill9()
		dead := time.Now()
		before := w.count()
		w.waitAcked(t, before+50)
		w.halt()
		newLeader = h.waitLeader(func(l leaderInfo) bool { return l.Name != "leader-1" })
		// A request already answered when the process died may be read
		// after the kill; the first one sent after it died says who
		// took over.
		first, ok := w.firstAckSentAfter(dead)
		if !ok {
			t.Fatal("no write acknowledged after the kill")
		}
		t.Logf("failover: %s from kill -9 to the first write accepted by %s (ttl 2s); %d writes acknowledged, %d refused or failed meanwhile",
			first.at.Sub(killAt).Round(time.Millisecond), first.leader, w.count(), w.failures())
		if first.leader == "leader-1" {
			t.Fatalf("a write was acknowledged by the killed Leader")
		}
		missing := h.missingVariables(newLeader.URL, w.ackedNumbers())
		if len(missing) > 0 {
			t.Fatalf("%d acknowledged writes are missing: %v", len(missing), missing)
		}
	}) {
		t.FailNow()
	}

	if !t.Run("the old Leader restarted with its data cannot write", func(t *testing.T) {
		if err := l1.start(); err != nil {
			t.Fatal(err)
		}
		role := ""
		for range 300 {
			var st struct {
				Role string `json:"role"`
			}
			if h.getJSON(l1.url()+"/v1/status", &st) == nil {
				if role = st.Role; role == "ROLE_STANDBY" {
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if role != "ROLE_STANDBY" {
			t.Fatalf("old Leader's role = %s, want ROLE_STANDBY", role)
		}
		tok, err := h.authenticate(l1.url())
		if err != nil {
			t.Fatal(err)
		}
		code, body, err := h.loadPolicy(l1.url(), tok, "- !variable stale-1\n")
		if err != nil || code != http.StatusUnprocessableEntity || !strings.Contains(body, "not the leader; the leader is "+newLeader.Name) {
			t.Fatalf("write on the old Leader: %d %s %v; want 422 naming %s", code, body, err, newLeader.Name)
		}
		if missing := h.missingVariables(newLeader.URL, []string{"stale-1"}); len(missing) != 1 {
			t.Fatal("the refused write was applied")
		}
		// sower's own CLI follows the refusal to the Leader.
		out, err := h.sower(l1.url(), "cluster", "move-leader", newLeader.Name)
		if err == nil || !strings.Contains(out, "already the Leader") {
			t.Fatalf("move-leader through a Standby: %v %s; want it forwarded to %s and refused there", err, out, newLeader.Name)
		}
	}) {
		t.FailNow()
	}

	t.Run("after --reenroll the old Leader rejoins as a Standby", func(t *testing.T) {
		l1.stop()
		if out, err := h.sower(newLeader.URL, "cluster", "remove", "leader-1"); err != nil {
			t.Fatal(out, err)
		}
		seedFile, keyFile := h.standbySeed(newLeader.URL, l1)
		join := []string{"--seed", seedFile, "--seed-identity", keyFile, "--ca-pin", h.pin(), "--reenroll"}
		if err := l1.launch(join...); err != nil {
			t.Fatal(err)
		}
		if code := l1.exited(); code != 2 || !strings.Contains(l1.tail(), "--reenroll deletes the etcd data") {
			t.Fatalf("--reenroll without --yes: exit %d, log %s; want exit 2 asking for --yes", code, l1.tail())
		}
		if err := l1.start(append(join, "--yes")...); err != nil {
			t.Fatal(err)
		}
		ms := h.waitVoters(newLeader.URL, all...)
		for _, m := range ms {
			if m.Name == "leader-1" && m.Role != "ROLE_STANDBY" {
				t.Fatalf("re-enrolled leader-1 is %s, want a Standby", m.Role)
			}
		}
		for _, p := range []*proc{l1, s1, s2} {
			checkAgree(t, h, p, ms)
		}
	})
}

// checkAgree compares `etcdctl member list` on p with sower's members.
func checkAgree(t *testing.T, h *harness, p *proc, ms []member) {
	t.Helper()
	em, err := h.etcdctlMembers(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(em) != len(ms) {
		t.Fatalf("etcdctl on %s lists %d members, sower %d", p.name, len(em), len(ms))
	}
	for _, e := range em {
		id := strconv.FormatUint(e.ID, 16)
		i := slices.IndexFunc(ms, func(m member) bool { return m.ID == id })
		if i < 0 {
			t.Fatalf("etcdctl on %s lists member %s (%s) that sower does not", p.name, id, e.Name)
		}
		m := ms[i]
		if m.Name != e.Name || !slices.Equal(m.PeerURLs, e.PeerURLs) || e.IsLearner != (m.Role == "ROLE_LEARNER") {
			t.Fatalf("member %s: etcdctl %+v, sower %+v", id, e, m)
		}
	}
}

// writer loads one variable per tick into the current Leader, as a policy
// client does, and records which writes were acknowledged.
type writer struct {
	h      *harness
	stopc  chan struct{}
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	acked  []ack
	failed int
}

type ack struct {
	n int
	// sent is when the request left, at when its answer arrived.
	sent, at  time.Time
	leader    string
	leaderURL string
}

func (h *harness) startWriter(interval time.Duration) *writer {
	w := &writer{h: h, stopc: make(chan struct{}), done: make(chan struct{})}
	go w.run(interval)
	return w
}

func (w *writer) run(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	var l leaderInfo
	token := ""
	for n := 0; ; {
		select {
		case <-w.stopc:
			return
		case <-t.C:
		}
		if !l.Known {
			if l = w.h.leader(); !l.Known {
				continue
			}
			token = ""
		}
		if token == "" {
			var err error
			if token, err = w.h.authenticate(l.URL); err != nil {
				l = leaderInfo{}
				w.fail()
				continue
			}
		}
		sent := time.Now()
		code, _, err := w.h.loadPolicy(l.URL, token, fmt.Sprintf("- !variable v-%d\n", n))
		if err != nil || code != http.StatusCreated {
			// Unreachable or not the Leader any more: ask again, and
			// write the same variable (a repeat is harmless).
			l = leaderInfo{}
			w.fail()
			continue
		}
		w.mu.Lock()
		w.acked = append(w.acked, ack{n: n, sent: sent, at: time.Now(), leader: l.Name, leaderURL: l.URL})
		w.mu.Unlock()
		n++
	}
}

func (w *writer) fail() {
	w.mu.Lock()
	w.failed++
	w.mu.Unlock()
}

func (w *writer) halt() {
	w.once.Do(func() { close(w.stopc) })
	<-w.done
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *writer) failures() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// waitAcked waits until n writes are acknowledged (bounded: three minutes).
func (w *writer) waitAcked(t testing.TB, n int) {
	t.Helper()
	for range 1800 {
		if w.count() >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("only %d of %d writes acknowledged in three minutes", w.count(), n)
}

func (w *writer) waitAckedB(b *testing.B, n int) { w.waitAcked(b, n) }

// waitAckAfter waits (three minutes at most) for the first write
// acknowledged after at by a node other than old.
func (w *writer) waitAckAfter(tb testing.TB, at time.Time, old string) ack {
	tb.Helper()
	for range 18000 {
		w.mu.Lock()
		for _, a := range w.acked {
			if a.at.After(at) && a.leader != old {
				w.mu.Unlock()
				return a
			}
		}
		w.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("no write acknowledged by a new Leader within three minutes")
	return ack{}
}

func (w *writer) firstAckSentAfter(at time.Time) (ack, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.acked {
		if a.sent.After(at) {
			return a, true
		}
	}
	return ack{}, false
}

func (w *writer) ackedNumbers() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, len(w.acked))
	for i, a := range w.acked {
		out[i] = fmt.Sprintf("v-%d", a.n)
	}
	return out
}

// missingVariables returns the variables the node at base does not have.
func (h *harness) missingVariables(base string, ids []string) []string {
	h.tb.Helper()
	tok, err := h.authenticate(base)
	if err != nil {
		h.tb.Fatal(err)
	}
	var missing []string
	for _, id := range ids {
		code, body, err := h.do(http.MethodGet, base+"/resources/"+account+"/variable/"+id, tok, nil)
		if err != nil {
			h.tb.Fatal(err)
		}
		switch code {
		case http.StatusOK:
		case http.StatusNotFound:
			missing = append(missing, id)
		default:
			h.tb.Fatalf("GET variable %s: %d %s", id, code, body)
		}
	}
	return missing
}
