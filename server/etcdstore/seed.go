package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
}

// SeedsOption configures NewSeeds.
type SeedsOption func(*Seeds)

// AuditIDs names this node in the seed audit events and gives their IDs
// (audit.Queue.NextID); without it events are of node "unnamed" with
// random IDs.
func AuditIDs(node string, next func() string) SeedsOption {
	return func(s *Seeds) { s.node, s.ids = node, next }
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

// Put records an issued seed and its enrollment token in one transaction.
func (s *Seeds) Put(ctx context.Context, r seed.Record, e *seed.Enrollment) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ev, err := s.seedEvent(r.IssuedAt, "issue", audit.OutcomeSuccess, r.Requester, r.ID, r.From, "")
	if err != nil {
		return err
	}
	ops := []clientv3.Op{clientv3.OpPut(seedPrefix+r.ID, string(raw)), ev}
	if e != nil {
		er, err := json.Marshal(e)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(EnrollPrefix+e.TokenHash, string(er)))
	}
	txn, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(seedPrefix+r.ID), "=", 0)).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("etcdstore: record seed: %w", err)
	}
	if !txn.Succeeded {
		return fmt.Errorf("etcdstore: seed id %s already exists", r.ID)
	}
	return nil
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
