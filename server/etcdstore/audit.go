package etcdstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/cluster"
)

// AuthnAuditPrefix holds the authentication audit trail:
//
//	/sower/audit/authn/<first event, 20060102T150405.000000000Z>-<random>
//
// It is a prefix of its own under AuditPrefix (the other audit records are
// keyed by time directly under it, which sorts before "authn/"), so that
// pruning it touches nothing else.
const AuthnAuditPrefix = AuditPrefix + "authn/"

// Outcomes of an authentication.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// AuthnEvent is one authentication, successful or refused. It never holds
// the credential.
type AuthnEvent struct {
	// At is when it happened; zero means now.
	At time.Time
	// Outcome is OutcomeSuccess or OutcomeFailure.
	Outcome string
	// Authenticator is how: "authn" (API key or password), "authn-jwt/<id>",
	// "authn-k8s/<id>", or "access-token" (a token refused by the gRPC
	// interceptor).
	Authenticator string
	// Identity is who: the role or login the caller claimed or was
	// authenticated as ("acme:host:app"); empty when the credential named
	// nobody (a JWT that did not verify).
	Identity string
	// Source is from where: the client's address.
	Source string
	// Reason and Detail say why a failure failed (authn.ReasonOf).
	Reason string
	Detail string
	// Method is the gRPC method an access token was refused for.
	Method string
}

// AuditConfig bounds what the authentication audit trail costs. The zero
// value takes the defaults.
type AuditConfig struct {
	// Node names this node in every record.
	Node string
	// FlushInterval is how often pending records are written, all in one
	// transaction (default 1s).
	FlushInterval time.Duration
	// Rate and Burst bound the records written: a token bucket of Burst
	// records (default 2000) refilled at Rate per second (default 20).
	// Events beyond it are counted in summary records, never dropped
	// silently.
	Rate  float64
	Burst int
	// MaxPerFlush bounds one transaction (default 100, under etcd's 128
	// operations).
	MaxPerFlush int
	// MaxPending bounds the distinct events held in memory between two
	// flushes (default 10000); more are counted in the summary.
	MaxPending int
	// MaxRecords bounds the trail: every PruneInterval (default 1m) the
	// oldest records beyond MaxRecords (default 100000, about 50 MB) are
	// deleted.
	MaxRecords    int
	PruneInterval time.Duration
	Logger        *slog.Logger
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// AuthnAudit writes the authentication audit trail to etcd with bounded
// cost, so that a storm of failed logins cannot flood etcd:
//
//   - Record never touches etcd; it adds the event to the pending window,
//     where identical events (same outcome, authenticator, identity,
//     source, reason and method) are one record with a count and the times
//     of the first and last.
//   - Every FlushInterval the window is written in one transaction, at most
//     MaxPerFlush records, and at most what the Rate/Burst bucket allows;
//     failures go first, then the largest counts. What does not fit is
//     folded into one "authn-summary" record (counts per outcome,
//     authenticator and reason) written as soon as the bucket allows.
//   - The trail keeps at most MaxRecords records; older ones are pruned.
//
// A refused brute-force storm against one identity from one address is one
// record per second with its count; one from many addresses against many
// identities costs at most Rate records per second.
type AuthnAudit struct {
	cli *clientv3.Client
	c   AuditConfig
	// pruner, when set (FencePrune), is the client the prune deletes
	// through.
	pruner atomic.Pointer[clientv3.Client]

	mu       sync.Mutex
	pending  map[auditKey]*auditEntry
	summary  map[summaryKey]*summaryEntry
	tokens   float64
	refilled time.Time
}

type auditKey struct {
	Outcome, Authenticator, Identity, Source, Reason, Method string
}

type auditEntry struct {
	first, last time.Time
	count       int64
	detail      string
}

type summaryKey struct{ Outcome, Authenticator, Reason string }

type summaryEntry struct {
	first, last time.Time
	count       int64
}

// NewAuthnAudit returns the audit writer; call Run to write.
func NewAuthnAudit(cli *clientv3.Client, c AuditConfig) *AuthnAudit {
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Burst <= 0 {
		c.Burst = 2000
	}
	if c.MaxPerFlush <= 0 {
		c.MaxPerFlush = 100
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = 100000
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &AuthnAudit{cli: cli, c: c, pending: map[auditKey]*auditEntry{}, summary: map[summaryKey]*summaryEntry{},
		tokens: float64(c.Burst), refilled: c.Now()}
}

// Limits on what one record holds: the fields are partly chosen by
// whoever calls (a login, a JWT's claims in a detail).
const (
	maxAuditField  = 256
	maxAuditDetail = 512
	maxSummaryKeys = 256
)

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Record adds an event to the pending window. It never blocks on etcd.
func (a *AuthnAudit) Record(e AuthnEvent) {
	if e.At.IsZero() {
		e.At = a.c.Now()
	}
	k := auditKey{
		Outcome: clip(e.Outcome, maxAuditField), Authenticator: clip(e.Authenticator, maxAuditField),
		Identity: clip(e.Identity, maxAuditField), Source: clip(e.Source, maxAuditField),
		Reason: clip(e.Reason, maxAuditField), Method: clip(e.Method, maxAuditField),
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.pending[k]; ok {
		p.count++
		p.last = e.At
		return
	}
	if len(a.pending) >= a.c.MaxPending {
		a.fold(k, &auditEntry{first: e.At, last: e.At, count: 1})
		return
	}
	a.pending[k] = &auditEntry{first: e.At, last: e.At, count: 1, detail: clip(e.Detail, maxAuditDetail)}
}

// fold counts an entry in the summary; a.mu is held.
func (a *AuthnAudit) fold(k auditKey, e *auditEntry) {
	sk := summaryKey{Outcome: k.Outcome, Authenticator: k.Authenticator, Reason: k.Reason}
	s, ok := a.summary[sk]
	if !ok && len(a.summary) >= maxSummaryKeys {
		// Authenticator names come from URLs: an attacker spraying
		// service ids must not grow the summary either.
		sk.Authenticator = "other"
		s, ok = a.summary[sk]
	}
	if !ok {
		a.summary[sk] = &summaryEntry{first: e.first, last: e.last, count: e.count}
		return
	}
	s.count += e.count
	if e.first.Before(s.first) {
		s.first = e.first
	}
	if e.last.After(s.last) {
		s.last = e.last
	}
}

type auditRecord struct {
	key auditKey
	e   *auditEntry
}

// take empties the window and returns the records to write now, within the
// budget; the rest is folded into the summary, which is returned when the
// budget allows a record for it.
func (a *AuthnAudit) take() (detailed []auditRecord, summary map[summaryKey]*summaryEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.c.Now()
	if d := now.Sub(a.refilled); d > 0 {
		a.tokens = min(float64(a.c.Burst), a.tokens+d.Seconds()*a.c.Rate)
		a.refilled = now
	}
	budget := min(int(a.tokens), a.c.MaxPerFlush)
	all := make([]auditRecord, 0, len(a.pending))
	for k, e := range a.pending {
		all = append(all, auditRecord{k, e})
	}
	a.pending = map[auditKey]*auditEntry{}
	// Failures first, then by count, then oldest first: under pressure the
	// trail keeps what an investigator needs most.
	slices.SortFunc(all, func(x, y auditRecord) int {
		return cmp.Or(
			cmp.Compare(boolRank(x.key.Outcome != OutcomeFailure), boolRank(y.key.Outcome != OutcomeFailure)),
			cmp.Compare(y.e.count, x.e.count),
			x.e.first.Compare(y.e.first))
	})
	n := len(all)
	overflow := n > budget || len(a.summary) > 0
	if overflow {
		// Keep one record of the budget for the summary.
		n = max(0, min(n, budget-1))
	}
	detailed = all[:n]
	for _, r := range all[n:] {
		a.fold(r.key, r.e)
	}
	used := len(detailed)
	if len(a.summary) > 0 && budget > len(detailed) {
		summary = a.summary
		a.summary = map[summaryKey]*summaryEntry{}
		used++
	}
	a.tokens -= float64(used)
	return detailed, summary
}

// putBack returns records that could not be written to the summary, so
// that their counts survive an etcd outage.
func (a *AuthnAudit) putBack(detailed []auditRecord, summary map[summaryKey]*summaryEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range detailed {
		a.fold(r.key, r.e)
	}
	for k, s := range summary {
		a.fold(auditKey{Outcome: k.Outcome, Authenticator: k.Authenticator, Reason: k.Reason}, &auditEntry{first: s.first, last: s.last, count: s.count})
	}
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Flush writes what the window and the budget allow now, in one
// transaction.
func (a *AuthnAudit) Flush(ctx context.Context) error {
	detailed, summary := a.take()
	if len(detailed) == 0 && summary == nil {
		return nil
	}
	ops := make([]clientv3.Op, 0, len(detailed)+1)
	for _, r := range detailed {
		typ := "authn-" + r.key.Outcome
		ops = append(ops, a.op(r.e.first, typ, map[string]any{
			"outcome": r.key.Outcome, "authenticator": r.key.Authenticator, "identity": r.key.Identity,
			"source": r.key.Source, "reason": r.key.Reason, "detail": r.e.detail, "method": r.key.Method,
			"count": r.e.count, "first": r.e.first.UTC(), "last": r.e.last.UTC(), "node": a.c.Node,
		}))
	}
	if summary != nil {
		var first, last time.Time
		counts := make([]map[string]any, 0, len(summary))
		for k, s := range summary {
			if first.IsZero() || s.first.Before(first) {
				first = s.first
			}
			if s.last.After(last) {
				last = s.last
			}
			counts = append(counts, map[string]any{"outcome": k.Outcome, "authenticator": k.Authenticator, "reason": k.Reason, "count": s.count})
		}
		slices.SortFunc(counts, func(x, y map[string]any) int { return cmp.Compare(y["count"].(int64), x["count"].(int64)) })
		ops = append(ops, a.op(first, "authn-summary", map[string]any{
			"note":  "more authentication events than the audit budget allows; counted here without identities",
			"first": first.UTC(), "last": last.UTC(), "counts": counts, "node": a.c.Node,
		}))
	}
	// The in-process etcd client may apply a transaction whose context is
	// already cancelled and then report the cancellation; putting the
	// counts back after that would write them twice. A dead context
	// starts no write.
	if err := ctx.Err(); err != nil {
		a.putBack(detailed, summary)
		return err
	}
	if _, err := a.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		a.putBack(detailed, summary)
		return err
	}
	return nil
}

func (a *AuthnAudit) op(at time.Time, typ string, body map[string]any) clientv3.Op {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	raw, _ := json.Marshal(map[string]any{"type": typ, "at": at.UTC(), "event": body})
	return clientv3.OpPut(AuthnAuditPrefix+at.UTC().Format("20060102T150405.000000000Z")+"-"+hex.EncodeToString(rnd[:]), string(raw))
}

// FencePrune makes the Leader alone prune the trail, in its term: the
// prune's delete goes through w (the election's FencedClient) from now on,
// and on another node it deletes nothing and reports nothing. The records
// themselves are not fenced: every node, Standbys included, records the
// authentications it answered, each under a key of its own (time and
// random), so a record of a node that is not the Leader, or no longer is,
// is a fact to keep and replaces nothing.
func (a *AuthnAudit) FencePrune(w *clientv3.Client) { a.pruner.Store(w) }

// Prune deletes the oldest records beyond MaxRecords. With FencePrune, on a
// node that is not the Leader it deletes nothing and returns 0, nil.
func (a *AuthnAudit) Prune(ctx context.Context) (int, error) {
	resp, err := a.cli.Get(ctx, AuthnAuditPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	excess := resp.Count - int64(a.c.MaxRecords)
	if excess <= 0 {
		return 0, nil
	}
	old, err := a.cli.Get(ctx, AuthnAuditPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(excess), clientv3.WithRev(resp.Header.Revision))
	if err != nil || len(old.Kvs) == 0 {
		return 0, err
	}
	end := string(old.Kvs[len(old.Kvs)-1].Key) + "\x00"
	del, err := orPlain(a.pruner.Load(), a.cli).Delete(ctx, AuthnAuditPrefix, clientv3.WithRange(end))
	if errors.Is(err, cluster.ErrNotLeader) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return int(del.Deleted), nil
}

// Run flushes every FlushInterval and prunes every PruneInterval until ctx
// ends; then it writes what is pending, within a short deadline.
func (a *AuthnAudit) Run(ctx context.Context) error {
	flush := time.NewTicker(a.c.FlushInterval)
	defer flush.Stop()
	prune := time.NewTicker(a.c.PruneInterval)
	defer prune.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := a.Flush(fctx); err != nil {
				a.c.Logger.Warn("could not write the last authentication audit records", "err", err)
			}
			return nil
		case <-flush.C:
			err := a.Flush(ctx)
			if err != nil && !failing && ctx.Err() == nil {
				a.c.Logger.Warn("cannot write the authentication audit trail; its counts are kept and retried", "err", err)
			}
			failing = err != nil
		case <-prune.C:
			if n, err := a.Prune(ctx); err != nil && ctx.Err() == nil {
				a.c.Logger.Warn("cannot prune the authentication audit trail", "err", err)
			} else if n > 0 {
				a.c.Logger.Info("pruned the authentication audit trail", "deleted", n, "kept", a.c.MaxRecords)
			}
		}
	}
}
