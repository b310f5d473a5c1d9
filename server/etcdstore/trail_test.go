package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/replica"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func ev(node string, seq int, at time.Time, kind audit.Kind, identity, resource string) audit.Event {
	return audit.Event{ID: fmt.Sprintf("%s/%d", node, seq), At: at, Node: node, Kind: kind, Action: "read",
		Outcome: audit.OutcomeSuccess, Identity: identity, Resource: resource}
}

func countEvents(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), AuditEventsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

func TestTrailAppendIsIdempotent(t *testing.T) {
	cli := startEtcd(t)
	tr := NewAuditTrail(cli, TrailConfig{})
	ctx := context.Background()
	// 250 events: three transactions of at most TrailMaxBatch.
	var batch []audit.Event
	for i := range 250 {
		batch = append(batch, ev("f1", i, t0.Add(time.Duration(i)*time.Millisecond), audit.KindSecretRead, "acme:host:app", "acme:variable:db"))
	}
	if err := tr.Append(ctx, batch[:120]); err != nil {
		t.Fatal(err)
	}
	rev := latest(t, cli)
	// Re-delivery of what was stored, mixed with new events, and a
	// duplicate inside the batch: only the new ones are written.
	if err := tr.Append(ctx, append(batch, batch[5])); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, cli); n != 250 {
		t.Fatalf("%d events stored; want 250", n)
	}
	changed, err := cli.Get(ctx, AuditEventsPrefix, clientv3.WithPrefix(), clientv3.WithMinModRev(rev+1), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if len(changed.Kvs) != 130 {
		t.Fatalf("re-delivery rewrote %d events; want only the 130 new ones written", len(changed.Kvs))
	}
	if err := tr.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if latest(t, cli) != changed.Header.Revision {
		t.Fatal("appending only stored events changed the store")
	}
}

func TestTrailAppendRefusesBadEvents(t *testing.T) {
	cli := startEtcd(t)
	tr := NewAuditTrail(cli, TrailConfig{})
	good := ev("n1", 1, t0, audit.KindAuthn, "acme:user:alice", "")
	tests := map[string]func(*audit.Event){
		"no time":       func(e *audit.Event) { e.At = time.Time{} },
		"unknown kind":  func(e *audit.Event) { e.Kind = "coffee" },
		"id of another": func(e *audit.Event) { e.ID = "n2/1" },
		"bad outcome":   func(e *audit.Event) { e.Outcome = "maybe" },
		"newline":       func(e *audit.Event) { e.Identity = "a\nb" },
		"huge field":    func(e *audit.Event) { e.Resource = string(make([]byte, audit.MaxFieldBytes+1)) },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			bad := good
			mutate(&bad)
			err := tr.Append(context.Background(), []audit.Event{good, bad})
			if !errors.Is(err, audit.ErrInvalid) {
				t.Fatalf("Append = %v; want audit.ErrInvalid", err)
			}
			if n := countEvents(t, cli); n != 0 {
				t.Fatalf("%d events stored from a refused batch", n)
			}
		})
	}
}

func TestTrailListFiltersNewestFirstInPages(t *testing.T) {
	cli := startEtcd(t)
	tr := NewAuditTrail(cli, TrailConfig{})
	ctx := context.Background()
	var all []audit.Event
	for i := range 30 {
		id := "acme:host:a"
		if i%3 == 0 {
			id = "acme:host:b"
		}
		all = append(all, ev("n1", i, t0.Add(time.Duration(i)*time.Second), audit.KindSecretRead, id, "acme:variable:x"))
	}
	if err := tr.Append(ctx, all); err != nil {
		t.Fatal(err)
	}
	// Identity b since t0+10s: events 12, 15, ..., 27 (6), newest first,
	// in pages of 4.
	q := Query{Identity: "acme:host:b", Since: t0.Add(10 * time.Second), Limit: 4}
	var got []string
	for range 5 {
		page, next, err := tr.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			got = append(got, e.ID)
		}
		if next == "" {
			break
		}
		q.PageToken = next
	}
	want := "[n1/27 n1/24 n1/21 n1/18 n1/15 n1/12]"
	if fmt.Sprint(got) != want {
		t.Fatalf("pages gave %v; want %s", got, want)
	}
	if _, _, err := tr.List(ctx, Query{PageToken: "bm90LWEta2V5"}); !errors.Is(err, ErrBadPageToken) {
		t.Fatalf("forged token: %v; want ErrBadPageToken", err)
	}
}

func TestTrailPrune(t *testing.T) {
	cli := startEtcd(t)
	now := t0.Add(40 * 24 * time.Hour)
	tr := NewAuditTrail(cli, TrailConfig{MaxAge: 30 * 24 * time.Hour, MaxEvents: 10, Now: func() time.Time { return now }})
	ctx := context.Background()
	var all []audit.Event
	// 5 events older than 30 days, 15 recent.
	for i := range 5 {
		all = append(all, ev("n1", i, t0.Add(time.Duration(i)*time.Minute), audit.KindAuthn, "", ""))
	}
	for i := 5; i < 20; i++ {
		all = append(all, ev("n1", i, now.Add(-time.Duration(20-i)*time.Minute), audit.KindAuthn, "", ""))
	}
	if err := tr.Append(ctx, all); err != nil {
		t.Fatal(err)
	}
	p, err := tr.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p != (Pruned{Age: 5, Count: 5}) {
		t.Fatalf("pruned %+v; want 5 by age and 5 by count", p)
	}
	left, _, err := tr.List(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 10 || left[len(left)-1].ID != "n1/10" || left[0].ID != "n1/19" {
		t.Fatalf("kept %d events from %s to %s; want the newest 10, n1/19 to n1/10", len(left), left[0].ID, left[len(left)-1].ID)
	}
}

func TestTrailFollow(t *testing.T) {
	cli := startEtcd(t)
	tr := NewAuditTrail(cli, TrailConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.Append(ctx, []audit.Event{ev("n1", 1, t0, audit.KindAuthn, "", "")}); err != nil {
		t.Fatal(err)
	}
	got := make(chan audit.Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- tr.Follow(ctx, Query{Node: "f1"}, true, func(e audit.Event) error { got <- e; return nil })
	}()
	// An event of another node is not followed; a late event (older time)
	// of f1 is, and a re-delivered one only once.
	late := ev("f1", 7, t0.Add(-time.Hour), audit.KindSecretRead, "", "")
	if err := tr.Append(ctx, []audit.Event{ev("n1", 2, t0, audit.KindAuthn, "", ""), late}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Append(ctx, []audit.Event{late, ev("f1", 8, t0, audit.KindSecretRead, "", "")}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for len(ids) < 2 {
		select {
		case e := <-got:
			ids = append(ids, e.ID)
		case <-ctx.Done():
			t.Fatalf("followed %v before the deadline", ids)
		}
	}
	cancel()
	<-done
	if fmt.Sprint(ids) != "[f1/7 f1/8]" || len(got) != 0 {
		t.Fatalf("followed %v (+%d); want [f1/7 f1/8]", ids, len(got))
	}
}

func TestTrailIsNotReplicated(t *testing.T) {
	e := ev("f1", 1, t0, audit.KindAuthn, "", "")
	if replica.Allowed(EventKey(e)) {
		t.Fatalf("%s is replicated to Followers; the trail stays on the quorum", EventKey(e))
	}
}
