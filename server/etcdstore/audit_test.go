package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/audit"
)

// fakeClock is a settable clock for the audit budget.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type auditOut struct {
	Type  string         `json:"type"`
	Event map[string]any `json:"event"`
}

func readAudit(t *testing.T, cli *clientv3.Client) []auditOut {
	t.Helper()
	resp, err := cli.Get(context.Background(), AuditEventsPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]auditOut, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e audit.Event
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			t.Fatalf("record %s: %v", kv.Key, err)
		}
		if err := e.Validate(); err != nil || e.Kind != audit.KindAuthn {
			t.Fatalf("record %s: %+v: %v", kv.Key, e, err)
		}
		r := auditOut{Type: "authn-" + e.Outcome, Event: map[string]any{}}
		if e.Action == "summary" {
			r.Type = "authn-summary"
		}
		raw, _ := json.Marshal(e)
		_ = json.Unmarshal(raw, &r.Event)
		out = append(out, r)
	}
	return out
}

func failure(identity, source, reason string) AuthnEvent {
	return AuthnEvent{Outcome: OutcomeFailure, Authenticator: "authn", Identity: identity, Source: source, Reason: reason, Detail: "API key does not match"}
}

func TestAuditBudget(t *testing.T) {
	tests := map[string]struct {
		burst     int
		events    []AuthnEvent
		wantTypes map[string]int
		// wantCounts is the total count the records carry.
		wantCounts int64
	}{
		"a storm against one identity is one record": {
			burst:      100,
			events:     repeat(failure("acme:user:alice", "10.0.0.9", "bad_credentials"), 5000),
			wantTypes:  map[string]int{"authn-failure": 1},
			wantCounts: 5000,
		},
		"distinct events within the budget are each recorded": {
			burst:      100,
			events:     distinct(10),
			wantTypes:  map[string]int{"authn-failure": 10},
			wantCounts: 10,
		},
		"beyond the budget the rest is summarised": {
			burst:      5,
			events:     distinct(20),
			wantTypes:  map[string]int{"authn-failure": 4, "authn-summary": 1},
			wantCounts: 20,
		},
		"failures go before successes": {
			burst: 3,
			events: append(distinct(2), AuthnEvent{Outcome: OutcomeSuccess, Authenticator: "authn", Identity: "acme:user:bob"},
				AuthnEvent{Outcome: OutcomeSuccess, Authenticator: "authn", Identity: "acme:user:carol"}),
			wantTypes:  map[string]int{"authn-failure": 2, "authn-summary": 1},
			wantCounts: 4,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cli := startEtcd(t)
			clk := &fakeClock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
			a := NewAuthnAudit(NewAuditTrail(cli, TrailConfig{}), AuditConfig{Burst: tc.burst, Rate: 1, Now: clk.Now, Node: "n1"})
			for _, e := range tc.events {
				a.Record(e)
			}
			if err := a.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			recs := readAudit(t, cli)
			types := map[string]int{}
			var total int64
			for _, r := range recs {
				types[r.Type]++
				total += countOf(r)
			}
			if fmt.Sprint(types) != fmt.Sprint(tc.wantTypes) || total != tc.wantCounts {
				t.Fatalf("records %v carrying %d events; want %v carrying %d", types, total, tc.wantTypes, tc.wantCounts)
			}
		})
	}
}

func repeat(e AuthnEvent, n int) []AuthnEvent {
	out := make([]AuthnEvent, n)
	for i := range out {
		out[i] = e
	}
	return out
}

func distinct(n int) []AuthnEvent {
	out := make([]AuthnEvent, n)
	for i := range out {
		out[i] = failure(fmt.Sprintf("acme:user:u%d", i), "10.0.0.1", "bad_credentials")
	}
	return out
}

func countOf(r auditOut) int64 {
	if n, ok := r.Event["count"].(float64); ok {
		return int64(n)
	}
	return 1
}

// TestAuditRecordSaysWhoHowWhereWhy: a failure record holds the identity,
// the authenticator, the source and the reason with its detail.
func TestAuditRecordSaysWhoHowWhereWhy(t *testing.T) {
	cli := startEtcd(t)
	a := NewAuthnAudit(NewAuditTrail(cli, TrailConfig{}), AuditConfig{Node: "leader-1"})
	a.Record(AuthnEvent{Outcome: OutcomeFailure, Authenticator: "authn-k8s/prod", Identity: "acme:host:conjur/authn-k8s/prod/apps/shop/*/*",
		Source: "10.1.2.3", Reason: "wrong_audience", Detail: `JWT aud ["x"] does not contain "y"` + strings.Repeat("!", 2000)})
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := readAudit(t, cli)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	e := recs[0].Event
	for k, want := range map[string]string{
		"authenticator": "authn-k8s/prod", "identity": "acme:host:conjur/authn-k8s/prod/apps/shop/*/*",
		"source": "10.1.2.3", "node": "leader-1", "outcome": "failure",
	} {
		if e[k] != want {
			t.Errorf("%s = %v, want %q", k, e[k], want)
		}
	}
	if d, _ := e["reason"].(string); !strings.HasPrefix(d, "wrong_audience: JWT aud") || len(d) > audit.MaxFieldBytes {
		t.Errorf("detail %q (%d bytes) is not the clipped detail", d, len(d))
	}
}

// TestAuditBudgetRefillsAndCarriesTheSummary: with the bucket empty nothing
// is written and nothing is lost; once it refills the summary is written.
func TestAuditBudgetRefillsAndCarriesTheSummary(t *testing.T) {
	cli := startEtcd(t)
	clk := &fakeClock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	a := NewAuthnAudit(NewAuditTrail(cli, TrailConfig{}), AuditConfig{Burst: 2, Rate: 1, Now: clk.Now})
	ctx := context.Background()
	for _, e := range distinct(3) {
		a.Record(e)
	}
	if err := a.Flush(ctx); err != nil { // 1 detailed + 1 summary (2 events)
		t.Fatal(err)
	}
	for _, e := range distinct(5) {
		a.Record(e)
	}
	if err := a.Flush(ctx); err != nil { // bucket empty: all folded
		t.Fatal(err)
	}
	if n := len(readAudit(t, cli)); n != 2 {
		t.Fatalf("%d records with an empty bucket, want the first 2", n)
	}
	clk.Add(time.Second)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs := readAudit(t, cli)
	var total int64
	for _, r := range recs {
		total += countOf(r)
	}
	if len(recs) != 3 || total != 8 {
		t.Fatalf("%d records carrying %d events, want 3 carrying 8", len(recs), total)
	}
}

// TestAuditSurvivesAFailedWrite: counts that could not be written are kept
// in the summary and written by the next flush.
func TestAuditSurvivesAFailedWrite(t *testing.T) {
	cli := startEtcd(t)
	a := NewAuthnAudit(NewAuditTrail(cli, TrailConfig{}), AuditConfig{})
	for _, e := range distinct(3) {
		a.Record(e)
	}
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Flush(dead); err == nil {
		t.Fatal("Flush with a cancelled context succeeded")
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := readAudit(t, cli)
	if len(recs) != 1 || recs[0].Type != "authn-summary" || countOf(recs[0]) != 3 {
		t.Fatalf("after a failed write: %+v", recs)
	}
}
