package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Store is the Follower's local copy. Each call is atomic: a reader sees
// the copy before it or after it, never half of it.
type Store interface {
	// Applied is the source revision the copy reflects; 0 when empty.
	Applied(ctx context.Context) (int64, error)
	// Apply applies one source revision and records it as applied.
	Apply(ctx context.Context, c Change) error
	// Replace makes the copy exactly kvs, the replicated state at source
	// revision rev, and records rev as applied.
	Replace(ctx context.Context, rev int64, kvs []KV) error
}

// Batcher is a Store that can apply several consecutive source revisions
// at once, when they arrive together (a Follower catching up): one local
// transaction instead of one each. The batch is atomic as a whole and
// records the last revision as applied, so a reader sees the copy at one
// of the source's revisions, never part of one.
type Batcher interface {
	ApplyBatch(ctx context.Context, cs []Change) error
}

// Loader is a Store that can take a snapshot into a copy that holds no
// whole snapshot yet (nothing serves from it) page by page, as the pages
// arrive, instead of collecting the whole snapshot for one Replace: the
// first load of a Follower then costs neither the memory of the whole
// snapshot nor the time to receive it before writing starts.
type Loader interface {
	// LoadStart begins a load of the snapshot at source revision rev: it
	// removes whatever an interrupted earlier load left.
	LoadStart(ctx context.Context, rev int64) error
	// LoadPage writes one page of the snapshot; it need not be atomic
	// with the others.
	LoadPage(ctx context.Context, kvs []KV) error
	// LoadEnd records rev as applied: from then on the copy is whole.
	LoadEnd(ctx context.Context, rev int64) error
}

// Feed opens streams of messages from the quorum.
type Feed interface {
	// Open starts a stream from cursor (0: the Follower has nothing) on
	// one of the quorum's nodes; each call may pick another node.
	Open(ctx context.Context, cursor int64) (Stream, error)
}

// Stream is one open feed.
type Stream interface {
	// Recv returns the next message or why the stream ended.
	Recv() (Message, error)
	// Close ends the stream.
	Close() error
}

// Acker is a Stream that can tell its node what the Follower has applied
// (the lag the node reports is then the applied lag, not the sent one).
// Ack must not block on the network: a later revision may replace one not
// yet sent.
type Acker interface {
	Ack(applied int64)
}

// Config is what a Replica needs.
type Config struct {
	Store Store
	Feed  Feed
	// Observe, when set, is called with the keys written by each applied
	// change or snapshot, after it is applied and before the next one is
	// (the data-key rotation must be taken before values sealed under the
	// new key arrive).
	Observe func(puts []KV)
	// Alone, when set, names keys whose revisions are applied on their
	// own when the Store is a Batcher: never in one local transaction
	// with the revisions before or after them, and observed before the
	// next one is applied (the data-key rotation; the policy guard,
	// which the policy store reads one transaction at a time).
	Alone func(key string) bool
	// MaxBatch bounds how many revisions one ApplyBatch takes (default
	// 256).
	MaxBatch int
	// Backoff is the first wait after a failed stream (default 100ms),
	// doubled up to 2s.
	Backoff time.Duration
	// Logger receives the loop's log lines. Nil discards.
	Logger *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// State is what a Replica is doing.
type State string

// The states of the apply loop.
const (
	StateConnecting   State = "connecting"
	StateSnapshotting State = "snapshotting"
	StateStreaming    State = "streaming"
)

// Status is a Replica's view of itself.
type Status struct {
	State State
	// Applied is the source revision the local copy reflects; Head the
	// last revision the source was known to be at.
	Applied, Head int64
	// LastContact is when the last message arrived; CurrentAt is the
	// last time the copy was known to be as new as the source (Applied
	// equal to Head): its age is the copy's staleness.
	LastContact, CurrentAt time.Time
	// Resyncs counts snapshots taken after the first.
	Resyncs int
}

// Replica is the Follower's apply loop. Create it with New, run it with
// Run.
type Replica struct {
	c Config

	mu       sync.Mutex
	st       Status
	advanced chan struct{}
	loaded   bool
}

// New checks the configuration and reads the store's cursor.
func New(ctx context.Context, c Config) (*Replica, error) {
	if c.Store == nil || c.Feed == nil {
		return nil, errors.New("replica: Config.Store and Config.Feed are required")
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	applied, err := c.Store.Applied(ctx)
	if err != nil {
		return nil, fmt.Errorf("replica: read the applied revision: %w", err)
	}
	r := &Replica{c: c, advanced: make(chan struct{})}
	r.st = Status{State: StateConnecting, Applied: applied, Head: applied}
	r.loaded = applied > 0
	return r, nil
}

// Status returns the loop's current view.
func (r *Replica) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// Applied is the source revision the local copy reflects.
func (r *Replica) Applied() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.Applied
}

// Loaded reports whether the copy holds a whole snapshot (it may serve).
func (r *Replica) Loaded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loaded
}

// WaitFor blocks until the copy reflects source revision rev or ctx ends.
func (r *Replica) WaitFor(ctx context.Context, rev int64) error {
	for {
		r.mu.Lock()
		cur, ch := r.st.Applied, r.advanced
		r.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitLoaded blocks until the copy holds a whole snapshot or ctx ends.
func (r *Replica) WaitLoaded(ctx context.Context) error {
	for {
		r.mu.Lock()
		loaded, ch := r.loaded, r.advanced
		r.mu.Unlock()
		if loaded {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Run follows the feed until ctx ends. Every failure (a node down, a
// stream cut, a protocol error) ends the stream; the loop opens a new one
// from its cursor, on whichever node the feed picks next.
func (r *Replica) Run(ctx context.Context) error {
	backoff := r.c.Backoff
	for ctx.Err() == nil {
		r.setState(StateConnecting)
		progressed, err := r.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			backoff = r.c.Backoff
		}
		r.c.Logger.Info("replication stream ended; reconnecting", "applied", r.Applied(), "err", err, "retry_in", backoff)
		sleep(ctx, backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	return nil
}

// follow runs one stream and reports whether it moved the cursor.
func (r *Replica) follow(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := r.Applied()
	st, err := r.c.Feed.Open(ctx, start)
	if err != nil {
		return false, err
	}
	r.setState(StateStreaming)
	ack := func() {}
	if a, ok := st.(Acker); ok {
		ack = func() { a.Ack(r.Applied()) }
	}
	var snap *snapshot
	defer func() { snap.stop() }()
	// Messages are read ahead on a goroutine of their own, so that the
	// changes that arrived while one was applied can be applied together.
	recvd, stopRecv := receive(st)
	defer stopRecv()
	batcher, _ := r.c.Store.(Batcher)
	var batch []Change
	var held *received // read while draining a batch, not yet handled
	for {
		var in received
		if held != nil {
			in, held = *held, nil
		} else {
			in = <-recvd
		}
		m, err := in.m, in.err
		if err != nil {
			return r.Applied() > start, err
		}
		r.contact(m.Head)
		switch {
		case m.SnapshotStart > 0:
			// A second start (the hub retried its read) begins again.
			snap.stop()
			snap = &snapshot{rev: m.SnapshotStart, at: r.c.Now()}
			r.setState(StateSnapshotting)
			if l, ok := r.c.Store.(Loader); ok && !r.Loaded() {
				// Nothing serves yet: write the pages as they arrive.
				if err := l.LoadStart(ctx, snap.rev); err != nil {
					return false, fmt.Errorf("replica: begin loading the snapshot at %d: %w", snap.rev, err)
				}
				snap.load = r.startLoad(ctx, l)
			}
		case m.Snapshot != nil:
			if snap == nil {
				return false, fmt.Errorf("%w: snapshot page without a start", ErrOutOfOrder)
			}
			snap.keys += len(m.Snapshot)
			if snap.load != nil {
				if err := snap.load.page(m.Snapshot); err != nil {
					return false, fmt.Errorf("replica: load the snapshot at %d: %w", snap.rev, err)
				}
				break
			}
			snap.kvs = append(snap.kvs, m.Snapshot...)
		case m.SnapshotEnd:
			if snap == nil {
				return false, fmt.Errorf("%w: snapshot end without a start", ErrOutOfOrder)
			}
			if snap.load != nil {
				err := snap.load.finish()
				snap.load = nil
				if err != nil {
					return false, fmt.Errorf("replica: load the snapshot at %d: %w", snap.rev, err)
				}
				if err := r.c.Store.(Loader).LoadEnd(ctx, snap.rev); err != nil {
					return false, fmt.Errorf("replica: finish loading the snapshot at %d: %w", snap.rev, err)
				}
			} else {
				if err := r.c.Store.Replace(ctx, snap.rev, snap.kvs); err != nil {
					return false, fmt.Errorf("replica: replace the local copy at %d: %w", snap.rev, err)
				}
				r.observe(snap.kvs)
			}
			r.c.Logger.Info("replica: snapshot applied", "revision", snap.rev, "keys", snap.keys,
				"first_load", !r.Loaded(), "took", r.c.Now().Sub(snap.at).Round(time.Millisecond))
			r.mu.Lock()
			if r.loaded {
				r.st.Resyncs++
			}
			r.loaded = true
			r.mu.Unlock()
			r.advance(snap.rev, true)
			r.setState(StateStreaming)
			snap = nil
			ack()
		case m.Change != nil:
			if snap != nil {
				return false, fmt.Errorf("%w: change %d inside a snapshot", ErrOutOfOrder, m.Change.Revision)
			}
			if !r.Loaded() {
				return false, fmt.Errorf("%w: change %d before any snapshot", ErrOutOfOrder, m.Change.Revision)
			}
			if m.Change.Revision <= r.Applied() {
				continue // sent again after a reconnect
			}
			batch = append(batch[:0], *m.Change)
			if batcher != nil && !r.alone(m.Change) {
				batch, held = r.drain(recvd, batch)
			}
			last := batch[len(batch)-1].Revision
			if len(batch) == 1 {
				err = r.c.Store.Apply(ctx, batch[0])
			} else {
				err = batcher.ApplyBatch(ctx, batch)
			}
			if err != nil {
				return false, fmt.Errorf("replica: apply revisions %d-%d: %w", batch[0].Revision, last, err)
			}
			for _, c := range batch {
				r.observe(c.Puts)
			}
			clear(batch) // the values are the store's now
			r.advance(last, false)
			ack()
		case m.Progress > 0:
			if snap == nil && r.Loaded() {
				r.advance(m.Progress, false)
				ack()
			}
		}
	}
}

// received is one Recv's result.
type received struct {
	m   Message
	err error
}

// recvQueue is how many messages are read ahead of the apply loop.
const recvQueue = 256

// receive reads st on a goroutine of its own until it fails; stop closes
// st and waits for that goroutine.
func receive(st Stream) (<-chan received, func()) {
	ch, quit, done := make(chan received, recvQueue), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := st.Recv()
			select {
			case ch <- received{m, err}:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch, func() {
		close(quit)
		st.Close()
		<-done
	}
}

// drain adds to batch the changes already received that follow it, up to
// MaxBatch; it stops at anything else (returned as held, to be handled
// next) and at a change that must be applied alone.
func (r *Replica) drain(recvd <-chan received, batch []Change) ([]Change, *received) {
	for len(batch) < r.c.MaxBatch {
		select {
		case in := <-recvd:
			c := in.m.Change
			if in.err != nil || c == nil || r.alone(c) || c.Revision <= batch[len(batch)-1].Revision {
				return batch, &in
			}
			r.contact(in.m.Head)
			batch = append(batch, *c)
		default:
			return batch, nil
		}
	}
	return batch, nil
}

// alone reports whether c writes a key Config.Alone names.
func (r *Replica) alone(c *Change) bool {
	if r.c.Alone == nil {
		return false
	}
	for _, kv := range c.Puts {
		if r.c.Alone(kv.Key) {
			return true
		}
	}
	for _, k := range c.Deletes {
		if r.c.Alone(k) {
			return true
		}
	}
	return false
}

// snapshot is a snapshot being received: collected in kvs for one
// Replace, or, on a first load, written as it arrives by load.
type snapshot struct {
	rev  int64
	at   time.Time // when its start arrived
	keys int
	kvs  []KV
	load *pageLoad
}

// stop abandons a load still running (a stream that ended mid-snapshot);
// the next snapshot's LoadStart clears what it wrote.
func (s *snapshot) stop() {
	if s != nil && s.load != nil {
		s.load.abort()
		s.load = nil
	}
}

// pageLoad writes the pages of a first load on its own goroutine, so that
// receiving the next pages overlaps writing the last ones; at most
// loadQueue pages wait.
type pageLoad struct {
	pages  chan []KV
	done   chan struct{}
	cancel context.CancelFunc
	err    error // set before done closes
}

const loadQueue = 4

func (r *Replica) startLoad(ctx context.Context, l Loader) *pageLoad {
	ctx, cancel := context.WithCancel(ctx)
	p := &pageLoad{pages: make(chan []KV, loadQueue), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(p.done)
		for kvs := range p.pages {
			if err := l.LoadPage(ctx, kvs); err != nil {
				p.err = err
				return
			}
			// The data-key rotation is taken before later pages, sealed
			// under it, are read by anyone (nothing reads before the end).
			r.observe(kvs)
		}
	}()
	return p
}

// page queues one page; it fails once the writer has failed.
func (p *pageLoad) page(kvs []KV) error {
	select {
	case p.pages <- kvs:
		return nil
	case <-p.done:
		return p.err
	}
}

// finish waits until every queued page is written.
func (p *pageLoad) finish() error {
	close(p.pages)
	<-p.done
	p.cancel()
	return p.err
}

func (p *pageLoad) abort() {
	p.cancel()
	select {
	case <-p.done:
		return
	default:
	}
	close(p.pages)
	for range p.pages {
	}
	<-p.done
}

func (r *Replica) observe(puts []KV) {
	if r.c.Observe != nil && len(puts) > 0 {
		r.c.Observe(puts)
	}
}

func (r *Replica) setState(s State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.State = s
}

func (r *Replica) contact(head int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.LastContact = r.c.Now()
	r.st.Head = max(r.st.Head, head)
	if r.loaded && r.st.Applied >= r.st.Head {
		r.st.CurrentAt = r.st.LastContact
	}
}

// advance moves the cursor to rev (a snapshot may move it back: the hub
// may take a snapshot at an earlier, consistent revision).
func (r *Replica) advance(rev int64, snapshot bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rev <= r.st.Applied && !snapshot {
		return
	}
	r.st.Applied = rev
	r.st.Head = max(r.st.Head, rev)
	if r.st.Applied >= r.st.Head {
		r.st.CurrentAt = r.c.Now()
	}
	close(r.advanced)
	r.advanced = make(chan struct{})
}
