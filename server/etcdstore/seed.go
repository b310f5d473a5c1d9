package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/seed"
)

// Key layout of seed issuance.
const (
	seedPrefix = "/sower/seeds/"
	// EnrollPrefix holds Standby enrollment tokens by the hex SHA-256 of
	// the token; enrollment deletes the record in the transaction that uses it.
	EnrollPrefix = "/sower/enroll/"
	// AuditPrefix holds the audit trail, one record per event, keyed by time.
	AuditPrefix = "/sower/audit/"
	// RevokedPrefix holds one key per revoked certificate serial (hex).
	RevokedPrefix = "/sower/pki/revoked/"
)

// Seeds is seed.Store over etcd. Each seed issued, refused or revoked is
// also an audit.Event of kind seed, in the transaction of the fact.
type Seeds struct {
	cli  *clientv3.Client
	node string
	ids  func() string

	// The group commit of seed records (Put): records that arrive while
	// a transaction is in flight wait in queue and go together in the
	// next one, so a storm of seeds costs one raft entry and one WAL
	// fsync per batch instead of per seed. Each Put still returns only
	// once its own record is committed.
	mu         sync.Mutex
	queue      []*pendingSeed
	committing bool
}

// SeedsOption configures NewSeeds.
type SeedsOption func(*Seeds)

// AuditIDs names this node in the seed audit events and gives their IDs
// (audit.Queue.NextID); without it events are of node "unnamed" with
// random IDs.
func AuditIDs(node string, next func() string) SeedsOption {
	return func(s *Seeds) { s.node, s.ids = node, next }
}

// MaxSeedBatch is how many seed records one group-commit transaction holds
// at most (three operations each, far below etcd's --max-txn-ops).
const MaxSeedBatch = 64

// seedCommitTimeout bounds one group-commit transaction: the records of
// several callers ride in it, so no one caller's context may cut it.
const seedCommitTimeout = 30 * time.Second

type pendingSeed struct {
	id   string
	ops  []clientv3.Op
	done chan error
}

// NewSeeds returns the seed store.
func NewSeeds(cli *clientv3.Client, opts ...SeedsOption) *Seeds {
	s := &Seeds{cli: cli, node: "unnamed"}
	for _, o := range opts {
		o(s)
	}
	if s.ids == nil {
		node := s.node
		s.ids = func() string {
			var rnd [8]byte
			_, _ = rand.Read(rnd[:])
			return node + "/" + hex.EncodeToString(rnd[:])
		}
	}
	return s
}

// seedEvent is the audit event of a seed fact; its put goes in the fact's
// transaction.
func (s *Seeds) seedEvent(at time.Time, action, outcome, identity, resource, source, reason string) (clientv3.Op, error) {
	e := audit.Event{ID: s.ids(), At: at.UTC(), Node: s.node, Kind: audit.KindSeed, Action: action, Outcome: outcome,
		Identity: cleanField(clip(identity, maxAuditField)), Resource: cleanField(clip(resource, maxAuditField)),
		Source: cleanField(clip(source, maxAuditField)), Reason: cleanField(clip(reason, audit.MaxFieldBytes-3))}
	op, err := EventOp(e)
	if err != nil {
		return op, fmt.Errorf("etcdstore: seed audit event: %w", err)
	}
	return op, nil
}

// Put records an issued seed and its enrollment token in one transaction,
// shared with the seeds being recorded at the same moment (group commit).
// It returns when the record is committed (durable in etcd), or with the
// error that kept it out.
func (s *Seeds) Put(ctx context.Context, r seed.Record, e *seed.Enrollment) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ev, err := s.seedEvent(r.IssuedAt, "issue", audit.OutcomeSuccess, r.Requester, r.ID, r.From, "")
	if err != nil {
		return err
	}
	p := &pendingSeed{id: r.ID, done: make(chan error, 1),
		ops: []clientv3.Op{clientv3.OpPut(seedPrefix+r.ID, string(raw)), ev}}
	if e != nil {
		er, err := json.Marshal(e)
		if err != nil {
			return err
		}
		p.ops = append(p.ops, clientv3.OpPut(EnrollPrefix+e.TokenHash, string(er)))
	}
	s.mu.Lock()
	s.queue = append(s.queue, p)
	if !s.committing {
		s.committing = true
		go s.commitQueued()
	}
	s.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The record may still commit with its batch, as it may after a
		// timed-out etcd call: the seed is never handed out, and its
		// record shows an issue nobody received.
		return fmt.Errorf("etcdstore: record seed %s: %w", r.ID, ctx.Err())
	}
}

// commitQueued commits the queue in batches until it is empty, then ends:
// no goroutine outlives a quiet store.
func (s *Seeds) commitQueued() {
	for {
		s.mu.Lock()
		n := min(len(s.queue), MaxSeedBatch)
		if n == 0 {
			s.committing = false
			s.queue = nil
			s.mu.Unlock()
			return
		}
		batch := s.queue[:n:n]
		s.queue = s.queue[n:]
		s.mu.Unlock()
		s.commit(batch)
	}
}

// commit writes a batch in one transaction. An error (etcd, or this node
// no longer the Leader: the fence) is every record's answer. When only a
// compare fails (a seed id already taken, which 96 random bits make a near
// impossibility) each record is retried on its own, so that each caller
// gets its own answer.
func (s *Seeds) commit(batch []*pendingSeed) {
	ctx, cancel := context.WithTimeout(context.Background(), seedCommitTimeout)
	defer cancel()
	if len(batch) > 1 {
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, p := range batch {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(seedPrefix+p.id), "=", 0))
			ops = append(ops, p.ops...)
		}
		txn, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil || txn.Succeeded {
			if err != nil {
				err = fmt.Errorf("etcdstore: record seed: %w", err)
			}
			for _, p := range batch {
				p.done <- err
			}
			return
		}
	}
	for _, p := range batch {
		txn, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(seedPrefix+p.id), "=", 0)).Then(p.ops...).Commit()
		switch {
		case err != nil:
			p.done <- fmt.Errorf("etcdstore: record seed: %w", err)
		case !txn.Succeeded:
			p.done <- fmt.Errorf("etcdstore: seed id %s already exists", p.id)
		default:
			p.done <- nil
		}
	}
}

// Audit records a refused request.
func (s *Seeds) Audit(ctx context.Context, e seed.Event) error {
	ev, err := s.seedEvent(e.At, "refuse", audit.OutcomeFailure, e.Requester, "", e.From, string(e.Kind)+" seed: "+e.Reason)
	if err != nil {
		return err
	}
	_, err = s.cli.Txn(ctx).Then(ev).Commit()
	return err
}

// auditOp is one audit record: /sower/audit/<RFC3339Nano>-<random> with the
// event type and body.
func auditOp(at time.Time, typ string, body any) clientv3.Op {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	raw, _ := json.Marshal(map[string]any{"type": typ, "at": at.UTC(), "event": body})
	return clientv3.OpPut(AuditPrefix+at.UTC().Format("20060102T150405.000000000Z")+"-"+hex.EncodeToString(rnd[:]), string(raw))
}

// AuditOp lets other stores (cluster membership) append to the same trail
// inside their own transactions.
func AuditOp(at time.Time, typ string, body any) clientv3.Op { return auditOp(at, typ, body) }

// List returns every seed record, in id order.
func (s *Seeds) List(ctx context.Context) ([]seed.Record, error) {
	resp, err := s.cli.Get(ctx, seedPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdstore: list seeds: %w", err)
	}
	out := make([]seed.Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r seed.Record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("etcdstore: seed record %s is corrupt: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Revoke marks the seed revoked, revokes its certificates and deletes its
// enrollment token, in one transaction.
func (s *Seeds) Revoke(ctx context.Context, id, by string, at time.Time) (seed.Record, error) {
	resp, err := s.cli.Get(ctx, seedPrefix+id)
	if err != nil {
		return seed.Record{}, fmt.Errorf("etcdstore: read seed: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return seed.Record{}, fmt.Errorf("%w: %s", seed.ErrNotFound, id)
	}
	var r seed.Record
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return seed.Record{}, err
	}
	if !r.RevokedAt.IsZero() {
		return r, nil
	}
	r.RevokedAt, r.RevokedBy = at, by
	raw, _ := json.Marshal(r)
	ev, err := s.seedEvent(at, "revoke", audit.OutcomeSuccess, by, id, "", "")
	if err != nil {
		return seed.Record{}, err
	}
	ops := []clientv3.Op{clientv3.OpPut(seedPrefix+id, string(raw)), ev}
	ops = append(ops, revocationOps(r.Serials, by, "seed "+id+" revoked", at)...)
	enr, err := s.cli.Get(ctx, EnrollPrefix, clientv3.WithPrefix())
	if err != nil {
		return seed.Record{}, err
	}
	for _, kv := range enr.Kvs {
		var e seed.Enrollment
		if json.Unmarshal(kv.Value, &e) == nil && e.SeedID == id {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}
	txn, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(seedPrefix+id), "=", resp.Kvs[0].ModRevision)).Then(ops...).Commit()
	if err != nil {
		return seed.Record{}, fmt.Errorf("etcdstore: revoke seed: %w", err)
	}
	if !txn.Succeeded {
		return seed.Record{}, fmt.Errorf("etcdstore: seed %s changed while revoking; try again", id)
	}
	return r, nil
}

var _ seed.Store = (*Seeds)(nil)
