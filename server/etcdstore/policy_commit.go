package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/policy"
)

// guard is the value of the guard key.
type guard struct {
	// Intent names a large load that claimed the guard and is not
	// finished; Base is the revision whose state is the one before it.
	Intent string `json:"intent,omitempty"`
	Base   int64  `json:"base,omitempty"`
	// Aborting says the load is being rolled back to Base.
	Aborting bool `json:"aborting,omitempty"`
	// Claimed, set when rolling back, is the revision at which the load
	// claimed the guard: secret values (which loads only delete) are
	// restored as they were then, not at Base.
	Claimed int64 `json:"claimed,omitempty"`
}

func decodeGuard(raw []byte) (guard, error) {
	var g guard
	if err := json.Unmarshal(raw, &g); err != nil {
		return guard{}, fmt.Errorf("%w: guard: %w", ErrCorruptPolicy, err)
	}
	return g, nil
}

func (g guard) encode() string {
	b, _ := json.Marshal(g)
	return string(b)
}

// op is one write of a load: a put, a delete, or (with End) the delete of
// a range. A large load holds hundreds of thousands; etcd's own operation
// type is built per batch, it is several times larger.
type op struct {
	Key    string
	Value  []byte
	Delete bool
	End    string
}

func (o op) size() int { return len(o.Key) + len(o.Value) + len(o.End) + 16 }

func (o op) etcd() clientv3.Op {
	switch {
	case o.End != "":
		return clientv3.OpDelete(o.Key, clientv3.WithRange(o.End))
	case o.Delete:
		return clientv3.OpDelete(o.Key)
	}
	return clientv3.OpPut(o.Key, string(o.Value))
}

// txnMargin is room left in a transaction for the guard and framing.
const txnMargin = 64 << 10

// A large load is written in batches of at most batchOps operations and
// batchBytes bytes (within etcd's limits): etcd applies such a transaction
// in well under its 100 ms "slow request" threshold, beyond which it
// formats and logs every request, at a cost larger than the write.
var (
	batchOps   = 4096
	batchBytes = 2 << 20
)

// batchesInFlight is how many batches wait for etcd at once.
const batchesInFlight = 2

// errFenced stops a load's batches once one finds the guard moved.
var errFenced = errors.New("etcdstore: the policy load was fenced off")

// intentTTL is how long a large load's writer may go silent (its lease)
// before another writer rolls the load back.
const intentTTL = 30 // seconds

// PolicySnapshot is the state a load is planned against: Begin returns it,
// Commit refuses a change set if the policies changed since.
type PolicySnapshot struct {
	// guardRev is the guard's revision; base the revision read at, whose
	// state a large load's readers use until it commits.
	guardRev, base int64
}

// Begin returns a snapshot for planning a load once the graph holds every
// load stored so far. A large load in progress is waited for, or rolled
// back if its writer is gone.
func (p *Policies) Begin(ctx context.Context) (PolicySnapshot, error) {
	for range 64 {
		resp, err := p.cli.Get(ctx, guardKey)
		if err != nil {
			return PolicySnapshot{}, fmt.Errorf("etcdstore: read policy guard: %w", err)
		}
		var (
			g   guard
			rev int64
		)
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if g, err = decodeGuard(resp.Kvs[0].Value); err != nil {
				return PolicySnapshot{}, err
			}
		}
		if g.Intent != "" {
			if err := p.settle(ctx, g, rev); err != nil {
				return PolicySnapshot{}, err
			}
			continue
		}
		if err := p.WaitFor(ctx, rev); err != nil {
			return PolicySnapshot{}, err
		}
		return PolicySnapshot{guardRev: rev, base: resp.Header.Revision}, nil
	}
	return PolicySnapshot{}, ErrPolicyConflict
}

// settle deals with a large load found in progress: while its writer (or
// the node rolling it back) holds its lease, wait for the guard to move;
// once the lease is gone, roll it back here.
func (p *Policies) settle(ctx context.Context, g guard, guardRev int64) error {
	owner, err := p.cli.Get(ctx, ownerKey(g.Intent))
	if err != nil {
		return fmt.Errorf("etcdstore: read policy load owner: %w", err)
	}
	if len(owner.Kvs) == 0 {
		p.lg.Warn("rolling back a policy load whose writer is gone", "intent", g.Intent)
		return p.rollback(ctx, g, guardRev)
	}
	if p.formerTerm(g.Intent) {
		// Writes are fenced on the Leader's term, and this node leads
		// now: a load it does not run itself belongs to a former term
		// and can never commit, whatever its owner's lease says. Roll it
		// back now rather than after that lease (a killed Leader's
		// lives on for intentTTL). Were this node not the Leader, the
		// rollback's fenced writes would fail with not the leader.
		p.lg.Warn("rolling back a policy load of a former Leader's term", "intent", g.Intent)
		return p.rollback(ctx, g, guardRev)
	}
	wctx, cancel := context.WithTimeout(ctx, (intentTTL+5)*time.Second)
	defer cancel()
	wc := p.cli.Watch(wctx, guardKey, clientv3.WithRev(guardRev+1))
	for resp := range wc {
		if resp.Err() != nil || len(resp.Events) > 0 {
			break
		}
	}
	return ctx.Err()
}

// formerTerm reports whether the large load intent, found in progress, is
// not this node's own while the store's writes are fenced on the Leader's
// term (FenceWrites): only the current Leader's loads can commit then.
func (p *Policies) formerTerm(intent string) bool {
	if p.w.Load() == nil {
		return false
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	return intent != p.ownIntent
}

// PolicyCommit is one load to store.
type PolicyCommit struct {
	// ChangeSet is the planned change, against the graph of the snapshot.
	ChangeSet *policy.ChangeSet
	// Credentials are the new users' and hosts' credential records.
	Credentials []*apikey.Credential
	// Versions are the policy versions the load creates, one per policy;
	// Commit numbers them.
	Versions []PolicyVersion
	// Audit are audit records written with the load, in its transaction:
	// a host factory's enrolment, say.
	Audit []AuditEvent
}

// AuditEvent is an audit record's type and body.
type AuditEvent struct {
	Type string
	Body any
}

// Commit stores a load, all of it or nothing, or refuses it with
// ErrPolicyConflict if another load was stored since snap. The graph holds
// the load when Commit returns. It returns the numbered versions and the
// etcd revision of the load.
func (p *Policies) Commit(ctx context.Context, snap PolicySnapshot, c PolicyCommit) ([]PolicyVersion, int64, error) {
	cs := c.ChangeSet
	// Versions first: they need a read, and are few.
	var head []op
	versions := make([]PolicyVersion, len(c.Versions))
	for i, v := range c.Versions {
		last, err := p.headVersion(ctx, v.Policy)
		if err != nil {
			return nil, 0, err
		}
		v.Version = last + 1
		v.FinishedAt = time.Now().UTC()
		raw, err := encodeVersion(v)
		if err != nil {
			return nil, 0, err
		}
		head = append(head, op{Key: versionKey(v.Policy, v.Version), Value: raw})
		if oldest := v.Version - int64(p.c.VersionsKept); oldest > 0 {
			head = append(head, op{Key: versionKey(v.Policy, 0), End: versionKey(v.Policy, oldest+1), Delete: true})
		}
		versions[i] = v
	}
	for _, e := range c.Audit {
		a := auditOp(time.Now(), e.Type, e.Body)
		head = append(head, op{Key: string(a.KeyBytes()), Value: a.ValueBytes()})
	}
	src := &opSource{cs: cs, creds: c.Credentials, head: head}

	var (
		rev int64
		err error
	)
	if src.count()+1 <= p.c.MaxTxnOps {
		var ops []op
		size := 0
		for o := range src.all {
			ops = append(ops, o)
			size += o.size()
		}
		if src.err != nil {
			return nil, 0, src.err
		}
		if size+txnMargin <= p.c.MaxTxnBytes {
			rev, err = p.commitDirect(ctx, snap, ops, cs)
		} else {
			rev, err = p.commitLarge(ctx, snap, slices.Values(ops), cs)
		}
	} else {
		rev, err = p.commitLarge(ctx, snap, src.all, cs)
		if err == nil && src.err != nil {
			err = src.err
		}
	}
	if err != nil {
		return nil, 0, err
	}
	return versions, rev, p.WaitFor(ctx, rev)
}

// opSource yields a load's writes, encoding each only when it is written,
// so that a load of hundreds of thousands of facts never holds them all
// encoded at once. A change set names each key once (its created, updated
// and deleted facts are disjoint; a role gets or loses a credential, not
// both), as etcd requires within a transaction.
type opSource struct {
	cs    *policy.ChangeSet
	creds []*apikey.Credential
	head  []op
	err   error
}

// deletedValues is the write that deletes a variable's secret values when
// f is the variable's resource: a deleted variable's values go with it, as
// in Conjur, so a variable declared again later starts without a value.
//
// A deleted host factory's tokens go with it likewise.
func deletedValues(f policy.Fact) (op, bool) {
	r, ok := f.(policy.Resource)
	if !ok {
		return op{}, false
	}
	var prefix string
	switch r.ID.Kind {
	case policy.KindVariable:
		prefix = SecretPrefix(r.ID.String())
	case policy.KindHostFactory:
		prefix = HostFactoryTokenPrefix(r.ID.String())
	default:
		return op{}, false
	}
	return op{Key: prefix, End: clientv3.GetPrefixRangeEnd(prefix), Delete: true}, true
}

func (s *opSource) count() int {
	n := len(s.head) + len(s.cs.Deleted) + len(s.cs.Created) + len(s.cs.Updated) + len(s.creds)
	for _, f := range s.cs.Deleted {
		if _, ok := deletedValues(f); ok {
			n++
		}
	}
	for _, r := range s.cs.DeletedRoles {
		if r.Kind == policy.KindUser || r.Kind == policy.KindHost {
			n++
		}
	}
	return n
}

// all yields every write; an encoding error stops it and is kept in err.
func (s *opSource) all(yield func(op) bool) {
	for _, o := range s.head {
		if !yield(o) {
			return
		}
	}
	for _, f := range s.cs.Deleted {
		if !yield(op{Key: FactKey(f), Delete: true}) {
			return
		}
		if o, ok := deletedValues(f); ok && !yield(o) {
			return
		}
	}
	for _, set := range [][]policy.Fact{s.cs.Created, s.cs.Updated} {
		for _, f := range set {
			v, err := policy.MarshalFact(f)
			if err != nil {
				s.err = err
				return
			}
			if !yield(op{Key: FactKey(f), Value: v}) {
				return
			}
		}
	}
	for _, r := range s.cs.DeletedRoles {
		if r.Kind == policy.KindUser || r.Kind == policy.KindHost {
			if !yield(op{Key: CredentialKey(r.String()), Delete: true}) {
				return
			}
		}
	}
	for _, cr := range s.creds {
		v, err := json.Marshal(cr)
		if err != nil {
			s.err = err
			return
		}
		if !yield(op{Key: CredentialKey(cr.RoleID), Value: v}) {
			return
		}
	}
}

func (p *Policies) commitDirect(ctx context.Context, snap PolicySnapshot, ops []op, cs *policy.ChangeSet) (int64, error) {
	then := make([]clientv3.Op, 0, len(ops)+1)
	for _, o := range ops {
		then = append(then, o.etcd())
	}
	then = append(then, clientv3.OpPut(guardKey, guard{}.encode()))
	resp, err := p.writer().Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(guardKey), "=", snap.guardRev)).Then(then...).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcdstore: store policy load: %w", err)
	}
	if !resp.Succeeded {
		return 0, ErrPolicyConflict
	}
	p.applyLocally(cs, resp.Header.Revision, false)
	return resp.Header.Revision, nil
}

// applyLocally applies a stored change set to the graph at once, unless the
// graph moved since it was planned: then a direct load is applied by the
// watch, and a large one by reading the graph again. The watch applies a
// direct load too, whichever comes first; it never applies this node's own
// large loads (large says so).
func (p *Policies) applyLocally(cs *policy.ChangeSet, rev int64, large bool) bool {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if !large && rev <= p.Revision() {
		return true // the watch was faster
	}
	if err := p.Graph().Apply(cs); err != nil {
		p.lg.Debug("policy load not applied in place", "reason", err)
		return false
	}
	p.setRevision(rev)
	return true
}

// commitLarge stores a load too large for one transaction: claim the guard
// (under a lease that says this writer is alive), write the operations in
// batches fenced on the claim, commit by clearing the guard. On failure the
// load is rolled back here; if this process dies, by the next Begin.
func (p *Policies) commitLarge(ctx context.Context, snap PolicySnapshot, all iter.Seq[op], cs *policy.ChangeSet) (int64, error) {
	idb := make([]byte, 8)
	if _, err := rand.Read(idb); err != nil {
		return 0, err
	}
	id := hex.EncodeToString(idb)
	lease, err := p.cli.Grant(ctx, intentTTL)
	if err != nil {
		return 0, fmt.Errorf("etcdstore: lease for a large policy load: %w", err)
	}
	kctx, stopKeepAlive := context.WithCancel(context.Background())
	defer stopKeepAlive()
	if err := p.keepAlive(kctx, lease.ID); err != nil {
		return 0, fmt.Errorf("etcdstore: keep a large policy load's lease: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = p.cli.Revoke(rctx, lease.ID)
	}()

	claim := guard{Intent: id, Base: snap.base}
	p.applyMu.Lock()
	p.ownIntent = id
	p.applyMu.Unlock()
	defer func() {
		p.applyMu.Lock()
		p.ownIntent = ""
		p.applyMu.Unlock()
	}()
	resp, err := p.writer().Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(guardKey), "=", snap.guardRev)).
		Then(clientv3.OpPut(guardKey, claim.encode()), clientv3.OpPut(ownerKey(id), "writer", clientv3.WithLease(lease.ID))).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcdstore: claim a large policy load: %w", err)
	}
	if !resp.Succeeded {
		return 0, ErrPolicyConflict
	}
	claimRev := resp.Header.Revision
	fail := func(err error) (int64, error) {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if rerr := p.rollback(rctx, claim, claimRev); rerr != nil {
			p.lg.Error("roll back a failed policy load (the next load retries)", "intent", id, "err", rerr)
		}
		return 0, err
	}

	fenced, err := p.batches(ctx, claimRev, all)
	if err != nil {
		return fail(err)
	}
	if fenced {
		return 0, ErrPolicyConflict // rolled back by another writer
	}
	resp, err = p.writer().Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(guardKey), "=", claimRev)).
		Then(clientv3.OpPut(guardKey, guard{}.encode()), clientv3.OpDelete(intentPrefix+id+"/", clientv3.WithPrefix())).Commit()
	if err != nil {
		return fail(fmt.Errorf("etcdstore: commit a large policy load: %w", err))
	}
	if !resp.Succeeded {
		return 0, ErrPolicyConflict
	}
	rev := resp.Header.Revision
	if !p.applyLocally(cs, rev, true) {
		if err := p.load(ctx); err != nil {
			return 0, err
		}
	}
	return rev, nil
}

// batches writes ops in transactions within etcd's limits, each fenced on
// the guard's revision. fenced reports that the guard moved (the load was
// rolled back by another writer).
func (p *Policies) batches(ctx context.Context, guardRev int64, all iter.Seq[op]) (fenced bool, err error) {
	same := clientv3.Compare(clientv3.ModRevision(guardKey), "=", guardRev)
	limitOps, limitBytes := min(p.c.MaxTxnOps, batchOps), min(p.c.MaxTxnBytes-txnMargin, batchBytes)
	// Batches touch disjoint keys, so their order does not matter: one
	// goroutine encodes the next batch while others wait for etcd.
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan []clientv3.Op, batchesInFlight)
	var fence atomic.Bool
	var sent atomic.Int64
	for range batchesInFlight {
		g.Go(func() error {
			for batch := range work {
				n := int(sent.Add(1))
				if p.hookBatch != nil {
					if err := p.hookBatch(n); err != nil {
						return err
					}
				}
				resp, err := p.writer().Txn(gctx).If(same).Then(batch...).Commit()
				if err != nil {
					return fmt.Errorf("etcdstore: store policy load (batch %d): %w", n, err)
				}
				if !resp.Succeeded {
					fence.Store(true)
					return errFenced
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(work)
		batch, size := make([]clientv3.Op, 0, limitOps), 0
		push := func() bool {
			select {
			case work <- batch:
				batch, size = make([]clientv3.Op, 0, limitOps), 0
				return true
			case <-gctx.Done():
				return false
			}
		}
		for o := range all {
			if len(batch) > 0 && (len(batch)+1 > limitOps || size+o.size() > limitBytes) && !push() {
				return nil
			}
			batch = append(batch, o.etcd())
			size += o.size()
		}
		if len(batch) > 0 {
			push()
		}
		return nil
	})
	err = g.Wait()
	if fence.Load() {
		return true, nil
	}
	return false, err
}

// rollback restores the state at g.Base after a large load that did not
// commit: fence the guard (no more of the load's batches land), restore
// facts and versions as they were, remove the credentials it created and
// restore those it deleted (leaving keys rotated meanwhile alone), clear
// the guard.
func (p *Policies) rollback(ctx context.Context, g guard, guardRev int64) error {
	lease, err := p.cli.Grant(ctx, intentTTL)
	if err != nil {
		return err
	}
	kctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := p.keepAlive(kctx, lease.ID); err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = p.cli.Revoke(rctx, lease.ID)
	}()
	claimed := g.Claimed
	if claimed == 0 {
		claimed = guardRev // the claim itself: batches never rewrite the guard
	}
	fence := guard{Intent: g.Intent, Base: g.Base, Aborting: true, Claimed: claimed}
	resp, err := p.writer().Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(guardKey), "=", guardRev)).
		Then(clientv3.OpPut(guardKey, fence.encode()), clientv3.OpPut(ownerKey(g.Intent), "rollback", clientv3.WithLease(lease.ID))).Commit()
	if err != nil {
		return fmt.Errorf("etcdstore: fence a policy load to roll it back: %w", err)
	}
	if !resp.Succeeded {
		return nil // someone else moved the guard; Begin looks again
	}
	fenceRev := resp.Header.Revision

	var all []op
	for _, prefix := range []string{factPrefix, versionPrefix, credentialPrefix, secretPrefix} {
		old := map[string][]byte{}
		at := g.Base
		if prefix == secretPrefix {
			at = claimed
		}
		if _, err := p.scan(ctx, prefix, at, false, func(kv *mvccpb.KeyValue) error {
			old[string(kv.Key)] = kv.Value
			return nil
		}); err != nil {
			return err
		}
		now := map[string]bool{}
		if _, err := p.scan(ctx, prefix, 0, true, func(kv *mvccpb.KeyValue) error {
			key := string(kv.Key)
			now[key] = true
			prev, existed := old[key]
			switch {
			case prefix == secretPrefix:
				// Values written meanwhile are the secrets API's, not the
				// load's: the load only deletes values, restored below.
			case !existed:
				all = append(all, op{Key: key, Delete: true})
			case prefix != credentialPrefix:
				all = append(all, op{Key: key, Value: prev})
			}
			return nil
		}); err != nil {
			return err
		}
		for key, v := range old {
			if !now[key] {
				all = append(all, op{Key: key, Value: v})
			}
		}
	}
	if fenced, err := p.batches(ctx, fenceRev, slices.Values(all)); err != nil || fenced {
		return err
	}
	_, err = p.writer().Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(guardKey), "=", fenceRev)).
		Then(clientv3.OpPut(guardKey, guard{}.encode()), clientv3.OpDelete(intentPrefix+g.Intent+"/", clientv3.WithPrefix())).Commit()
	if err != nil {
		return fmt.Errorf("etcdstore: finish rolling back a policy load: %w", err)
	}
	p.lg.Warn("rolled back a policy load that did not commit", "intent", g.Intent, "writes_undone", len(all))
	return nil
}

func ownerKey(id string) string { return intentPrefix + id + "/owner" }

// keepAlive keeps a lease alive until ctx ends.
func (p *Policies) keepAlive(ctx context.Context, id clientv3.LeaseID) error {
	ch, err := p.cli.KeepAlive(ctx, id)
	if err != nil {
		return err
	}
	go func() {
		for range ch {
		}
	}()
	return nil
}

// EnsureAccount creates the account's root policy and its admin user, who
// owns it, unless the root policy exists. The admin's credential is the
// bootstrap's; this writes the facts only.
func (p *Policies) EnsureAccount(ctx context.Context, account string) error {
	for range 4 {
		snap, err := p.Begin(ctx)
		if err != nil {
			return err
		}
		cs, err := p.Graph().PlanAccount(account)
		if errors.Is(err, policy.ErrAccountExists) {
			return nil
		}
		if err != nil {
			return err
		}
		_, _, err = p.Commit(ctx, snap, PolicyCommit{ChangeSet: cs})
		if errors.Is(err, ErrPolicyConflict) {
			continue
		}
		return err
	}
	return ErrPolicyConflict
}

// segmentEscaper is built once: building a Replacer costs more than using
// it, and every secret read escapes its variable's id.
var segmentEscaper = strings.NewReplacer("%", "%25", "/", "%2F")

// escapeSegment writes s as one key segment: '%' and '/' escaped.
func escapeSegment(s string) string {
	if !strings.ContainsAny(s, "%/") {
		return s
	}
	return segmentEscaper.Replace(s)
}
