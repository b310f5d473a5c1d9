package authn_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sowerproject/sower/authn"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	type step struct {
		advance  time.Duration
		id, addr string
		fail     int  // failures to record before checking
		succeed  bool // record a success before checking
		allowed  bool
	}
	tests := map[string]struct {
		cfg   authn.LimiterConfig
		steps []step
	}{
		"fresh identity is allowed": {
			cfg:   authn.LimiterConfig{Burst: 3, Refill: time.Second},
			steps: []step{{id: "a", addr: "x", allowed: true}},
		},
		"burst failures lock the identity at that address": {
			cfg: authn.LimiterConfig{Burst: 3, Refill: time.Second},
			steps: []step{
				{id: "a", addr: "x", fail: 2, allowed: true},
				{id: "a", addr: "x", fail: 1, allowed: false},
			},
		},
		"the same identity from another address is not blocked": {
			cfg: authn.LimiterConfig{Burst: 3, Refill: time.Minute},
			steps: []step{
				{id: "admin", addr: "stranger", fail: 10, allowed: false},
				{id: "admin", addr: "owner", allowed: true},
				{id: "admin", addr: "owner", fail: 2, allowed: true},
				{id: "admin", addr: "stranger", allowed: false},
			},
		},
		"other identities are not blocked": {
			cfg: authn.LimiterConfig{Burst: 3, Refill: time.Second},
			steps: []step{
				{id: "a", addr: "x", fail: 10, allowed: false},
				{id: "b", addr: "x", allowed: true},
				{id: "b", addr: "x", fail: 2, allowed: true},
			},
		},
		"an address failing for many names is locked for every name": {
			cfg: authn.LimiterConfig{Burst: 3, SourceBurst: 5, SourceRefill: time.Minute},
			steps: []step{
				{id: "a", addr: "x", fail: 2, allowed: true},
				{id: "b", addr: "x", fail: 2, allowed: true},
				{id: "c", addr: "x", fail: 1, allowed: false},
				{id: "d", addr: "x", allowed: false},
				{id: "d", addr: "y", allowed: true},
			},
		},
		"one failure comes back per refill": {
			cfg: authn.LimiterConfig{Burst: 3, Refill: time.Second},
			steps: []step{
				{id: "a", addr: "x", fail: 3, allowed: false},
				{advance: 999 * time.Millisecond, id: "a", addr: "x", allowed: false},
				{advance: time.Millisecond, id: "a", addr: "x", allowed: true},
				{id: "a", addr: "x", fail: 1, allowed: false},
			},
		},
		"success forgets the identity's failures but not the address's": {
			cfg: authn.LimiterConfig{Burst: 3, Refill: time.Minute, SourceBurst: 5, SourceRefill: time.Minute},
			steps: []step{
				{id: "a", addr: "x", fail: 2, allowed: true},
				{id: "a", addr: "x", succeed: true, fail: 2, allowed: true},
				{id: "b", addr: "x", fail: 1, allowed: false},
			},
		},
		"a spent global budget refuses addresses that failed, not new ones": {
			cfg: authn.LimiterConfig{GlobalBurst: 4, GlobalRefill: time.Minute},
			steps: []step{
				{id: "a", addr: "1", fail: 1, allowed: true},
				{id: "a", addr: "2", fail: 1, allowed: true},
				{id: "a", addr: "3", fail: 1, allowed: true},
				{id: "a", addr: "4", fail: 1, allowed: false},
				{id: "b", addr: "1", allowed: false},
				{id: "a", addr: "5", allowed: true},
				{advance: time.Minute, id: "b", addr: "1", allowed: true},
			},
		},
		"eviction forgets the least recently failed unlocked pair": {
			cfg: authn.LimiterConfig{Burst: 2, Refill: time.Hour, SourceBurst: 100, MaxEntries: 3},
			steps: []step{
				{id: "a", addr: "x", fail: 1, allowed: true},
				{id: "b", addr: "x", fail: 1, allowed: true},
				{id: "c", addr: "x", fail: 1, allowed: true},
				// a was forgotten to make room for c: two more failures
				// to lock it again.
				{id: "a", addr: "x", fail: 1, allowed: true},
				{id: "c", addr: "x", fail: 1, allowed: false},
			},
		},
		"eviction never forgets a locked pair": {
			cfg: authn.LimiterConfig{Burst: 1, Refill: time.Hour, SourceBurst: 100, MaxEntries: 3},
			steps: []step{
				{id: "a", addr: "x", fail: 1, allowed: false},
				{id: "b", addr: "x", fail: 1, allowed: false},
				{id: "c", addr: "x", fail: 1, allowed: false},
				{id: "d", addr: "x", fail: 1, allowed: true},
				{id: "a", addr: "x", allowed: false},
				{id: "b", addr: "x", allowed: false},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Unix(1_700_000_000, 0)}
			l := authn.NewLimiter(tc.cfg, authn.WithLimiterClock(c.Now))
			for i, s := range tc.steps {
				c.Advance(s.advance)
				if s.succeed {
					l.Succeed(s.id, s.addr)
				}
				for range s.fail {
					l.Fail(s.id, s.addr)
				}
				wait, ok := l.Allow(s.id, s.addr)
				if ok != s.allowed {
					t.Fatalf("step %d: Allow(%q, %q) = %v (wait %s), want %v", i, s.id, s.addr, ok, wait, s.allowed)
				}
				if !ok && wait <= 0 {
					t.Fatalf("step %d: refused with retryAfter %s, want > 0", i, wait)
				}
			}
		})
	}
}

func TestLimiterRetryAfter(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := authn.NewLimiter(authn.LimiterConfig{Burst: 2, Refill: 10 * time.Second}, authn.WithLimiterClock(c.Now))
	l.Fail("a", "x")
	l.Fail("a", "x")
	c.Advance(4 * time.Second)
	wait, ok := l.Allow("a", "x")
	if ok || wait != 6*time.Second {
		t.Fatalf("Allow = %s, %v; want 6s, false", wait, ok)
	}
}

// A flood of failures for made-up identities, each from its own address,
// fills the limiter far beyond its capacity; the identity locked before the
// flood stays locked, and memory stays bounded.
func TestLimiterFloodDoesNotUnlock(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := authn.NewLimiter(authn.LimiterConfig{}, authn.WithLimiterClock(c.Now))
	for range authn.DefaultLimiterBurst {
		l.Fail("acme:user:admin", "10.0.0.66")
	}
	if _, ok := l.Allow("acme:user:admin", "10.0.0.66"); ok {
		t.Fatal("admin is not locked after a burst of failures")
	}
	for i := range 70_000 {
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)
		l.Fail(fmt.Sprint("acme:user:made-up-", i), addr)
	}
	if n := l.Len(); n > authn.DefaultLimiterMaxEntries {
		t.Fatalf("Len = %d, more than MaxEntries %d", n, authn.DefaultLimiterMaxEntries)
	}
	if wait, ok := l.Allow("acme:user:admin", "10.0.0.66"); ok || wait <= 0 {
		t.Fatalf("after the flood Allow(admin, stranger) = %s, %v; want still locked", wait, ok)
	}
}

func TestLimiterBoundedAndForgetsRefilled(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := authn.NewLimiter(authn.LimiterConfig{Burst: 2, Refill: time.Second, SourceBurst: 10_000, MaxEntries: 100}, authn.WithLimiterClock(c.Now))
	for i := range 1000 {
		l.Fail(fmt.Sprint("id-", i), "x")
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("Len = %d, want 100", n)
	}
	c.Advance(10 * time.Second)
	l.Allow("id-999", "x") // a full bucket is dropped when seen
	if n := l.Len(); n != 99 {
		t.Fatalf("Len after refilled Allow = %d, want 99", n)
	}
}

func BenchmarkLimiterFailAllow(b *testing.B) {
	l := authn.NewLimiter(authn.LimiterConfig{})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("account:host:app-", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i%len(keys)]
		l.Allow(k, "10.0.0.1")
		l.Fail(k, "10.0.0.1")
		i++
	}
}
