package etcdstore

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sowerproject/sower/audit"
)

// AuthnAuditPrefix held the authentication records of earlier versions
// (/sower/audit/authn/<time>-<random>); authentications are now
// audit.Events of kind authn in the trail (AuditEventsPrefix). Records left
// there by an earlier version are not read, and not pruned.
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
	Logger     *slog.Logger
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// AuthnAudit writes authentications to the audit trail (audit.Events of
// kind authn) with bounded cost, so that a storm of failed logins cannot
// flood etcd nor the node's memory:
//
//   - Record never touches etcd; it adds the event to the pending window,
//     where identical events (same outcome, authenticator, identity,
//     source, reason and method) are one record with a count and the times
//     of the first and last.
//     The record's Count and Last say how many and until when.
//   - Every FlushInterval the window is appended to the trail, at most
//     MaxPerFlush records, and at most what the Rate/Burst bucket allows;
//     failures go first, then the largest counts. What does not fit is
//     folded into "summary" events (action "summary", one per outcome,
//     authenticator and reason, with a count and no identity), written as
//     soon as the bucket allows.
//   - A write that fails puts its counts back into the summary: nothing is
//     lost while etcd is away, and memory stays bounded (MaxPending
//     records, 256 summary keys).
//
// The trail's retention (AuditTrail.Prune) bounds what it keeps.
//
// A refused brute-force storm against one identity from one address is one
// record per second with its count; one from many addresses against many
// identities costs at most Rate records per second.
type AuthnAudit struct {
	trail audit.Trail
	c     AuditConfig
	boot  string
	seq   atomic.Uint64

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

// NewAuthnAudit returns the audit writer over trail; call Run to write.
func NewAuthnAudit(trail audit.Trail, c AuditConfig) *AuthnAudit {
	if c.Node == "" {
		c.Node = "unnamed"
	}
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &AuthnAudit{trail: trail, c: c, boot: strconv.FormatInt(c.Now().UnixNano(), 36), pending: map[auditKey]*auditEntry{}, summary: map[summaryKey]*summaryEntry{},
		tokens: float64(c.Burst), refilled: c.Now()}
}

// Limits on what one record holds: the fields are partly chosen by
// whoever calls (a login, a JWT's claims in a detail).
const (
	maxAuditField  = 256
	maxAuditDetail = 512
	maxSummaryKeys = 256
)

// cleanField makes a caller-chosen string storable in an audit.Event:
// valid UTF-8, no NUL or line break.
func cleanField(s string) string {
	s = strings.ToValidUTF8(s, "?")
	return strings.Map(func(r rune) rune {
		if r == 0 || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

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

// Flush writes what the window and the budget allow now, in one Append.
func (a *AuthnAudit) Flush(ctx context.Context) error {
	detailed, summary := a.take()
	if len(detailed) == 0 && summary == nil {
		return nil
	}
	events := make([]audit.Event, 0, len(detailed)+len(summary))
	for _, r := range detailed {
		reason := r.key.Reason
		if r.e.detail != "" {
			reason = clip(reason+": "+r.e.detail, audit.MaxFieldBytes-3)
		}
		e := a.event(r.e.first, r.e.last, r.e.count)
		e.Outcome, e.Authenticator, e.Identity, e.Source, e.Reason, e.Resource = r.key.Outcome, r.key.Authenticator, r.key.Identity, r.key.Source, reason, r.key.Method
		events = append(events, e)
	}
	// The summary is one event per (outcome, authenticator, reason), at
	// most maxSummaryKeys, without identities or sources: action
	// "summary".
	for k, s := range summary {
		e := a.event(s.first, s.last, s.count)
		e.Action = "summary"
		e.Outcome, e.Authenticator, e.Reason = k.Outcome, k.Authenticator, k.Reason
		events = append(events, e)
	}
	for i := range events {
		e := &events[i]
		for _, f := range []*string{&e.Authenticator, &e.Identity, &e.Source, &e.Reason, &e.Resource} {
			*f = cleanField(*f)
		}
	}
	slices.SortFunc(events, func(x, y audit.Event) int { return x.At.Compare(y.At) })
	// The in-process etcd client may apply a transaction whose context is
	// already cancelled and then report the cancellation; putting the
	// counts back after that would write them twice. A dead context
	// starts no write.
	if err := ctx.Err(); err != nil {
		a.putBack(detailed, summary)
		return err
	}
	if err := a.trail.Append(ctx, events); err != nil {
		a.putBack(detailed, summary)
		return err
	}
	return nil
}

// event is an authentication record of count events from first to last.
func (a *AuthnAudit) event(first, last time.Time, count int64) audit.Event {
	e := audit.Event{ID: a.c.Node + "/authn-" + a.boot + "-" + strconv.FormatUint(a.seq.Add(1), 10),
		At: first.UTC(), Node: a.c.Node, Kind: audit.KindAuthn, Action: "login"}
	if count > 1 {
		e.Count, e.Last = count, last.UTC()
	}
	return e
}

// Run flushes every FlushInterval and prunes every PruneInterval until ctx
// ends; then it writes what is pending, within a short deadline.
func (a *AuthnAudit) Run(ctx context.Context) error {
	flush := time.NewTicker(a.c.FlushInterval)
	defer flush.Stop()
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
		}
	}
}
