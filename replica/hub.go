package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchPrefix is what the hub's one watch covers: every sower key. It
// filters through the allow-list itself, so that every source revision is
// seen (as a change or a progress mark) and a Follower's cursor can name
// any of them.
const watchPrefix = "/sower/"

// HubConfig is what a Hub needs.
type HubConfig struct {
	// Client reads the node's own etcd member (required).
	Client *clientv3.Client
	// SnapshotAt, when set, maps the revision a snapshot would be taken
	// at to the one it is taken at (the policy store's last consistent
	// revision while a large load is half written). It may only go back.
	SnapshotAt func(ctx context.Context, rev int64) (int64, error)
	// RingSize is how many replicated revisions are kept to resume
	// Followers from (default 8192). A Follower further behind gets a
	// snapshot.
	RingSize int
	// Buffer is how many messages may wait for one Follower before it is
	// cut off as too slow (default 4096); it resumes on its next stream.
	Buffer int
	// Idle is how long the hub waits without a change before it sends a
	// progress mark (default 1s).
	Idle time.Duration
	// ProgressDelay is how long the hub holds back the progress mark of
	// revisions that changed nothing replicated (the audit trail's, a
	// seed's) before it sends one mark for all of them (default 20ms);
	// a change sent meanwhile makes it unneeded. Without it every such
	// revision was a message to every Follower: with Followers' reads
	// audited, as many as the replicated writes themselves.
	ProgressDelay time.Duration
	// PageSize is how many keys one snapshot message holds (default
	// 10,000).
	PageSize int
	// WaitBehind is how long Serve waits for this node to reach a
	// Follower that is ahead of it (default 5s).
	WaitBehind time.Duration
	// Logger receives the hub's log lines. Nil discards.
	Logger *slog.Logger
}

// Hub is the serving side of the feed. Create it with NewHub, run it
// with Run, and call Serve once per attached Follower.
type Hub struct {
	c HubConfig

	mu sync.Mutex
	// Every source revision in (base, pos] was observed; the ring holds
	// those of them that changed replicated keys, oldest first.
	base, pos int64
	ring      []*Change
	ringAt    []time.Time // when each ring entry was seen
	ready     bool
	advanced  chan struct{} // closed and replaced when pos grows
	subs      map[*subscriber]struct{}
	stopped   chan struct{}
	// told is the last revision broadcast (a change or a mark); marking
	// is set while a held-back progress mark is due.
	told    int64
	marking bool
}

type subscriber struct {
	ch    chan Message
	cut   chan struct{} // closed when the hub drops it
	peer  Peer
	sent  int64
	acked int64
	at    time.Time
}

// Peer names an attached Follower for the operators' view.
type Peer struct {
	// Name is the Follower's name (its certificate's common name).
	Name string
	// Addr is its network address.
	Addr string
	// Serial is its certificate's serial (hex): what a revocation names.
	Serial string
}

// Attached is one Follower attached to this hub.
type Attached struct {
	Peer
	// Sent is the last source revision sent to it; Applied the last one
	// it acknowledged as applied (its cursor when it attached, until its
	// first acknowledgement); Lag is how many revisions Applied is behind
	// this node.
	Sent, Applied, Lag int64
	// LagTime is how long ago this hub saw the first replicated change
	// the Follower has not acknowledged (0 when it has them all).
	LagTime time.Duration
	// Since is when it attached.
	Since time.Time
}

// NewHub returns a hub that has not started.
func NewHub(c HubConfig) (*Hub, error) {
	if c.Client == nil {
		return nil, errors.New("replica: HubConfig.Client is required")
	}
	if c.RingSize <= 0 {
		c.RingSize = 8192
	}
	if c.Buffer <= 0 {
		c.Buffer = 4096
	}
	if c.Idle <= 0 {
		c.Idle = time.Second
	}
	if c.PageSize <= 0 {
		c.PageSize = 10_000
	}
	if c.ProgressDelay <= 0 {
		c.ProgressDelay = 20 * time.Millisecond
	}
	if c.WaitBehind <= 0 {
		c.WaitBehind = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{c: c, advanced: make(chan struct{}), subs: map[*subscriber]struct{}{}, stopped: make(chan struct{})}, nil
}

// Run holds the hub's watch until ctx ends. When the watch is lost it
// resumes from the last revision seen; when that was compacted away, it
// starts over and every attached Follower reconnects (and gets a snapshot
// if this hub cannot resume it).
func (h *Hub) Run(ctx context.Context) error {
	defer func() {
		h.mu.Lock()
		for s := range h.subs {
			h.dropLocked(s)
		}
		close(h.stopped)
		h.mu.Unlock()
	}()
	for ctx.Err() == nil {
		if !h.isReady() {
			if err := h.start(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				h.c.Logger.Warn("replication feed cannot read etcd; retrying", "err", err)
				sleep(ctx, time.Second)
				continue
			}
		}
		err := h.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			h.c.Logger.Warn("replication feed fell behind etcd compaction; starting over")
			h.reset()
			continue
		}
		h.c.Logger.Info("replication feed watch restarts", "err", err)
		sleep(ctx, 200*time.Millisecond)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (h *Hub) isReady() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready
}

// start places the hub at the member's current revision.
func (h *Hub) start(ctx context.Context) error {
	resp, err := h.c.Client.Get(ctx, watchPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.base, h.pos, h.ring, h.ringAt, h.ready = resp.Header.Revision, resp.Header.Revision, nil, nil, true
	h.signalLocked()
	return nil
}

// reset forgets the ring and cuts every Follower off.
func (h *Hub) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready = false
	for s := range h.subs {
		h.dropLocked(s)
	}
}

func (h *Hub) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	h.mu.Lock()
	from := h.pos + 1
	h.mu.Unlock()
	wc := h.c.Client.Watch(wctx, watchPrefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
	tick := time.NewTicker(h.c.Idle)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if time.Since(last) >= h.c.Idle {
				// Ask etcd where the watch is: its answer is a progress
				// mark every Follower receives as a heartbeat.
				if err := h.c.Client.RequestProgress(wctx); err != nil {
					return err
				}
			}
		case wr, ok := <-wc:
			if !ok {
				return errors.New("replica: watch closed")
			}
			if err := wr.Err(); err != nil {
				return err
			}
			if wr.Canceled {
				return fmt.Errorf("replica: watch canceled: %s", wr.CancelReason)
			}
			if wr.IsProgressNotify() {
				h.progress(wr.Header.Revision)
				last = time.Now()
				continue
			}
			evs := wr.Events
			for len(evs) > 0 {
				n := 1
				for n < len(evs) && evs[n].Kv.ModRevision == evs[0].Kv.ModRevision {
					n++
				}
				h.publish(changeOf(evs[:n]))
				evs = evs[n:]
			}
			last = time.Now()
		}
	}
}

// changeOf is the replicated part of one revision's events.
func changeOf(evs []*clientv3.Event) *Change {
	c := &Change{Revision: evs[0].Kv.ModRevision}
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		if !Allowed(key) {
			continue
		}
		if ev.Type == clientv3.EventTypeDelete {
			c.Deletes = append(c.Deletes, key)
		} else {
			c.Puts = append(c.Puts, KV{Key: key, Value: ev.Kv.Value})
		}
	}
	return c
}

func (h *Hub) signalLocked() {
	close(h.advanced)
	h.advanced = make(chan struct{})
}

func (h *Hub) publish(c *Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.Revision <= h.pos {
		return
	}
	h.pos = c.Revision
	if c.empty() {
		// Held back: one mark for every such revision within the delay,
		// or none when a change (whose revision covers them) goes first.
		if !h.marking {
			h.marking = true
			time.AfterFunc(h.c.ProgressDelay, h.heldProgress)
		}
		h.signalLocked()
		return
	}
	h.ring = append(h.ring, c)
	h.ringAt = append(h.ringAt, time.Now())
	if len(h.ring) > h.c.RingSize {
		h.base = h.ring[0].Revision
		h.ring[0] = nil
		h.ring = h.ring[1:]
		h.ringAt = h.ringAt[1:]
	}
	h.broadcastLocked(Message{Change: c, Head: c.Revision})
	h.signalLocked()
}

func (h *Hub) progress(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev > h.pos {
		h.pos = rev
		h.signalLocked()
	}
	h.broadcastLocked(Message{Progress: h.pos, Head: h.pos})
}

// heldProgress sends the progress mark publish held back, unless a change
// or another mark already told every Follower.
func (h *Hub) heldProgress() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.marking = false
	if h.ready && h.pos > h.told {
		h.broadcastLocked(Message{Progress: h.pos, Head: h.pos})
	}
}

func (h *Hub) broadcastLocked(m Message) {
	h.told = max(h.told, m.Progress, m.Head)
	if m.Change != nil {
		h.told = max(h.told, m.Change.Revision)
	}
	for s := range h.subs {
		select {
		case s.ch <- m:
		default:
			h.dropLocked(s)
		}
	}
}

func (h *Hub) dropLocked(s *subscriber) {
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.cut)
	}
}

// Followers lists the Followers attached to this hub, by name.
func (h *Hub) Followers() []Attached {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Attached, 0, len(h.subs))
	now := time.Now()
	for s := range h.subs {
		a := Attached{Peer: s.peer, Sent: s.sent, Applied: s.acked, Lag: max(0, h.pos-s.acked), Since: s.at}
		// The first change in the ring the Follower has not applied.
		if i := sort.Search(len(h.ring), func(i int) bool { return h.ring[i].Revision > s.acked }); i < len(h.ring) {
			a.LagTime = now.Sub(h.ringAt[i])
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].Addr < out[j].Addr
	})
	return out
}

// Revision is the last source revision the hub has seen.
func (h *Hub) Revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pos
}

// Disconnect cuts off every attached Follower whose certificate serial is
// among serials (a revoked seed), and reports how many it cut.
func (h *Hub) Disconnect(revoked func(serial string) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for s := range h.subs {
		if s.peer.Serial != "" && revoked(s.peer.Serial) {
			h.dropLocked(s)
			n++
		}
	}
	return n
}

// Serve feeds one Follower whose cursor is from (0: it has nothing) until
// ctx ends, send fails, or the Follower is cut off (ErrSlow), and returns
// why. It sends a snapshot first when this hub cannot resume from. acks
// (nil: none) carries the revisions the Follower reports as applied: the
// lag Followers reports.
func (h *Hub) Serve(ctx context.Context, peer Peer, from int64, send func(Message) error, acks <-chan int64) error {
	if err := h.waitReady(ctx); err != nil {
		return err
	}
	cursor := from
	resumable, err := h.waitFor(ctx, from)
	if err != nil {
		return err
	}
	if !resumable {
		if cursor, err = h.sendSnapshot(ctx, send, true); err != nil {
			return err
		}
	}
	s, replay, head, err := h.attach(ctx, peer, from, cursor)
	if errors.Is(err, ErrSlow) && !resumable {
		// The snapshot's revision (SnapshotAt may take an earlier one)
		// is older than this hub's history: take one at the head.
		if cursor, err = h.sendSnapshot(ctx, send, false); err != nil {
			return err
		}
		s, replay, head, err = h.attach(ctx, peer, from, cursor)
	}
	if err != nil {
		return err
	}
	defer func() {
		h.mu.Lock()
		h.dropLocked(s)
		h.mu.Unlock()
	}()
	for _, c := range replay {
		if err := send(Message{Change: c, Head: head}); err != nil {
			return err
		}
	}
	if err := send(Message{Progress: head, Head: head}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.cut:
			select {
			case <-h.stopped:
				return ErrClosed
			default:
			}
			return ErrSlow
		case a := <-acks:
			h.mu.Lock()
			s.acked = max(s.acked, a)
			h.mu.Unlock()
		case m := <-s.ch:
			if err := send(m); err != nil {
				return err
			}
			h.mu.Lock()
			s.sent = max(s.sent, m.Progress)
			if m.Change != nil {
				s.sent = max(s.sent, m.Change.Revision)
			}
			h.mu.Unlock()
		}
	}
}

func (h *Hub) waitReady(ctx context.Context) error {
	for {
		h.mu.Lock()
		ready, ch := h.ready, h.advanced
		h.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-h.stopped:
			return ErrClosed
		case <-ch:
		}
	}
}

// waitFor waits, bounded, until the hub has reached rev, and reports
// whether it can resume a Follower from there.
func (h *Hub) waitFor(ctx context.Context, rev int64) (bool, error) {
	if rev <= 0 {
		return false, nil
	}
	deadline := time.NewTimer(h.c.WaitBehind)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		base, pos, ch := h.base, h.pos, h.advanced
		h.mu.Unlock()
		if rev <= pos {
			return rev >= base, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-h.stopped:
			return false, ErrClosed
		case <-deadline.C:
			return false, fmt.Errorf("%w: at %d, follower at %d", ErrBehind, pos, rev)
		case <-ch:
		}
	}
}

// attach registers the subscriber and returns the ring's changes after
// cursor, taken under the same lock so that nothing is missed or doubled.
// applied is what the Follower holds (its cursor before any snapshot).
func (h *Hub) attach(ctx context.Context, peer Peer, applied, cursor int64) (*subscriber, []*Change, int64, error) {
	if _, err := h.waitFor(ctx, cursor); err != nil {
		return nil, nil, 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if cursor < h.base {
		// The ring moved past the snapshot while it was sent.
		return nil, nil, 0, ErrSlow
	}
	i := sort.Search(len(h.ring), func(i int) bool { return h.ring[i].Revision > cursor })
	replay := append([]*Change(nil), h.ring[i:]...)
	s := &subscriber{ch: make(chan Message, h.c.Buffer), cut: make(chan struct{}), peer: peer, sent: h.pos, acked: applied, at: time.Now()}
	h.subs[s] = struct{}{}
	return s, replay, h.pos, nil
}

// snapshotRead is one range read of a snapshot, or why it failed.
type snapshotRead struct {
	kvs []*mvccpb.KeyValue
	err error
}

// readSnapshot reads every replicated key at rev into out, in large
// reads, and closes out; a failed read is its last.
func (h *Hub) readSnapshot(ctx context.Context, rev int64, out chan<- snapshotRead) {
	defer close(out)
	put := func(rd snapshotRead) bool {
		select {
		case out <- rd:
			return rd.err == nil
		case <-ctx.Done():
			return false
		}
	}
	for _, r := range Replicated {
		key, end := r.Key, ""
		if r.Prefix {
			end = clientv3.GetPrefixRangeEnd(r.Key)
		}
		for {
			// etcd walks the whole rest of the range to count it on every
			// limited read, so reads are few and large (ten messages'
			// worth): with 1,000 keys a read, 100,000 hosts and 18,000 variables took
			// 47 s to a Follower's ready, 24 s with 100,000 (quiet machine).
			opts := []clientv3.OpOption{clientv3.WithRev(rev), clientv3.WithLimit(int64(10 * h.c.PageSize))}
			if end != "" {
				opts = append(opts, clientv3.WithRange(end))
			}
			resp, err := h.c.Client.Get(ctx, key, opts...)
			if err != nil {
				put(snapshotRead{err: err})
				return
			}
			if len(resp.Kvs) > 0 && !put(snapshotRead{kvs: resp.Kvs}) {
				return
			}
			if !resp.More || len(resp.Kvs) == 0 || end == "" {
				break
			}
			key = string(append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0))
		}
	}
}

// sendSnapshot sends every replicated key at one revision and returns it.
func (h *Hub) sendSnapshot(ctx context.Context, send func(Message) error, consistent bool) (int64, error) {
	resp, err := h.c.Client.Get(ctx, watchPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("replica: snapshot: %w", err)
	}
	rev := resp.Header.Revision
	if h.c.SnapshotAt != nil && consistent {
		at, err := h.c.SnapshotAt(ctx, rev)
		if err != nil {
			return 0, fmt.Errorf("replica: snapshot: %w", err)
		}
		if at > 0 && at < rev {
			rev = at
		}
	}
	if err := send(Message{SnapshotStart: rev, Head: rev}); err != nil {
		return 0, err
	}
	page := make([]KV, 0, h.c.PageSize)
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		err := send(Message{Snapshot: page, Head: rev})
		page = make([]KV, 0, h.c.PageSize)
		return err
	}
	// The reads run one ahead of the sends: while a read's pages go out
	// (and the Follower writes them), the next read is under way, so the
	// Follower is not left idle for the length of every read. Unbuffered:
	// at most two reads are held, the one being sent and the next.
	rctx, stop := context.WithCancel(ctx)
	reads := make(chan snapshotRead)
	go h.readSnapshot(rctx, rev, reads)
	defer func() {
		stop()
		for range reads { // until the reader has returned
		}
	}()
	for rd := range reads {
		if rd.err != nil {
			return 0, fmt.Errorf("replica: snapshot at %d: %w", rev, rd.err)
		}
		for _, kv := range rd.kvs {
			page = append(page, KV{Key: string(kv.Key), Value: kv.Value})
			if len(page) == cap(page) {
				if err := flush(); err != nil {
					return 0, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if err := send(Message{SnapshotEnd: true, Head: rev}); err != nil {
		return 0, err
	}
	return rev, nil
}
