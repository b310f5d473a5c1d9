// Package keypool keeps freshly generated private keys ready, so that a
// burst of requests (a startup storm of Follower pods asking for seeds) does
// not pay for key generation on its critical path: the keys are made while
// the node is otherwise idle.
//
// Every key is handed out once and only once. The pool holds keys in memory
// only; it never writes them anywhere. When it is empty, Get generates a key
// on the spot, so a pool never blocks a caller and never changes what a
// caller gets, only when the work is done.
package keypool

import (
	"context"
	"sync"
)

// Pool holds up to a fixed number of keys made by a generator.
type Pool[K any] struct {
	keys chan K
	gen  func() (K, error)

	startOnce sync.Once
	mu        sync.Mutex // guards stopped, cancel and done
	stopped   bool
	cancel    context.CancelFunc
	done      chan struct{}
}

// New returns a pool of up to size keys made by gen. The pool starts
// filling in the background with the first Get, so a node that never
// issues never spends the CPU; Stop ends the filler. A size of zero or
// less gives a pool that always generates on demand.
func New[K any](size int, gen func() (K, error)) *Pool[K] {
	p := &Pool[K]{gen: gen}
	if size > 0 {
		p.keys = make(chan K, size)
	}
	return p
}

func (p *Pool[K]) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.fill(ctx, p.done)
}

// fill generates keys until the pool is full, then waits for room. A
// generator error (the system's random source failing) stops the filler:
// Get then generates on demand and reports the error to its caller.
func (p *Pool[K]) fill(ctx context.Context, done chan struct{}) {
	defer close(done)
	for ctx.Err() == nil {
		k, err := p.gen()
		if err != nil {
			return
		}
		select {
		case p.keys <- k:
		case <-ctx.Done():
		}
	}
}

// Get returns a key nobody else has: one from the pool, or a new one when
// the pool is empty.
func (p *Pool[K]) Get() (K, error) {
	if p.keys == nil {
		return p.gen()
	}
	p.startOnce.Do(p.start)
	select {
	case k := <-p.keys:
		return k, nil
	default:
		return p.gen()
	}
}

// Len is the number of keys ready.
func (p *Pool[K]) Len() int { return len(p.keys) }

// Stop ends the filler, waits for it, and drops the keys still pooled. Get
// keeps working, generating on demand. Stop is idempotent.
func (p *Pool[K]) Stop() {
	p.mu.Lock()
	p.stopped = true
	cancel, done := p.cancel, p.done
	p.cancel = nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	for {
		select {
		case <-p.keys:
		default:
			return
		}
	}
}
