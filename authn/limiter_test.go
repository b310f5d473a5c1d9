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
		advance time.Duration
		key     string
		fail    int  // failures to record before checking
		succeed bool // record a success before checking
		allowed bool
	}
	tests := map[string]struct {
		cfg   authn.LimiterConfig
		steps []step
	}{
		"fresh identity is allowed": {
			cfg:   authn.LimiterConfig{Burst: 3, Refill: time.Second},
			steps: []step{{key: "a", allowed: true}},
		},
		"burst failures lock the identity": {
			cfg: authn.LimiterConfig{Burst: 3, Refill: time.Second},
			steps: []step{
				{key: "a", fail: 2, allowed: true},
				{key: "a", fail: 1, allowed: false},
			},
		},
		"other identities are not blocked": {
			cfg: authn.LimiterConfig{Burst: 3, Refill: time.Second},
			steps: []step{
				{key: "a", fail: 10, allowed: false},
				{key: "b", allowed: true},
				{key: "b", fail: 2, allowed: true},
				{key: "a", allowed: false},
			},
		},
		"one failure comes back per refill": {
			cfg: authn.LimiterConfig{Burst: 3, Refill: time.Second},
			steps: []step{
				{key: "a", fail: 3, allowed: false},
				{advance: 999 * time.Millisecond, key: "a", allowed: false},
				{advance: time.Millisecond, key: "a", allowed: true},
				{key: "a", fail: 1, allowed: false},
			},
		},
		"success forgets failures": {
			cfg: authn.LimiterConfig{Burst: 3, Refill: time.Minute},
			steps: []step{
				{key: "a", fail: 2, allowed: true},
				{key: "a", succeed: true, fail: 2, allowed: true},
				{key: "a", fail: 1, allowed: false},
			},
		},
		"eviction forgets the least recently failed identity": {
			cfg: authn.LimiterConfig{Burst: 1, Refill: time.Hour, MaxEntries: 2},
			steps: []step{
				{key: "a", fail: 1, allowed: false},
				{key: "b", fail: 1, allowed: false},
				{key: "c", fail: 1, allowed: false},
				{key: "a", allowed: true},
				{key: "b", allowed: false},
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
					l.Succeed(s.key)
				}
				for range s.fail {
					l.Fail(s.key)
				}
				wait, ok := l.Allow(s.key)
				if ok != s.allowed {
					t.Fatalf("step %d: Allow(%q) = %v (wait %s), want %v", i, s.key, ok, wait, s.allowed)
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
	l.Fail("a")
	l.Fail("a")
	c.Advance(4 * time.Second)
	wait, ok := l.Allow("a")
	if ok || wait != 6*time.Second {
		t.Fatalf("Allow = %s, %v; want 6s, false", wait, ok)
	}
}

func TestLimiterBoundedAndForgetsRefilled(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := authn.NewLimiter(authn.LimiterConfig{Burst: 2, Refill: time.Second, MaxEntries: 100}, authn.WithLimiterClock(c.Now))
	for i := range 1000 {
		l.Fail(fmt.Sprint("id-", i))
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("Len = %d, want 100", n)
	}
	c.Advance(10 * time.Second)
	l.Allow("id-999") // a full bucket is dropped when seen
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
		l.Allow(k)
		l.Fail(k)
		i++
	}
}
