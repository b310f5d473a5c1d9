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

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/policy"
)

// Key layout of the permission model (see docs/architecture.md):
//
//	/sower/policy/facts/<fact key>               one fact (policy.Fact.Key), JSON
//	/sower/policy/guard                          bumped by every load; loads compare it
//	/sower/policy/versions/<policy>/<version>    one policy version, JSON
//	/sower/policy/intents/<id>/chunks/<n>        a large load's operations, written first
//	/sower/policy/intents/<id>/commit            the record that makes a large load happen
//	/sower/policy/intents/<id>/applied           marks the copying of a committed large load
//
// Every load is one etcd transaction that compares the guard's revision with
// the one it planned against: all of it applies or none, and concurrent loads
// never interleave. A load too large for one transaction (etcd's
// --max-txn-ops and --max-request-bytes) is written as an intent: its
// operations go to chunk keys no reader looks at, then one small
// transaction commits it (the guard compare, the commit record); from that
// revision on every node's graph holds the whole load, and the operations are
// copied to their keys in batches afterwards. Until the copy is done, a
// reader of the fact keys overlays the committed intent; a node that finds a
// committed intent at start finishes the copy; an intent without commit
// record is garbage and is removed.
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
	c   PolicyConfig
	lg  *slog.Logger

	graph atomic.Pointer[policy.Graph]

	// applyMu serializes changes to the graph and rev.
	applyMu sync.Mutex
	// rev is the etcd revision the graph reflects; revCh is closed and
	// replaced whenever it grows.
	revMu sync.Mutex
	rev   int64
	revCh chan struct{}
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

// Open finishes a large load a previous writer left half copied, then reads
// every fact into a new graph. Run keeps the graph current from there.
func (p *Policies) Open(ctx context.Context) error {
	if err := p.recover(ctx); err != nil {
		return err
	}
	return p.load(ctx)
}

// load reads the facts at one revision, overlays a committed intent that is
// still being copied, and replaces the graph.
func (p *Policies) load(ctx context.Context) error {
	facts := map[string][]byte{}
	rev, err := p.scan(ctx, factPrefix, 0, func(k, v []byte) error {
		facts[string(k)] = v
		return nil
	})
	if err != nil {
		return err
	}
	g, err := p.readGuard(ctx, rev)
	if err != nil {
		return err
	}
	if g.Pending != "" {
		ops, err := p.readIntent(ctx, g.Pending, rev)
		if err != nil {
			return err
		}
		for _, op := range ops {
			if !strings.HasPrefix(op.Key, factPrefix) {
				continue
			}
			if op.Delete {
				delete(facts, op.Key)
			} else {
				facts[op.Key] = op.Value
			}
		}
	}
	list := make([]policy.Fact, 0, len(facts))
	for k, v := range facts {
		f, err := policy.UnmarshalFact(strings.TrimPrefix(k, factPrefix), v)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorruptPolicy, err)
		}
		list = append(list, f)
	}
	p.applyMu.Lock()
	p.graph.Store(policy.NewGraph(list...))
	p.revMu.Lock()
	p.rev = rev
	close(p.revCh)
	p.revCh = make(chan struct{})
	p.revMu.Unlock()
	p.applyMu.Unlock()
	p.lg.Info("policy graph loaded", "facts", len(list), "revision", rev)
	return nil
}

// scanPage is how many keys one range read returns.
const scanPage = 10000

// scan calls fn for every key under prefix at revision rev (the current
// revision when zero) in pages, and returns the revision read.
func (p *Policies) scan(ctx context.Context, prefix string, rev int64, fn func(k, v []byte) error) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(scanPage)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := p.cli.Get(ctx, key, opts...)
		if err != nil {
			return 0, fmt.Errorf("etcdstore: read %s: %w", prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv.Key, kv.Value); err != nil {
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
		// Events of one revision are one transaction; apply them as one.
		evs := resp.Events
		for len(evs) > 0 {
			n := 1
			for n < len(evs) && evs[n].Kv.ModRevision == evs[0].Kv.ModRevision {
				n++
			}
			if err := p.applyEvents(ctx, evs[:n]); err != nil {
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

// applyEvents applies the events of one transaction.
func (p *Policies) applyEvents(ctx context.Context, evs []*clientv3.Event) error {
	rev := evs[0].Kv.ModRevision
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if rev <= p.Revision() {
		return nil // applied when this node stored it
	}
	var (
		cs      policy.ChangeSet
		copying bool
		commit  string
	)
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		switch {
		case strings.HasPrefix(key, intentPrefix):
			id, rest, _ := strings.Cut(strings.TrimPrefix(key, intentPrefix), "/")
			switch {
			case rest == "commit" && ev.Type == mvccpb.PUT:
				commit = id
			default:
				// Copying or cleaning up a committed intent: its facts
				// were applied with its commit record.
				copying = true
			}
		case strings.HasPrefix(key, factPrefix):
			fk := strings.TrimPrefix(key, factPrefix)
			if ev.Type == mvccpb.PUT {
				f, err := policy.UnmarshalFact(fk, ev.Kv.Value)
				if err != nil {
					return fmt.Errorf("%w: %w", ErrCorruptPolicy, err)
				}
				cs.Created = append(cs.Created, f)
			} else {
				f, err := factOfKey(fk)
				if err != nil {
					return err
				}
				cs.Deleted = append(cs.Deleted, f)
			}
		}
	}
	if commit != "" {
		ops, err := p.readIntent(ctx, commit, rev)
		if err != nil {
			return err
		}
		cs = changeSetOf(ops)
	} else if copying {
		cs = policy.ChangeSet{}
	}
	if !cs.Empty() {
		g := p.Graph()
		cs.Revision = g.Revision()
		if err := g.Apply(&cs); err != nil {
			return err
		}
	}
	p.setRevision(rev)
	return nil
}

// changeSetOf turns stored operations into the graph's change set.
func changeSetOf(ops []op) policy.ChangeSet {
	var cs policy.ChangeSet
	for _, o := range ops {
		if !strings.HasPrefix(o.Key, factPrefix) {
			continue
		}
		key := strings.TrimPrefix(o.Key, factPrefix)
		if o.Delete {
			if f, err := factOfKey(key); err == nil {
				cs.Deleted = append(cs.Deleted, f)
			}
			continue
		}
		if f, err := policy.UnmarshalFact(key, o.Value); err == nil {
			cs.Created = append(cs.Created, f)
		}
	}
	return cs
}
