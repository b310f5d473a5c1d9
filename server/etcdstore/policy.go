package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/policy"
)

// Key layout of the permission model (see docs/architecture.md):
//
//	/sower/policy/facts/<fact key>               one fact (policy.Fact.Key), JSON
//	/sower/policy/guard                          written by every load; loads compare it
//	/sower/policy/versions/<policy>/<version>    one policy version, JSON
//	/sower/policy/intents/<id>/owner             a large load's writer, under a lease
//
// Every load compares the guard's revision with the one it planned
// against, so concurrent loads never interleave: the loser plans again.
// A load that fits in one etcd transaction (--max-txn-ops,
// --max-request-bytes) is that transaction. A larger load claims the guard
// first (its value names the load and the revision of the state before
// it), writes its operations to their keys in transactions fenced on the
// claim, and commits by clearing the guard. While a load is claimed,
// readers use the state at the claim's base revision (etcd keeps history)
// and watchers hold its writes back until the commit; a load that fails, or
// whose writer's lease expires, is rolled back to that base. Either way the
// whole load applies or none of it.
const (
	policyPrefix  = "/sower/policy/"
	factPrefix    = policyPrefix + "facts/"
	guardKey      = policyPrefix + "guard"
	versionPrefix = policyPrefix + "versions/"
	intentPrefix  = policyPrefix + "intents/"
)

// FactKey is the etcd key of a fact.
func FactKey(f policy.Fact) string { return factPrefix + f.Key() }

// Errors of the policy store.
var (
	// ErrPolicyConflict is returned by Commit when another load was stored
	// since the snapshot the change set was planned against: plan again.
	ErrPolicyConflict = errors.New("etcdstore: another policy load was stored concurrently")
	// ErrCorruptPolicy is returned when stored policy data does not decode.
	ErrCorruptPolicy = errors.New("etcdstore: stored policy data is corrupt")
)

// PolicyConfig tunes the policy store.
type PolicyConfig struct {
	// MaxTxnOps and MaxTxnBytes are the etcd server's --max-txn-ops and
	// --max-request-bytes: a load that fits is written in one transaction,
	// a larger one as an intent. Zero takes etcd's defaults (128, 1.5 MiB).
	MaxTxnOps   int
	MaxTxnBytes int
	// VersionsKept is how many versions of each policy are kept. Zero
	// means 20.
	VersionsKept int
	// Logger receives the store's log lines. Nil discards.
	Logger *slog.Logger
}

// Policies keeps the permission model in etcd and a policy.Graph in memory
// that follows it: Open reads it, Run follows etcd's watch, and the node's
// own loads are applied the moment they are stored. Every node answers
// permission checks from its graph.
type Policies struct {
	cli *clientv3.Client
	// w, when set (FenceWrites), is the client every write goes through.
	w  atomic.Pointer[clientv3.Client]
	c  PolicyConfig
	lg *slog.Logger

	graph atomic.Pointer[policy.Graph]

	// applyMu serializes changes to the graph and rev.
	applyMu sync.Mutex
	// rev is the etcd revision the graph reflects; revCh is closed and
	// replaced whenever it grows.
	revMu sync.Mutex
	rev   int64
	revCh chan struct{}

	// The watch's view of a large load in progress (under applyMu): its
	// id, whether this node writes it (then the writer applies it),
	// whether it is being rolled back, and the writes held back.
	intent    string
	aborting  bool
	held      policy.ChangeSet
	ownIntent string

	// hookBatch, when set (tests), runs before each batch of a large
	// load and may fail it.
	hookBatch func(n int) error
}

// NewPolicies returns the store. Call Open before anything else.
func NewPolicies(cli *clientv3.Client, c PolicyConfig) *Policies {
	if c.MaxTxnOps <= 0 {
		c.MaxTxnOps = 128
	}
	if c.MaxTxnBytes <= 0 {
		c.MaxTxnBytes = 3 << 19 // 1.5 MiB
	}
	if c.VersionsKept <= 0 {
		c.VersionsKept = 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Policies{cli: cli, c: c, lg: c.Logger, revCh: make(chan struct{})}
	p.graph.Store(policy.NewGraph())
	return p
}

// FenceWrites sends every write of the store through w from now on: the
// election's FencedClient, so that a Leader that has lost its term cannot
// commit a load (or a claim, batch or rollback of one) in the moment
// before it notices. Reads and watches keep the store's own client.
func (p *Policies) FenceWrites(w *clientv3.Client) { p.w.Store(w) }

// writer is the client writes go through.
func (p *Policies) writer() *clientv3.Client {
	if w := p.w.Load(); w != nil {
		return w
	}
	return p.cli
}

// Graph returns the graph of the current facts. It may be replaced (after
// the watch lost its place in etcd's history), so callers fetch it per use.
func (p *Policies) Graph() *policy.Graph { return p.graph.Load() }

// Revision returns the etcd revision the graph reflects.
func (p *Policies) Revision() int64 {
	p.revMu.Lock()
	defer p.revMu.Unlock()
	return p.rev
}

func (p *Policies) setRevision(rev int64) {
	p.revMu.Lock()
	defer p.revMu.Unlock()
	if rev > p.rev {
		p.rev = rev
		close(p.revCh)
		p.revCh = make(chan struct{})
	}
}

// WaitFor blocks until the graph reflects etcd revision rev.
func (p *Policies) WaitFor(ctx context.Context, rev int64) error {
	for {
		p.revMu.Lock()
		cur, ch := p.rev, p.revCh
		p.revMu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("etcdstore: wait for the policy graph to reach revision %d (at %d): %w", rev, cur, ctx.Err())
		}
	}
}

// Sync waits until the graph reflects the store's current revision, even
// when the last writes touched no policy key (Run then has no event to
// say so): it asks etcd for a progress mark on the watch. A Follower,
// whose graph follows its copy's first load through Run, calls it before
// it serves.
func (p *Policies) Sync(ctx context.Context) error {
	resp, err := p.cli.Get(ctx, guardKey, clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("etcdstore: read the store's revision: %w", err)
	}
	return p.SyncTo(ctx, resp.Header.Revision)
}

// SyncTo is Sync to a revision of the store already known to the caller
// (a Follower's read-after-write: the copy has reached the revision, the
// graph must too).
func (p *Policies) SyncTo(ctx context.Context, rev int64) error {
	for p.Revision() < rev {
		// The mark goes to every watch of the client's stream, Run's
		// among them; Run may not have opened its watch yet: ask again.
		if err := p.cli.RequestProgress(ctx); err != nil {
			return fmt.Errorf("etcdstore: ask for the policy watch's progress: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := p.WaitFor(wctx, rev)
		cancel()
		if err != nil && ctx.Err() != nil {
			return err
		}
	}
	return nil
}

// Open reads every fact into a new graph. Run keeps the graph current
// from there. (A large load left unfinished by a writer that died is rolled
// back by the next Begin, on whichever node writes next.)
func (p *Policies) Open(ctx context.Context) error { return p.load(ctx) }

// load reads the facts into a new graph: the current ones, or, while a
// large load is claimed, those at its base revision (the watch then sees
// the load from its claim on).
func (p *Policies) load(ctx context.Context) error {
	resp, err := p.cli.Get(ctx, guardKey)
	if err != nil {
		return fmt.Errorf("etcdstore: read policy guard: %w", err)
	}
	rev := resp.Header.Revision
	if len(resp.Kvs) == 1 {
		g, err := decodeGuard(resp.Kvs[0].Value)
		if err != nil {
			return err
		}
		if g.Intent != "" {
			rev = g.Base
		}
	}
	var list []policy.Fact
	if _, err := p.scan(ctx, factPrefix, rev, false, func(kv *mvccpb.KeyValue) error {
		f, err := policy.UnmarshalFact(strings.TrimPrefix(string(kv.Key), factPrefix), kv.Value)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorruptPolicy, err)
		}
		list = append(list, f)
		return nil
	}); err != nil {
		return err
	}
	p.applyMu.Lock()
	p.graph.Store(policy.NewGraph(list...))
	p.intent, p.aborting, p.held = "", false, policy.ChangeSet{}
	p.revMu.Lock()
	p.rev = rev
	close(p.revCh)
	p.revCh = make(chan struct{})
	p.revMu.Unlock()
	p.applyMu.Unlock()
	p.lg.Info("policy graph loaded", "facts", len(list), "revision", rev)
	return nil
}

// scanPage is how many keys one range read returns. etcd counts the
// whole rest of the range on every limited read, so a scan costs
// O(keys²/scanPage): with 575,000 facts, pages of 10,000 spent 1.6 s of a
// Follower's cold start counting; pages of 100,000 (about 25 MB each)
// spend a tenth of that.
const scanPage = 100_000

// scan calls fn for every key under prefix at revision rev (the current
// revision when zero) in pages, and returns the revision read.
func (p *Policies) scan(ctx context.Context, prefix string, rev int64, keysOnly bool, fn func(*mvccpb.KeyValue) error) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(scanPage)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		resp, err := p.cli.Get(ctx, key, opts...)
		if err != nil {
			return 0, fmt.Errorf("etcdstore: read %s: %w", prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv); err != nil {
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0))
	}
}

// Run follows the watch until ctx ends, applying what other nodes (and
// large loads) store to the graph. When etcd has compacted the history the
// watch needs, it reads everything again.
func (p *Policies) Run(ctx context.Context) error {
	for {
		err := p.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			p.lg.Warn("policy watch fell behind etcd compaction; reloading the graph")
			if err := p.load(ctx); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

func (p *Policies) watch(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wc := p.cli.Watch(ctx, policyPrefix, clientv3.WithPrefix(), clientv3.WithRev(p.Revision()+1))
	for resp := range wc {
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.Canceled {
			return fmt.Errorf("etcdstore: policy watch canceled: %s", resp.CancelReason)
		}
		if resp.IsProgressNotify() {
			// Every change up to here has been delivered (and applied).
			p.setRevision(resp.Header.Revision)
			continue
		}
		// Events of one revision are one transaction; apply them as one.
		evs := resp.Events
		for len(evs) > 0 {
			n := 1
			for n < len(evs) && evs[n].Kv.ModRevision == evs[0].Kv.ModRevision {
				n++
			}
			if err := p.applyEvents(evs[:n]); err != nil {
				return err
			}
			evs = evs[n:]
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("etcdstore: policy watch closed")
}

// applyEvents applies the events of one transaction. A large load's
// writes are held back from its claim to its commit, and dropped when it
// is rolled back; this node's own large loads are applied by their writer.
func (p *Policies) applyEvents(evs []*clientv3.Event) error {
	rev := evs[0].Kv.ModRevision
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	var g *guard
	for _, ev := range evs {
		if string(ev.Kv.Key) == guardKey && ev.Type == mvccpb.PUT {
			v, err := decodeGuard(ev.Kv.Value)
			if err != nil {
				return err
			}
			g = &v
		}
	}
	// Decide what the facts of this transaction are for.
	const (
		skip = iota // applied already, or never to be applied
		hold        // part of a large load not yet committed
		apply
	)
	what, ending := apply, false
	switch {
	case p.intent == "" && g != nil && g.Intent != "":
		p.intent, p.aborting, p.held = g.Intent, g.Aborting, policy.ChangeSet{}
		what = skip // the claim writes no facts
	case p.intent != "" && (g == nil || g.Intent != ""):
		if g != nil && g.Aborting {
			p.aborting, p.held = true, policy.ChangeSet{}
		}
		what = hold
		if p.aborting || p.intent == p.ownIntent {
			what = skip
		}
	case p.intent != "":
		ending = true
		if p.aborting || p.intent == p.ownIntent {
			what = skip
		}
	case rev <= p.Revision():
		what = skip // this node stored it and applied it already
	}
	if what != skip {
		if err := collectFacts(evs, &p.held); err != nil {
			return err
		}
	}
	if ending || (what == apply && p.intent == "") {
		if what == apply && !p.held.Empty() && rev > p.Revision() {
			gr := p.Graph()
			p.held.Revision = gr.Revision()
			if err := gr.Apply(&p.held); err != nil {
				return err
			}
		}
		p.intent, p.aborting, p.held = "", false, policy.ChangeSet{}
	}
	p.setRevision(rev)
	return nil
}

// collectFacts adds the fact writes among evs to cs.
func collectFacts(evs []*clientv3.Event, cs *policy.ChangeSet) error {
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		if !strings.HasPrefix(key, factPrefix) {
			continue
		}
		fk := key[len(factPrefix):]
		if ev.Type == mvccpb.PUT {
			f, err := policy.UnmarshalFact(fk, ev.Kv.Value)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrCorruptPolicy, err)
			}
			cs.Created = append(cs.Created, f)
			continue
		}
		f, err := factOfKey(fk)
		if err != nil {
			return err
		}
		cs.Deleted = append(cs.Deleted, f)
	}
	return nil
}
