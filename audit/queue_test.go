package audit

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// memTrail keeps appended events by key, failing while down is set.
type memTrail struct {
	mu   sync.Mutex
	down bool
	got  map[string]Event
}

func (m *memTrail) Append(_ context.Context, evs []Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errors.New("trail unreachable")
	}
	for _, e := range evs {
		if err := e.Validate(); err != nil {
			return err
		}
	}
	for _, e := range evs {
		m.got[e.Key()] = e
	}
	return nil
}

func TestQueueStampsBoundsAndRetries(t *testing.T) {
	tr := &memTrail{got: map[string]Event{}, down: true}
	q, err := NewQueue(QueueConfig{Node: "n1", Trail: tr, MaxPending: 5, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	for range 7 {
		q.Record(Event{Kind: KindSecretRead, Action: "read", Outcome: OutcomeSuccess, Identity: "acme:host:app"})
	}
	if err := q.Flush(context.Background()); err == nil {
		t.Fatal("Flush to an unreachable trail succeeded")
	}
	if q.Pending() != 5 || q.Dropped() != 2 {
		t.Fatalf("pending %d dropped %d; want 5 kept, 2 dropped", q.Pending(), q.Dropped())
	}
	tr.down = false
	// An invalid event is dropped alone; the others are stored.
	q.mu.Lock()
	q.pending = q.pending[:4]
	q.mu.Unlock()
	q.Record(Event{Kind: "nope", Outcome: OutcomeSuccess})
	if err := q.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(tr.got) != 4 || q.Pending() != 0 || q.Dropped() != 3 {
		t.Fatalf("stored %d, pending %d, dropped %d; want 4, 0, 3", len(tr.got), q.Pending(), q.Dropped())
	}
	for _, e := range tr.got {
		if e.Node != "n1" || e.At.IsZero() || e.Validate() != nil {
			t.Fatalf("event not stamped: %+v", e)
		}
	}
}

func TestNewQueueNeedsNodeAndTrail(t *testing.T) {
	if _, err := NewQueue(QueueConfig{Trail: &memTrail{}}); err == nil {
		t.Fatal("no node accepted")
	}
	if _, err := NewQueue(QueueConfig{Node: "n1"}); err == nil {
		t.Fatal("no trail accepted")
	}
}
