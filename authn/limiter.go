package authn

import (
	"container/list"
	"sync"
	"time"
)

// LimiterConfig sets how many failed logins an identity may make and how fast
// it earns them back. The zero value takes the defaults.
type LimiterConfig struct {
	// Burst is how many failures in a row an identity may make before its
	// attempts are refused. Default 10.
	Burst int
	// Refill is how long it takes to earn one failure back. Default 6s, so a
	// locked-out identity may try about ten times a minute.
	Refill time.Duration
	// MaxEntries bounds memory: when more identities than this are being
	// tracked, the least recently failed one is forgotten. Default 65536
	// (a few MiB).
	MaxEntries int
}

// LimiterOption changes an optional behaviour of a Limiter.
type LimiterOption func(*Limiter)

// WithLimiterClock replaces time.Now, for tests.
func WithLimiterClock(now func() time.Time) LimiterOption {
	return func(l *Limiter) { l.now = now }
}

// Limiter slows down repeated failed logins per identity with a token bucket
// of failures: each identity starts with Burst tokens, each failure takes one,
// one comes back every Refill, and an identity with no token left is refused
// until one comes back. A success forgets the identity. Identities do not share
// buckets, so an attacker hammering one identity does not lock out another.
//
// Memory is bounded by MaxEntries with least-recently-used eviction. An
// attacker who fails for more than MaxEntries distinct identities can make the
// limiter forget an earlier one; that costs MaxEntries failed requests per
// forgotten bucket, which the server-wide request limits already meter.
//
// The key is whatever names the identity to protect (for example
// "account:user:alice"); the caller may add the client address to it.
//
// Use:
//
//	if wait, ok := limiter.Allow(id); !ok {
//		return authn.Refuse(authn.ReasonRateLimited, "retry in %s", wait)
//	}
//	if err := check(); err != nil {
//		limiter.Fail(id)
//		return err
//	}
//	limiter.Succeed(id)
type Limiter struct {
	cfg LimiterConfig
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // of *bucket
	lru     *list.List               // front = most recently failed
}

type bucket struct {
	key    string
	tokens float64
	at     time.Time // when tokens was computed
}

// NewLimiter returns a limiter; see LimiterConfig for the defaults.
func NewLimiter(cfg LimiterConfig, opts ...LimiterOption) *Limiter {
	if cfg.Burst <= 0 {
		cfg.Burst = 10
	}
	if cfg.Refill <= 0 {
		cfg.Refill = 6 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 65536
	}
	l := &Limiter{cfg: cfg, now: time.Now, entries: make(map[string]*list.Element), lru: list.New()}
	for _, o := range opts {
		o(l)
	}
	return l
}

// refill brings b up to date and reports whether it is full (and so carries
// no information worth keeping).
func (l *Limiter) refill(b *bucket, now time.Time) bool {
	if d := now.Sub(b.at); d > 0 {
		b.tokens += float64(d) / float64(l.cfg.Refill)
		b.at = now
	}
	if b.tokens >= float64(l.cfg.Burst) {
		b.tokens = float64(l.cfg.Burst)
		return true
	}
	return false
}

// Allow reports whether key may try to authenticate now. When it may not, it
// returns how long until it may.
func (l *Limiter) Allow(key string) (retryAfter time.Duration, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, found := l.entries[key]
	if !found {
		return 0, true
	}
	b := e.Value.(*bucket)
	if l.refill(b, now) {
		l.remove(e)
		return 0, true
	}
	if b.tokens >= 1 {
		return 0, true
	}
	return time.Duration((1 - b.tokens) * float64(l.cfg.Refill)), false
}

// Fail records a failed attempt for key.
func (l *Limiter) Fail(key string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, found := l.entries[key]
	var b *bucket
	if found {
		b = e.Value.(*bucket)
		l.refill(b, now)
		l.lru.MoveToFront(e)
	} else {
		b = &bucket{key: key, tokens: float64(l.cfg.Burst), at: now}
		l.entries[key] = l.lru.PushFront(b)
		for l.lru.Len() > l.cfg.MaxEntries {
			l.remove(l.lru.Back())
		}
	}
	if b.tokens -= 1; b.tokens < 0 {
		b.tokens = 0
	}
}

// Succeed forgets key's failures.
func (l *Limiter) Succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, found := l.entries[key]; found {
		l.remove(e)
	}
}

// Len returns how many identities are being tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

func (l *Limiter) remove(e *list.Element) {
	l.lru.Remove(e)
	delete(l.entries, e.Value.(*bucket).key)
}
