package seed

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSigningTurns: at most MaxConcurrent seeds are signed at once, the
// next MaxWaiting requests wait their turn, and one more is refused at
// once with ErrBusy naming the limit; a waiter whose caller gives up
// leaves the queue.
func TestSigningTurns(t *testing.T) {
	i := &Issuer{c: Config{MaxConcurrent: 1, MaxWaiting: 1}, slots: make(chan struct{}, 1)}
	ctx := context.Background()
	first, err := i.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	var second func()
	go func() {
		var err error
		second, err = i.acquire(ctx)
		got <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for i.waiting.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the second request never waited")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := i.acquire(ctx); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "the limit is 1") {
		t.Fatalf("third request: %v, want ErrBusy naming the limit", err)
	}
	first()
	first() // idempotent: gives back one turn only
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// The second holds the only turn: a waiter that gives up leaves.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := i.acquire(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiter past its deadline: %v", err)
	}
	if n := i.waiting.Load(); n != 0 {
		t.Fatalf("%d still counted as waiting", n)
	}
	second()
	if len(i.slots) != 0 {
		t.Fatalf("%d turns still held", len(i.slots))
	}
}
