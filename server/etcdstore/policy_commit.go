package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/policy"
)

// guard is the value of the guard key.
type guard struct {
	// Pending names a committed intent whose operations are still being
	// copied; no load commits until it is done.
	Pending string `json:"pending,omitempty"`
}

// op is one stored operation. Values are JSON documents (facts, credentials,
// versions); a deleted fact is known by its key (factOfKey).
type op struct {
	Key    string          `json:"k"`
	Value  json.RawMessage `json:"v,omitempty"`
	Delete bool            `json:"d,omitempty"`
}

func (o op) size() int { return len(o.Key) + len(o.Value) + 16 }

func (o op) etcd() clientv3.Op {
	if o.Delete {
		return clientv3.OpDelete(o.Key)
	}
	return clientv3.OpPut(o.Key, string(o.Value))
}

// txnMargin is room left in a transaction for the guard and framing.
const txnMargin = 64 << 10

// PolicySnapshot is the state a load is planned against: Begin returns it,
// Commit refuses a change set if the policies changed since.
type PolicySnapshot struct{ guardRev int64 }

// Begin returns a snapshot for planning a load once the graph holds every
// load stored so far. It finishes a large load left half copied first.
func (p *Policies) Begin(ctx context.Context) (PolicySnapshot, error) {
	for range 8 {
		resp, err := p.cli.Get(ctx, guardKey)
		if err != nil {
			return PolicySnapshot{}, fmt.Errorf("etcdstore: read policy guard: %w", err)
		}
		var g guard
		var rev int64
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &g); err != nil {
				return PolicySnapshot{}, fmt.Errorf("%w: guard: %w", ErrCorruptPolicy, err)
			}
		}
		if g.Pending != "" {
			if err := p.finish(ctx, g.Pending, rev); err != nil {
				return PolicySnapshot{}, err
			}
			continue
		}
		if err := p.WaitFor(ctx, rev); err != nil {
			return PolicySnapshot{}, err
		}
		return PolicySnapshot{guardRev: rev}, nil
	}
	return PolicySnapshot{}, ErrPolicyConflict
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
}

// Commit stores a load in one transaction, or refuses it with
// ErrPolicyConflict if another load was stored since snap. The graph holds
// the load when Commit returns. It returns the numbered versions and the
// etcd revision of the load.
func (p *Policies) Commit(ctx context.Context, snap PolicySnapshot, c PolicyCommit) ([]PolicyVersion, int64, error) {
	b := newOpBuilder()
	cs := c.ChangeSet
	for _, f := range cs.Deleted {
		b.add(op{Key: FactKey(f), Delete: true})
	}
	for _, set := range [][]policy.Fact{cs.Created, cs.Updated} {
		for _, f := range set {
			v, err := policy.MarshalFact(f)
			if err != nil {
				return nil, 0, err
			}
			b.add(op{Key: FactKey(f), Value: v})
		}
	}
	for _, r := range cs.DeletedRoles {
		if r.Kind == policy.KindUser || r.Kind == policy.KindHost {
			b.add(op{Key: CredentialKey(r.String()), Delete: true})
		}
	}
	for _, cr := range c.Credentials {
		v, err := json.Marshal(cr)
		if err != nil {
			return nil, 0, err
		}
		b.add(op{Key: CredentialKey(cr.RoleID), Value: v})
	}
	versions := make([]PolicyVersion, len(c.Versions))
	var prunes []clientv3.Op
	for i, v := range c.Versions {
		head, err := p.headVersion(ctx, v.Policy)
		if err != nil {
			return nil, 0, err
		}
		v.Version = head + 1
		v.FinishedAt = time.Now().UTC()
		raw, err := encodeVersion(v)
		if err != nil {
			return nil, 0, err
		}
		b.add(op{Key: versionKey(v.Policy, v.Version), Value: raw})
		if oldest := v.Version - int64(p.c.VersionsKept); oldest > 0 {
			prunes = append(prunes, clientv3.OpDelete(versionKey(v.Policy, 0), clientv3.WithRange(versionKey(v.Policy, oldest+1))))
		}
		versions[i] = v
	}

	ops := b.ops
	if len(ops)+len(prunes)+1 <= p.c.MaxTxnOps && b.bytes+txnMargin <= p.c.MaxTxnBytes {
		rev, err := p.commitDirect(ctx, snap, ops, prunes)
		if err != nil {
			return nil, 0, err
		}
		p.applyLocally(ctx, cs, rev)
		return versions, rev, p.WaitFor(ctx, rev)
	}
	rev, err := p.commitIntent(ctx, snap, ops, prunes, cs)
	if err != nil {
		return nil, 0, err
	}
	return versions, rev, nil
}

func (p *Policies) commitDirect(ctx context.Context, snap PolicySnapshot, ops []op, prunes []clientv3.Op) (int64, error) {
	then := make([]clientv3.Op, 0, len(ops)+len(prunes)+1)
	for _, o := range ops {
		then = append(then, o.etcd())
	}
	then = append(then, prunes...)
	then = append(then, clientv3.OpPut(guardKey, "{}"))
	resp, err := p.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(guardKey), "=", snap.guardRev)).Then(then...).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcdstore: store policy load: %w", err)
	}
	if !resp.Succeeded {
		return 0, ErrPolicyConflict
	}
	return resp.Header.Revision, nil
}

// applyLocally applies a stored change set to the graph at once, unless the
// graph moved since it was planned; then the watch applies what was stored.
func (p *Policies) applyLocally(_ context.Context, cs *policy.ChangeSet, rev int64) {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if rev <= p.Revision() {
		return // the watch was faster
	}
	if err := p.Graph().Apply(cs); err != nil {
		p.lg.Debug("policy load applied through the watch", "reason", err)
		return
	}
	p.setRevision(rev)
}

// commitIntent stores a load too large for one transaction: chunks first,
// then the commit (the only step that decides), then the copy.
func (p *Policies) commitIntent(ctx context.Context, snap PolicySnapshot, ops []op, prunes []clientv3.Op, cs *policy.ChangeSet) (int64, error) {
	idb := make([]byte, 8)
	if _, err := rand.Read(idb); err != nil {
		return 0, err
	}
	id := hex.EncodeToString(idb)
	prefix := intentPrefix + id + "/"
	chunkLimit := p.c.MaxTxnBytes - txnMargin
	var (
		chunk  []op
		size   int
		chunks int
	)
	flush := func() error {
		raw, err := json.Marshal(chunk)
		if err != nil {
			return err
		}
		if _, err := p.cli.Put(ctx, chunkKey(prefix, chunks), string(raw)); err != nil {
			return fmt.Errorf("etcdstore: store policy load (part %d): %w", chunks+1, err)
		}
		chunks++
		chunk, size = chunk[:0], 0
		return nil
	}
	for _, o := range ops {
		if size+o.size() > chunkLimit && len(chunk) > 0 {
			if err := flush(); err != nil {
				p.discard(prefix)
				return 0, err
			}
		}
		chunk = append(chunk, o)
		size += o.size()
	}
	if err := flush(); err != nil {
		p.discard(prefix)
		return 0, err
	}
	record, _ := json.Marshal(map[string]int{"chunks": chunks})
	pending, _ := json.Marshal(guard{Pending: id})
	resp, err := p.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(guardKey), "=", snap.guardRev),
			// A cleanup that removed chunk 0 may have removed any chunk;
			// one that ran before chunk 0 was written removed none.
			clientv3.Compare(clientv3.CreateRevision(chunkKey(prefix, 0)), ">", 0)).
		Then(clientv3.OpPut(prefix+"commit", string(record)), clientv3.OpPut(guardKey, string(pending))).
		Commit()
	if err != nil || !resp.Succeeded {
		p.discard(prefix)
		if err != nil {
			return 0, fmt.Errorf("etcdstore: commit policy load: %w", err)
		}
		return 0, ErrPolicyConflict
	}
	rev := resp.Header.Revision
	p.applyLocally(ctx, cs, rev)
	if err := p.copyIntent(ctx, id, rev, ops, prunes); err != nil {
		// Committed: the next Begin or Open finishes the copy.
		return 0, err
	}
	return rev, p.WaitFor(ctx, rev)
}

// discard removes an uncommitted intent's chunks (best effort: Open
// removes what is left).
func (p *Policies) discard(prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = p.cli.Delete(ctx, prefix, clientv3.WithPrefix())
}

// copyIntent writes a committed intent's operations to their keys, batch
// by batch, then removes the intent and clears the guard. Every step
// compares the guard with the commit's revision, so a late copier never
// overwrites a later load.
func (p *Policies) copyIntent(ctx context.Context, id string, commitRev int64, ops []op, prunes []clientv3.Op) error {
	prefix := intentPrefix + id + "/"
	same := clientv3.Compare(clientv3.ModRevision(guardKey), "=", commitRev)
	limitOps, limitBytes := p.c.MaxTxnOps-1, p.c.MaxTxnBytes-txnMargin
	batch := make([]clientv3.Op, 0, min(len(ops), limitOps))
	size, n := 0, 0
	send := func() (bool, error) {
		n++
		batch = append(batch, clientv3.OpPut(prefix+"applied", fmt.Sprint(n)))
		resp, err := p.cli.Txn(ctx).If(same).Then(batch...).Commit()
		if err != nil {
			return false, fmt.Errorf("etcdstore: copy policy load (batch %d): %w", n, err)
		}
		batch, size = batch[:0], 0
		return resp.Succeeded, nil
	}
	all := make([]clientv3.Op, 0, len(ops)+len(prunes))
	sizes := make([]int, 0, len(ops)+len(prunes))
	for _, o := range ops {
		all = append(all, o.etcd())
		sizes = append(sizes, o.size())
	}
	for _, pr := range prunes {
		all = append(all, pr)
		sizes = append(sizes, 64)
	}
	for i, o := range all {
		if len(batch) > 0 && (len(batch)+1 > limitOps || size+sizes[i] > limitBytes) {
			ok, err := send()
			if err != nil {
				return err
			}
			if !ok {
				return nil // finished by another node
			}
		}
		batch = append(batch, o)
		size += sizes[i]
	}
	if len(batch) > 0 {
		if ok, err := send(); err != nil || !ok {
			return err
		}
	}
	_, err := p.cli.Txn(ctx).If(same).
		Then(clientv3.OpDelete(prefix, clientv3.WithPrefix()), clientv3.OpPut(guardKey, "{}")).Commit()
	if err != nil {
		return fmt.Errorf("etcdstore: finish policy load: %w", err)
	}
	return nil
}

// finish completes the copy of a committed intent found pending.
func (p *Policies) finish(ctx context.Context, id string, guardRev int64) error {
	ops, err := p.readIntent(ctx, id, 0)
	if err != nil {
		return err
	}
	p.lg.Warn("finishing a policy load another writer left half copied", "intent", id, "operations", len(ops))
	return p.copyIntent(ctx, id, guardRev, ops, nil)
}

// readIntent returns an intent's operations at revision rev (zero: now).
func (p *Policies) readIntent(ctx context.Context, id string, rev int64) ([]op, error) {
	var ops []op
	_, err := p.scan(ctx, intentPrefix+id+"/chunks/", rev, func(_, v []byte) error {
		var chunk []op
		if err := json.Unmarshal(v, &chunk); err != nil {
			return fmt.Errorf("%w: intent %s: %w", ErrCorruptPolicy, id, err)
		}
		ops = append(ops, chunk...)
		return nil
	})
	return ops, err
}

func (p *Policies) readGuard(ctx context.Context, rev int64) (guard, error) {
	resp, err := p.cli.Get(ctx, guardKey, clientv3.WithRev(rev))
	if err != nil {
		return guard{}, fmt.Errorf("etcdstore: read policy guard: %w", err)
	}
	var g guard
	if len(resp.Kvs) == 1 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &g); err != nil {
			return guard{}, fmt.Errorf("%w: guard: %w", ErrCorruptPolicy, err)
		}
	}
	return g, nil
}

// recover finishes a committed intent and removes uncommitted ones.
func (p *Policies) recover(ctx context.Context) error {
	for range 8 {
		resp, err := p.cli.Get(ctx, guardKey)
		if err != nil {
			return fmt.Errorf("etcdstore: read policy guard: %w", err)
		}
		var (
			g   guard
			rev int64
		)
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &g); err != nil {
				return fmt.Errorf("%w: guard: %w", ErrCorruptPolicy, err)
			}
		}
		if g.Pending != "" {
			if err := p.finish(ctx, g.Pending, rev); err != nil {
				return err
			}
			continue
		}
		del, err := p.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(guardKey), "=", rev)).
			Then(clientv3.OpDelete(intentPrefix, clientv3.WithPrefix())).Commit()
		if err != nil {
			return fmt.Errorf("etcdstore: remove unfinished policy loads: %w", err)
		}
		if !del.Succeeded {
			continue
		}
		if n := del.Responses[0].GetResponseDeleteRange().Deleted; n > 0 {
			p.lg.Warn("removed the parts of policy loads that never committed", "keys", n)
		}
		return nil
	}
	return ErrPolicyConflict
}

func chunkKey(prefix string, n int) string { return fmt.Sprintf("%schunks/%08d", prefix, n) }

// opBuilder collects operations, one per key (a later one replaces an
// earlier one: etcd refuses two operations on a key in one transaction).
type opBuilder struct {
	ops   []op
	index map[string]int
	bytes int
}

func newOpBuilder() *opBuilder { return &opBuilder{index: map[string]int{}} }

func (b *opBuilder) add(o op) {
	if i, ok := b.index[o.Key]; ok {
		b.bytes += o.size() - b.ops[i].size()
		b.ops[i] = o
		return
	}
	b.index[o.Key] = len(b.ops)
	b.ops = append(b.ops, o)
	b.bytes += o.size()
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

// escapeSegment writes s as one key segment: '%' and '/' escaped.
func escapeSegment(s string) string {
	if !strings.ContainsAny(s, "%/") {
		return s
	}
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(s)
}
