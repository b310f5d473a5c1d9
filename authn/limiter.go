package authn

import (
	"container/list"
	"sync"
	"time"
)

// LimiterConfig sets how many failed logins are allowed and how fast they
// are earned back. The zero value takes the defaults; docs/authn.md says how
// to tune each one with the node's flags.
type LimiterConfig struct {
	// Burst is how many failures in a row one identity may make from one
	// client address before that address's attempts for that identity are
	// refused. Default 10.
	Burst int
	// Refill is how long it takes an identity at an address to earn one
	// failure back. Default 6s, so a locked-out pair may try about ten times
	// a minute.
	Refill time.Duration
	// SourceBurst is how many failures, for any identities, one client
	// address may make before all its attempts are refused. Default 30.
	SourceBurst int
	// SourceRefill is how long it takes an address to earn one failure
	// back. Default 2s.
	SourceRefill time.Duration
	// GlobalBurst is the node-wide failure budget: how many failures from
	// all addresses together the node absorbs in a burst. When it is spent,
	// addresses that have failed recently are refused until it refills;
	// addresses that have not still get through. Default 1000.
	GlobalBurst int
	// GlobalRefill is how long the node takes to earn one failure of the
	// budget back. Default 10ms (100 failures a second).
	GlobalRefill time.Duration
	// MaxEntries bounds memory: how many identity-and-address pairs and
	// addresses are tracked (about 200 bytes each). Default 65536.
	MaxEntries int
}

// The defaults of LimiterConfig.
const (
	DefaultLimiterBurst        = 10
	DefaultLimiterRefill       = 6 * time.Second
	DefaultLimiterSourceBurst  = 30
	DefaultLimiterSourceRefill = 2 * time.Second
	DefaultLimiterGlobalBurst  = 1000
	DefaultLimiterGlobalRefill = 10 * time.Millisecond
	DefaultLimiterMaxEntries   = 65536
)

func (c LimiterConfig) withDefaults() LimiterConfig {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Burst, DefaultLimiterBurst)
	defd(&c.Refill, DefaultLimiterRefill)
	def(&c.SourceBurst, DefaultLimiterSourceBurst)
	defd(&c.SourceRefill, DefaultLimiterSourceRefill)
	def(&c.GlobalBurst, DefaultLimiterGlobalBurst)
	defd(&c.GlobalRefill, DefaultLimiterGlobalRefill)
	def(&c.MaxEntries, DefaultLimiterMaxEntries)
	return c
}

// LimiterOption changes an optional behaviour of a Limiter.
type LimiterOption func(*Limiter)

// WithLimiterClock replaces time.Now, for tests.
func WithLimiterClock(now func() time.Time) LimiterOption {
	return func(l *Limiter) { l.now = now }
}

// Limiter slows down repeated failed logins with token buckets of failures:
// a bucket starts with its burst, each failure takes one token, tokens come
// back at the refill rate, and a bucket with no token left is locked until
// one comes back. Three kinds of bucket apply to each attempt:
//
//   - the identity at the client address (Burst, Refill): hammering one
//     name from one address locks that name for that address only, so the
//     owner of the name still logs in from another address;
//   - the client address (SourceBurst, SourceRefill): an address that fails
//     for many names is locked whatever name it tries next;
//   - the node (GlobalBurst, GlobalRefill): when failures from everywhere
//     spend the budget, every address that has failed recently is refused
//     until the budget refills, while addresses with no recent failure
//     still get through.
//
// A success forgets the identity-at-address bucket (not the address's: a
// stranger's own account must not buy more guesses at others).
//
// Memory is bounded by MaxEntries. When full, the least recently failed
// bucket that still has a token left is forgotten; a locked bucket is never
// forgotten while it is locked, so flooding the limiter with made-up
// identities cannot unlock one. When every tracked bucket is locked, a
// failure for a new key is charged to the node budget alone, and while that
// budget is spent every untracked key is refused too.
//
// Use:
//
//	if wait, ok := limiter.Allow(id, addr); !ok {
//		return authn.Refuse(authn.ReasonRateLimited, "retry in %s", wait)
//	}
//	if err := check(); err != nil {
//		limiter.Fail(id, addr)
//		return err
//	}
//	limiter.Succeed(id, addr)
type Limiter struct {
	cfg LimiterConfig
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // of *bucket
	open    *list.List               // buckets with a token left; front = most recently failed
	locked  *list.List               // buckets without; front = most recently failed
	global  bucket
}

type bucketKind uint8

const (
	kindPair bucketKind = iota
	kindSource
)

type bucket struct {
	key    string
	kind   bucketKind
	tokens float64
	at     time.Time // when tokens was computed
	list   *list.List
}

// NewLimiter returns a limiter; see LimiterConfig for the defaults.
func NewLimiter(cfg LimiterConfig, opts ...LimiterOption) *Limiter {
	l := &Limiter{cfg: cfg.withDefaults(), now: time.Now, entries: make(map[string]*list.Element), open: list.New(), locked: list.New()}
	for _, o := range opts {
		o(l)
	}
	l.global = bucket{tokens: float64(l.cfg.GlobalBurst), at: l.now()}
	return l
}

// Config returns the limits in force, defaults applied.
func (l *Limiter) Config() LimiterConfig { return l.cfg }

func pairKey(identity, source string) string { return "p\x00" + identity + "\x00" + source }
func sourceKey(source string) string         { return "s\x00" + source }

func (l *Limiter) shape(k bucketKind) (burst int, refill time.Duration) {
	if k == kindSource {
		return l.cfg.SourceBurst, l.cfg.SourceRefill
	}
	return l.cfg.Burst, l.cfg.Refill
}

// refill brings b up to date and reports whether it is full (and so carries
// no information worth keeping).
func refill(b *bucket, burst int, every time.Duration, now time.Time) bool {
	if d := now.Sub(b.at); d > 0 {
		b.tokens += float64(d) / float64(every)
		b.at = now
	}
	if b.tokens >= float64(burst) {
		b.tokens = float64(burst)
		return true
	}
	return false
}

func wait(b *bucket, every time.Duration) time.Duration {
	return time.Duration((1 - b.tokens) * float64(every))
}

// check returns how long key must wait, dropping its bucket when full.
// The bool says whether the key is tracked.
func (l *Limiter) check(key string, now time.Time) (time.Duration, bool) {
	e, found := l.entries[key]
	if !found {
		return 0, false
	}
	b := e.Value.(*bucket)
	burst, every := l.shape(b.kind)
	if refill(b, burst, every, now) {
		l.remove(e)
		return 0, false
	}
	if b.tokens >= 1 {
		return 0, true
	}
	return wait(b, every), true
}

// Allow reports whether identity may try to authenticate from source now.
// When it may not, it returns how long until it may.
func (l *Limiter) Allow(identity, source string) (retryAfter time.Duration, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	srcWait, srcTracked := l.check(sourceKey(source), now)
	pairWait, _ := l.check(pairKey(identity, source), now)
	retryAfter = max(srcWait, pairWait)
	refill(&l.global, l.cfg.GlobalBurst, l.cfg.GlobalRefill, now)
	if l.global.tokens < 1 && (srcTracked || len(l.entries) >= l.cfg.MaxEntries) {
		retryAfter = max(retryAfter, wait(&l.global, l.cfg.GlobalRefill))
	}
	return retryAfter, retryAfter <= 0
}

// Fail records a failed attempt for identity from source.
func (l *Limiter) Fail(identity, source string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	refill(&l.global, l.cfg.GlobalBurst, l.cfg.GlobalRefill, now)
	l.global.tokens = max(l.global.tokens-1, 0)
	l.fail(sourceKey(source), kindSource, now)
	l.fail(pairKey(identity, source), kindPair, now)
}

func (l *Limiter) fail(key string, kind bucketKind, now time.Time) {
	burst, every := l.shape(kind)
	var b *bucket
	if e, found := l.entries[key]; found {
		b = e.Value.(*bucket)
		refill(b, burst, every, now)
		b.list.Remove(e)
	} else {
		if len(l.entries) >= l.cfg.MaxEntries && !l.evict(now) {
			// Every tracked bucket is locked: the node budget, already
			// charged, is all that counts this failure.
			return
		}
		b = &bucket{key: key, kind: kind, tokens: float64(burst), at: now}
	}
	b.tokens = max(b.tokens-1, 0)
	b.list = l.open
	if b.tokens < 1 {
		b.list = l.locked
	}
	l.entries[key] = b.list.PushFront(b)
}

// evict forgets one bucket that is not locked, the least recently failed,
// and reports whether there was one.
func (l *Limiter) evict(now time.Time) bool {
	if e := l.open.Back(); e != nil {
		l.remove(e)
		return true
	}
	// Locked buckets earn tokens back with time; the least recently failed
	// is the first to have one. A bucket that has one is no longer locked.
	e := l.locked.Back()
	if e == nil {
		return false
	}
	b := e.Value.(*bucket)
	burst, every := l.shape(b.kind)
	if refill(b, burst, every, now); b.tokens < 1 {
		return false
	}
	l.remove(e)
	return true
}

// Succeed forgets identity's failures from source. The source's own bucket
// stays: it counts failures for every identity.
func (l *Limiter) Succeed(identity, source string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, found := l.entries[pairKey(identity, source)]; found {
		l.remove(e)
	}
}

// Len returns how many buckets are being tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

func (l *Limiter) remove(e *list.Element) {
	b := e.Value.(*bucket)
	b.list.Remove(e)
	delete(l.entries, b.key)
}
