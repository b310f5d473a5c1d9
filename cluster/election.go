package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Keys of the Leader election. Both values are attached to leases, so a
// dead holder's key disappears by itself.
const (
	// LeaderKey holds the Leader's record (JSON); its create revision is
	// the fencing token of the Leader's term.
	LeaderKey = "/sower/cluster/leader"
	// HandoffKey names the only node that may campaign next, while a
	// Leader hands its role to a chosen Standby.
	HandoffKey = "/sower/cluster/handoff"
)

// Failover timing. A Leader's election key lives on a lease of the failover
// TTL: when the Leader dies, the key expires after at most the TTL and a
// Standby takes over.
const (
	// DefaultFailoverTTL is used when the cluster policy has no ttl
	// annotation.
	DefaultFailoverTTL = 10 * time.Second
	// MinFailoverTTL is the lowest TTL etcd grants with sower's raft
	// timing (heartbeat 100ms, election timeout 1s): etcd raises any
	// lease TTL below 1.5 election timeouts, rounded up to whole seconds.
	MinFailoverTTL = 2 * time.Second
)

// handoffTTL bounds how long the other Standbys hold back while leadership
// goes to a named Standby; if it never campaigns, all of them may.
const handoffTTL = 10 * time.Second

// Leader is the node that holds the Leader role, as recorded under
// LeaderKey.
type Leader struct {
	Name     string    `json:"name"`
	MemberID uint64    `json:"member_id"`
	URL      string    `json:"url"`       // REST base URL
	GRPCAddr string    `json:"grpc_addr"` // host:port of its gRPC listener
	Since    time.Time `json:"since"`
	// Revision is the create revision of the election key: the fencing
	// token of this Leader's term.
	Revision int64 `json:"-"`
}

// ElectionConfig is what a node's Election needs.
type ElectionConfig struct {
	// Client talks to the node's own etcd member (in-process).
	Client *clientv3.Client
	// Self describes this node (Name, MemberID, URL, GRPCAddr).
	Self Leader
	// TTL returns the failover TTL; it is asked before every campaign,
	// so a changed cluster policy applies from the next term. Nil means
	// DefaultFailoverTTL.
	TTL func(context.Context) time.Duration
	// IsVoter reports whether the member votes; a learner never
	// campaigns (it may not have the whole log). Nil means always.
	IsVoter func() bool
	// Logger receives role changes. Nil discards.
	Logger *slog.Logger
}

// Election makes exactly one node of the cluster the Leader, and fences
// writes: a write committed through Txn or with Fence's comparison commits
// only while its node holds the election key of the current term, whatever
// that node believes. A Leader that was cut off, paused or killed and comes
// back can therefore never commit a write, even before it learns it lost
// the role.
//
// It implements the WriteGuard that sower's services call: Check before
// work that only the Leader may do, Txn (or Fence) for the write itself.
type Election struct {
	c   ElectionConfig
	cli *clientv3.Client
	lg  *slog.Logger

	// rev is the fencing revision of this node's term; 0 when it is not
	// the Leader (or is handing the role over).
	rev atomic.Int64

	mu      sync.Mutex
	leader  Leader
	known   bool
	changed chan struct{} // closed and replaced on every change
}

// NewElection checks the configuration. Run campaigns.
func NewElection(c ElectionConfig) (*Election, error) {
	if c.Client == nil {
		return nil, errors.New("cluster: election needs an etcd client")
	}
	if c.Self.Name == "" || c.Self.MemberID == 0 {
		return nil, errors.New("cluster: election needs the node's name and member id")
	}
	if c.TTL == nil {
		c.TTL = func(context.Context) time.Duration { return DefaultFailoverTTL }
	}
	if c.IsVoter == nil {
		c.IsVoter = func() bool { return true }
	}
	lg := c.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Election{c: c, cli: c.Client, lg: lg, changed: make(chan struct{})}, nil
}

// Self is this node's record, as it campaigns with it.
func (e *Election) Self() Leader { return e.c.Self }

// Leader returns the current Leader as this node last observed it.
func (e *Election) Leader() (Leader, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader, e.known
}

// IsLeader reports whether this node holds the Leader role now.
func (e *Election) IsLeader() bool { return e.rev.Load() != 0 }

// Check returns nil on the Leader, else a *NotLeaderError naming the Leader.
// It is a fast local check; the fence in Txn is what makes writes safe.
func (e *Election) Check() error {
	if e.rev.Load() != 0 {
		return nil
	}
	l, ok := e.Leader()
	return &NotLeaderError{Leader: l, Known: ok}
}

// Fence returns the comparison that holds only during this node's term as
// Leader. Add it to the If of every write transaction. When such a
// transaction does not succeed, call Confirm to tell a lost leadership
// from the transaction's own comparisons failing.
func (e *Election) Fence() (clientv3.Cmp, error) {
	rev := e.rev.Load()
	if rev == 0 {
		return clientv3.Cmp{}, e.Check()
	}
	return fenceCmp(rev), nil
}

func fenceCmp(rev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(LeaderKey), "=", rev)
}

// Confirm asks etcd (linearizably) whether this node still holds the term
// it believes it holds.
func (e *Election) Confirm(ctx context.Context) error {
	rev := e.rev.Load()
	if rev == 0 {
		return e.Check()
	}
	held, err := e.holds(ctx, rev)
	if err != nil {
		return fmt.Errorf("cluster: confirm leadership: %w", err)
	}
	if held {
		return nil
	}
	e.lost(rev)
	return e.Check()
}

// holds reads (linearizably) whether the election key is still term rev's.
func (e *Election) holds(ctx context.Context, rev int64) (bool, error) {
	held, _, err := e.holdsAt(ctx, rev)
	return held, err
}

// holdsAt is holds, with the revision the answer was read at.
func (e *Election) holdsAt(ctx context.Context, rev int64) (bool, int64, error) {
	resp, err := e.cli.Get(ctx, LeaderKey)
	if err != nil {
		return false, 0, err
	}
	return len(resp.Kvs) == 1 && resp.Kvs[0].CreateRevision == rev, resp.Header.Revision, nil
}

// Txn runs one transaction (cmps, then, els, as clientv3.Txn takes them)
// that commits only while this node is the Leader, and returns its
// response as if it had run alone. If the node is not, or no longer, the
// Leader, nothing is applied and the error is a *NotLeaderError.
func (e *Election) Txn(ctx context.Context, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	rev := e.rev.Load()
	if rev == 0 {
		return nil, e.Check()
	}
	resp, err := e.cli.Txn(ctx).If(fenceCmp(rev)).Then(clientv3.OpTxn(cmps, then, els)).Commit()
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		e.lost(rev)
		return nil, e.Check()
	}
	inner := resp.Responses[0].GetResponseTxn()
	inner.Header = resp.Header
	return (*clientv3.TxnResponse)(inner), nil
}

// lost records that the term rev is over (its key is gone or replaced).
func (e *Election) lost(rev int64) {
	if e.rev.CompareAndSwap(rev, 0) {
		e.lg.Warn("this node lost the Leader role: its election key is gone", "term", rev)
	}
}

// Changed returns a channel closed at the next change of the observed
// Leader or of this node's role.
func (e *Election) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

// WaitLeader blocks until ok accepts the observed Leader (known or not) or
// ctx ends.
func (e *Election) WaitLeader(ctx context.Context, ok func(l Leader, known bool) bool) (Leader, error) {
	for {
		ch := e.Changed()
		l, known := e.Leader()
		if ok(l, known) {
			return l, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return l, ctx.Err()
		}
	}
}

func (e *Election) setLeader(l Leader, known bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.known == known && e.leader == l {
		return
	}
	e.leader, e.known = l, known
	close(e.changed)
	e.changed = make(chan struct{})
}

// Run takes part in the election until ctx ends: it observes the Leader,
// campaigns when there is none (unless a handoff names another node, or
// this member is a learner), and while it leads, keeps the lease alive and
// steps down the moment the lease or the key is lost. On return this node
// is not the Leader; if it was, it has deleted its key so a Standby takes
// over at once rather than after the TTL.
func (e *Election) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := e.round(ctx); err != nil && ctx.Err() == nil {
			e.lg.Warn("leader election: retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

// round observes the election keys once and waits for the next change, or
// campaigns.
func (e *Election) round(ctx context.Context) error {
	// Bounded: a member cut off from the quorum retries every few
	// seconds, so it learns the new Leader soon after the network heals.
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	resp, err := e.cli.Txn(rctx).Then(clientv3.OpGet(LeaderKey), clientv3.OpGet(HandoffKey)).Commit()
	cancel()
	if err != nil {
		return fmt.Errorf("read election keys: %w", err)
	}
	rev := resp.Header.Revision
	lkvs := resp.Responses[0].GetResponseRange().Kvs
	hkvs := resp.Responses[1].GetResponseRange().Kvs
	if len(lkvs) == 1 {
		kv := lkvs[0]
		var l Leader
		if err := json.Unmarshal(kv.Value, &l); err != nil {
			e.lg.Error("the Leader's election key is unreadable; waiting for it to expire", "err", err)
		}
		l.Revision = kv.CreateRevision
		if l.Name == e.c.Self.Name && l.MemberID == e.c.Self.MemberID {
			// A key of this member from an earlier run of this node:
			// the data-dir lock means no other process holds its lease,
			// so release it now instead of waiting out the TTL.
			e.lg.Info("releasing this node's election key from its previous run", "term", kv.CreateRevision)
			if _, err := e.cli.Txn(ctx).If(fenceCmp(kv.CreateRevision)).Then(clientv3.OpDelete(LeaderKey)).Commit(); err != nil {
				return err
			}
			if kv.Lease != 0 {
				_, _ = e.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease))
			}
			return nil
		}
		e.setLeader(l, true)
		return e.waitKey(ctx, LeaderKey, rev, 0)
	}
	e.setLeader(Leader{}, false)
	if !e.c.IsVoter() {
		// A learner waits for its promotion (or for a Leader).
		return e.waitKey(ctx, LeaderKey, rev, 500*time.Millisecond)
	}
	handoff := clientv3.Compare(clientv3.CreateRevision(HandoffKey), "=", 0)
	if len(hkvs) == 1 {
		to := string(hkvs[0].Value)
		if to != e.c.Self.Name {
			e.lg.Info("leadership is being handed to another Standby; holding back", "to", to)
			return e.waitKey(ctx, HandoffKey, rev, 0)
		}
		handoff = clientv3.Compare(clientv3.Value(HandoffKey), "=", to)
	}
	return e.campaign(ctx, handoff)
}

// waitKey returns when key changes after rev, ctx ends, or (when poll > 0)
// poll has passed.
func (e *Election) waitKey(ctx context.Context, key string, rev int64, poll time.Duration) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timeout <-chan time.Time
	if poll > 0 {
		t := time.NewTimer(poll)
		defer t.Stop()
		timeout = t.C
	}
	wc := e.cli.Watch(wctx, key, clientv3.WithRev(rev+1))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timeout:
			return nil
		case wr, ok := <-wc:
			if !ok || wr.Err() != nil || len(wr.Events) > 0 {
				return wr.Err()
			}
		}
	}
}

// campaign tries to create the election key on a new lease; on success it
// leads until the term ends.
func (e *Election) campaign(ctx context.Context, handoff clientv3.Cmp) error {
	ttl := clampTTL(e.c.TTL(ctx))
	sess, err := concurrency.NewSession(e.cli, concurrency.WithTTL(int(math.Ceil(ttl.Seconds()))), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("create election lease: %w", err)
	}
	me := e.c.Self
	me.Since = time.Now().UTC()
	val, err := json.Marshal(me)
	if err != nil {
		sess.Close()
		return err
	}
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(LeaderKey), "=", 0), handoff).
		Then(clientv3.OpPut(LeaderKey, string(val), clientv3.WithLease(sess.Lease())), clientv3.OpDelete(HandoffKey)).
		Commit()
	if err != nil || !resp.Succeeded {
		e.release(sess)
		if err != nil {
			return fmt.Errorf("campaign: %w", err)
		}
		return nil // another node won; observe it
	}
	me.Revision = resp.Header.Revision
	e.lead(ctx, sess, me, ttl)
	return nil
}

// lead holds the role until the lease or the key is lost or ctx ends.
func (e *Election) lead(ctx context.Context, sess *concurrency.Session, me Leader, ttl time.Duration) {
	e.rev.Store(me.Revision)
	e.setLeader(me, true)
	e.lg.Info("this node is now the Leader", "name", me.Name, "term", me.Revision, "failover_ttl", ttl)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wc := e.cli.Watch(wctx, LeaderKey, clientv3.WithRev(me.Revision+1))
	// The TTL may change during the term (the cluster policy's ttl is
	// loaded or edited): the key then moves to a lease of the new TTL.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	reason := ""
	for reason == "" {
		select {
		case <-tick.C:
			if want := clampTTL(e.c.TTL(ctx)); want != ttl {
				if ns, err := e.relet(ctx, me, want); err != nil {
					e.lg.Warn("move the election key to a lease of the new failover TTL", "ttl", want, "err", err)
				} else {
					e.release(sess)
					sess, ttl = ns, want
					e.lg.Info("the Leader's failover TTL changed", "failover_ttl", ttl, "term", me.Revision)
				}
			}
		case <-sess.Done():
			reason = "its lease expired (etcd unreachable or the quorum lost for longer than the TTL)"
		case <-ctx.Done():
			reason = "the node is shutting down"
		case wr, ok := <-wc:
			if !ok || wr.Err() != nil {
				// The watch broke (compaction, cancel): read the key
				// and watch again from there.
				held, at, err := e.holdsAt(ctx, me.Revision)
				if err != nil || !held {
					reason = "its election key is gone or unreadable"
				} else {
					wc = e.cli.Watch(wctx, LeaderKey, clientv3.WithRev(at+1))
				}
				continue
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete || ev.Kv.CreateRevision != me.Revision {
					reason = "its election key was deleted (handoff or removal)"
				}
			}
		}
	}
	e.rev.CompareAndSwap(me.Revision, 0)
	e.setLeader(Leader{}, false)
	if ctx.Err() != nil {
		// Hand over at once on a clean shutdown.
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = e.cli.Txn(dctx).If(fenceCmp(me.Revision)).Then(clientv3.OpDelete(LeaderKey)).Commit()
		dcancel()
	}
	e.release(sess)
	e.lg.Info("this node is no longer the Leader", "term", me.Revision, "reason", reason)
}

// relet moves the election key to a new lease of ttl, under the fence: the
// key keeps its create revision, so the term and its fencing token stay.
func (e *Election) relet(ctx context.Context, me Leader, ttl time.Duration) (*concurrency.Session, error) {
	ns, err := concurrency.NewSession(e.cli, concurrency.WithTTL(int(math.Ceil(ttl.Seconds()))), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	val, err := json.Marshal(me)
	if err != nil {
		e.release(ns)
		return nil, err
	}
	resp, err := e.cli.Txn(ctx).If(fenceCmp(me.Revision)).Then(clientv3.OpPut(LeaderKey, string(val), clientv3.WithLease(ns.Lease()))).Commit()
	if err != nil || !resp.Succeeded {
		e.release(ns)
		if err == nil {
			err = errors.New("the election key is no longer this term's")
		}
		return nil, err
	}
	return ns, nil
}

func clampTTL(ttl time.Duration) time.Duration { return max(ttl, MinFailoverTTL) }

// release revokes a session's lease without blocking on an unreachable
// quorum for longer than a second.
func (e *Election) release(sess *concurrency.Session) {
	sess.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = e.cli.Revoke(ctx, sess.Lease())
}

// Resign hands the Leader role to the Standby named to: in one fenced
// transaction it deletes this node's election key and records the handoff,
// so only that Standby campaigns (for up to handoffTTL; then any may). It
// returns once the handoff is recorded; WaitLeader tells when the Standby
// has taken over.
func (e *Election) Resign(ctx context.Context, to string) error {
	rev := e.rev.Load()
	if rev == 0 {
		return e.Check()
	}
	if to == e.c.Self.Name {
		return fmt.Errorf("%w: %s is already the Leader", ErrBadTransferee, to)
	}
	lease, err := e.cli.Grant(ctx, int64(handoffTTL/time.Second))
	if err != nil {
		return fmt.Errorf("cluster: hand leadership to %s: %w", to, err)
	}
	// Stop accepting writes before the key goes.
	if !e.rev.CompareAndSwap(rev, 0) {
		return e.Check()
	}
	resp, err := e.cli.Txn(ctx).If(fenceCmp(rev)).
		Then(clientv3.OpDelete(LeaderKey), clientv3.OpPut(HandoffKey, to, clientv3.WithLease(lease.ID))).
		Commit()
	if err != nil {
		// The outcome is unknown: keep the role only if the key is
		// provably still this term's.
		if held, herr := e.holds(ctx, rev); herr == nil && held {
			e.rev.CompareAndSwap(0, rev)
		}
		return fmt.Errorf("cluster: hand leadership to %s: %w", to, err)
	}
	if !resp.Succeeded {
		return e.Check()
	}
	e.lg.Info("handing the Leader role over", "to", to, "term", rev)
	return nil
}
