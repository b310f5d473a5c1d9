package etcdstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/cluster"
)

// AuditEventsPrefix holds the audit trail of every node, one audit.Event
// (JSON) per key:
//
//	/sower/audit/events/<audit.Event.Key()>
//
// The key starts with the event's time, so a range read in key order is in
// time order. It is never replicated to Followers (replica.Replicated does
// not list /sower/audit/).
const AuditEventsPrefix = AuditPrefix + "events/"

// Limits of the trail.
const (
	// TrailMaxBatch bounds the events one Append stores in one etcd
	// transaction: a put and a compare each, under etcd's default of 128
	// operations per transaction.
	TrailMaxBatch = 100
	// TrailMaxPage bounds the events one List returns.
	TrailMaxPage = 1000
	// trailScanBudget bounds the keys one List reads to find a page of
	// events matching its filters; beyond it the page is short and its
	// token continues the scan.
	trailScanBudget = 20000
	// Default retention.
	DefaultAuditMaxAge    = 30 * 24 * time.Hour
	DefaultAuditMaxEvents = 1_000_000
)

// ErrBadPageToken is returned for a page token List did not make.
var ErrBadPageToken = errors.New("etcdstore: bad audit page token")

// TrailConfig bounds the trail. The zero value takes the defaults.
type TrailConfig struct {
	// MaxAge and MaxEvents are the retention (defaults
	// DefaultAuditMaxAge, DefaultAuditMaxEvents): Prune deletes events
	// older than MaxAge and the oldest beyond MaxEvents.
	MaxAge    time.Duration
	MaxEvents int64
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// AuditTrail is audit.Trail over etcd, with the query, follow and
// retention the Leader serves.
type AuditTrail struct {
	cli    *clientv3.Client
	c      TrailConfig
	pruner atomic.Pointer[clientv3.Client]
}

var _ audit.Trail = (*AuditTrail)(nil)

// NewAuditTrail returns the trail over cli.
func NewAuditTrail(cli *clientv3.Client, c TrailConfig) *AuditTrail {
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultAuditMaxAge
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = DefaultAuditMaxEvents
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &AuditTrail{cli: cli, c: c}
}

// Config returns the trail's retention, defaults applied.
func (t *AuditTrail) Config() TrailConfig { return t.c }

// EventKey is an event's etcd key.
func EventKey(e audit.Event) string { return AuditEventsPrefix + e.Key() }

// EventOp is the put of one event, for a store that records an event in
// the same transaction as the fact it is about (a seed issued, a member
// added). The event is validated; the caller's transaction should compare
// nothing on its key: its ID is unique to the call.
func EventOp(e audit.Event) (clientv3.Op, error) {
	raw, err := encodeEvent(e)
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpPut(EventKey(e), string(raw)), nil
}

func encodeEvent(e audit.Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	e.At = e.At.UTC()
	if !e.Last.IsZero() {
		e.Last = e.Last.UTC()
	}
	// Byte for byte what json.Marshal writes (audit's tests hold it to
	// that), without its reflection: a Leader stores every Follower's
	// audited reads, thousands a second.
	raw, err := e.AppendJSON(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", audit.ErrInvalid, err)
	}
	if len(raw) > audit.MaxEventBytes {
		return nil, fmt.Errorf("%w: event %s is %d bytes encoded (limit %d)", audit.ErrInvalid, e.ID, len(raw), audit.MaxEventBytes)
	}
	return raw, nil
}

// Append stores each event once: one whose key is already stored is
// skipped. Every event is validated first; one bad event refuses the whole
// call (nothing is stored) with an error naming it, so a sender learns of
// it rather than losing it silently. When Append returns nil every event is
// committed to the quorum.
func (t *AuditTrail) Append(ctx context.Context, events []audit.Event) error {
	type kv struct{ key, val string }
	all := make([]kv, 0, len(events))
	seen := make(map[string]bool, len(events))
	for i, e := range events {
		raw, err := encodeEvent(e)
		if err != nil {
			return fmt.Errorf("etcdstore: audit event %d of %d (%q): %w", i+1, len(events), e.ID, err)
		}
		k := EventKey(e)
		if seen[k] {
			continue
		}
		seen[k] = true
		all = append(all, kv{k, string(raw)})
	}
	for len(all) > 0 {
		n := min(len(all), TrailMaxBatch)
		batch := all[:n]
		all = all[n:]
		// One transaction for the batch when none is stored yet (the usual
		// case); when some are, the failed transaction's Else says which,
		// and the rest is tried again. Each round drops at least one key.
		for len(batch) > 0 {
			cmps := make([]clientv3.Cmp, len(batch))
			puts := make([]clientv3.Op, len(batch))
			gets := make([]clientv3.Op, len(batch))
			for i, x := range batch {
				cmps[i] = clientv3.Compare(clientv3.CreateRevision(x.key), "=", 0)
				puts[i] = clientv3.OpPut(x.key, x.val)
				gets[i] = clientv3.OpGet(x.key, clientv3.WithCountOnly())
			}
			resp, err := t.cli.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
			if err != nil {
				return fmt.Errorf("etcdstore: append audit events: %w", err)
			}
			if resp.Succeeded {
				break
			}
			rest := batch[:0:0]
			for i, r := range resp.Responses {
				if r.GetResponseRange().GetCount() == 0 {
					rest = append(rest, batch[i])
				}
			}
			batch = rest
		}
	}
	return nil
}

// Query selects events. Empty fields match everything.
type Query struct {
	Kind     audit.Kind
	Action   string
	Identity string
	Resource string
	Node     string
	Outcome  string
	// Since and Until bound the event's time: Since <= At < Until.
	Since, Until time.Time
	// Limit bounds the page (default 100, at most TrailMaxPage).
	Limit int
	// PageToken continues a previous List.
	PageToken string
}

// Match reports whether e is selected by q's filters (not its page).
func (q Query) Match(e audit.Event) bool {
	return (q.Kind == "" || e.Kind == q.Kind) && (q.Action == "" || e.Action == q.Action) &&
		(q.Identity == "" || e.Identity == q.Identity) && (q.Resource == "" || e.Resource == q.Resource) &&
		(q.Node == "" || e.Node == q.Node) && (q.Outcome == "" || e.Outcome == q.Outcome) &&
		(q.Since.IsZero() || !e.At.Before(q.Since)) && (q.Until.IsZero() || e.At.Before(q.Until))
}

func timeKey(t time.Time) string {
	return AuditEventsPrefix + t.UTC().Format("20060102T150405.000000000Z")
}

// List returns the events q selects, newest first, and a token for the
// next page ("" when there is none). A page may be short (even empty) with
// a token when the filters are selective: List reads at most a bounded
// number of keys per call.
func (t *AuditTrail) List(ctx context.Context, q Query) ([]audit.Event, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, TrailMaxPage)
	start := AuditEventsPrefix
	if !q.Since.IsZero() {
		start = timeKey(q.Since)
	}
	end := clientv3.GetPrefixRangeEnd(AuditEventsPrefix)
	if !q.Until.IsZero() {
		end = timeKey(q.Until)
	}
	if q.PageToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.PageToken)
		k := string(raw)
		if err != nil || !strings.HasPrefix(k, AuditEventsPrefix) {
			return nil, "", fmt.Errorf("%w: pass the next_page_token of the previous answer unchanged", ErrBadPageToken)
		}
		if k < end {
			end = k
		}
	}
	var out []audit.Event
	var rev int64
	scanned := 0
	for start < end {
		chunk := min(500, trailScanBudget-scanned)
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(chunk))}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := t.cli.Get(ctx, start, opts...)
		if err != nil {
			return nil, "", fmt.Errorf("etcdstore: list audit events: %w", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			scanned++
			end = string(kv.Key)
			var e audit.Event
			if err := json.Unmarshal(kv.Value, &e); err != nil {
				continue // not written by Append; never served
			}
			if q.Match(e) {
				out = append(out, e)
				if len(out) == limit {
					return out, pageToken(end, start), nil
				}
			}
		}
		if !resp.More {
			return out, "", nil
		}
		if scanned >= trailScanBudget {
			return out, pageToken(end, start), nil
		}
	}
	return out, "", nil
}

func pageToken(end, start string) string {
	if end <= start {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(end))
}

// Follow calls fn with every event q selects (its page fields ignored) as
// it is stored, oldest first, until ctx ends or fn returns an error. With
// fromStart it first calls fn with every event already stored.
func (t *AuditTrail) Follow(ctx context.Context, q Query, fromStart bool, fn func(audit.Event) error) error {
	after := int64(-1)
	if fromStart {
		after = 0
	}
	return t.follow(ctx, q, after, func(e audit.Event, _ int64) error { return fn(e) })
}

// FollowAfter is Follow for a consumer that keeps its place: fn gets each
// event with the etcd revision that stored it, and the events stored after
// revision after (0: every event stored) come first, so a consumer that
// restarts from the last revision it handled misses nothing, however late
// a Follower's events arrived.
func (t *AuditTrail) FollowAfter(ctx context.Context, q Query, after int64, fn func(audit.Event, int64) error) error {
	return t.follow(ctx, q, max(after, 0), fn)
}

// follow replays the events created after revision after (none when after
// is negative), then watches.
func (t *AuditTrail) follow(ctx context.Context, q Query, after int64, fn func(audit.Event, int64) error) error {
	get, err := t.cli.Get(ctx, AuditEventsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("etcdstore: follow audit events: %w", err)
	}
	rev := get.Header.Revision
	if after >= 0 && after < rev {
		if err = t.replayByRevision(ctx, q, rev, after+1, fn); err != nil {
			return err
		}
	}
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wc := t.cli.Watch(wctx, AuditEventsPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for wr := range wc {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut || ev.Kv.CreateRevision != ev.Kv.ModRevision {
					continue
				}
				rev = ev.Kv.ModRevision
				var e audit.Event
				if json.Unmarshal(ev.Kv.Value, &e) != nil || !q.Match(e) {
					continue
				}
				if err := fn(e, ev.Kv.ModRevision); err != nil {
					cancel()
					return err
				}
			}
			rev = max(rev, wr.Header.Revision)
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The history the watch needed was compacted, or the watch broke:
		// read every event stored since the last revision seen (Followers'
		// events arrive late, so not a key range), then watch again.
		get, err := t.cli.Get(ctx, AuditEventsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return fmt.Errorf("etcdstore: follow audit events: %w", err)
		}
		if err := t.replayByRevision(ctx, q, get.Header.Revision, rev+1, fn); err != nil {
			return err
		}
		rev = get.Header.Revision
	}
}

// replayByRevision passes fn every event q selects that was stored from
// revision minRev up to rev, in the order they were stored, so that a
// consumer keeping the last revision it handled as its place never skips
// one.
func (t *AuditTrail) replayByRevision(ctx context.Context, q Query, rev, minRev int64, fn func(audit.Event, int64) error) error {
	for minRev <= rev {
		resp, err := t.cli.Get(ctx, AuditEventsPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithLimit(500),
			clientv3.WithMinCreateRev(minRev), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
		if err != nil {
			return fmt.Errorf("etcdstore: read audit events: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		// One revision may store many events (a batch, at most etcd's 128
		// operations: far fewer than a page): a full page stops before its
		// last revision, which the next page reads whole.
		kvs, last := resp.Kvs, resp.Kvs[len(resp.Kvs)-1].CreateRevision
		next := last + 1
		if resp.More && kvs[0].CreateRevision != last {
			for len(kvs) > 0 && kvs[len(kvs)-1].CreateRevision == last {
				kvs = kvs[:len(kvs)-1]
			}
			next = last
		}
		for _, kv := range kvs {
			var e audit.Event
			if json.Unmarshal(kv.Value, &e) != nil || !q.Match(e) {
				continue
			}
			if err := fn(e, kv.CreateRevision); err != nil {
				return err
			}
		}
		if !resp.More {
			return nil
		}
		minRev = next
	}
	return nil
}

// replay passes fn every event stored at revision rev (and created at
// minRev or later, when minRev > 0), in key order, and returns the last key
// read.
func (t *AuditTrail) replay(ctx context.Context, q Query, rev, minRev int64, fn func(audit.Event, int64) error) (string, error) {
	from, end := AuditEventsPrefix, clientv3.GetPrefixRangeEnd(AuditEventsPrefix)
	last := ""
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(500),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if minRev > 0 {
			opts = append(opts, clientv3.WithMinCreateRev(minRev))
		}
		resp, err := t.cli.Get(ctx, from, opts...)
		if err != nil {
			return last, fmt.Errorf("etcdstore: read audit events: %w", err)
		}
		for _, kv := range resp.Kvs {
			last = string(kv.Key)
			var e audit.Event
			if json.Unmarshal(kv.Value, &e) != nil || !q.Match(e) {
				continue
			}
			if err := fn(e, kv.CreateRevision); err != nil {
				return last, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return last, nil
		}
		from = last + "\x00"
	}
}

// FencePrune makes the Leader alone prune the trail, in its term: the
// deletes go through w (the election's FencedClient); on a node that is
// not the Leader Prune deletes nothing.
func (t *AuditTrail) FencePrune(w *clientv3.Client) { t.pruner.Store(w) }

// Pruned is what one Prune deleted, by bound.
type Pruned struct{ Age, Count int64 }

// Prune deletes the events older than MaxAge, then the oldest beyond
// MaxEvents. With FencePrune, on a node that is not the Leader it deletes
// nothing and returns zero, nil.
func (t *AuditTrail) Prune(ctx context.Context) (Pruned, error) {
	var p Pruned
	del := orPlain(t.pruner.Load(), t.cli)
	cut := timeKey(t.c.Now().Add(-t.c.MaxAge))
	resp, err := del.Delete(ctx, AuditEventsPrefix, clientv3.WithRange(cut))
	if errors.Is(err, cluster.ErrNotLeader) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("etcdstore: prune audit events older than %s: %w", t.c.MaxAge, err)
	}
	p.Age = resp.Deleted
	cnt, err := t.cli.Get(ctx, AuditEventsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return p, fmt.Errorf("etcdstore: count audit events: %w", err)
	}
	excess := cnt.Count - t.c.MaxEvents
	for excess > 0 {
		// In slices, so one delete stays a reasonable raft entry.
		n := min(excess, 10000)
		old, err := t.cli.Get(ctx, AuditEventsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(n))
		if err != nil || len(old.Kvs) == 0 {
			return p, err
		}
		resp, err := del.Delete(ctx, AuditEventsPrefix, clientv3.WithRange(string(old.Kvs[len(old.Kvs)-1].Key)+"\x00"))
		if errors.Is(err, cluster.ErrNotLeader) {
			return p, nil
		}
		if err != nil {
			return p, fmt.Errorf("etcdstore: prune audit events beyond %d: %w", t.c.MaxEvents, err)
		}
		if resp.Deleted == 0 {
			break
		}
		p.Count += resp.Deleted
		excess -= resp.Deleted
	}
	return p, nil
}
