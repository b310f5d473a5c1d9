package pkitest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/pki/pkitest"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := pkitest.NewClock(t0)
	now := c.After(0)
	select {
	case got := <-now:
		if !got.Equal(t0) {
			t.Fatalf("After(0) fired with %s", got)
		}
	default:
		t.Fatal("After(0) did not fire at once")
	}
	a, b := c.After(time.Hour), c.After(2*time.Hour)
	if err := c.WaitForTimers(context.Background(), 2); err != nil || c.Timers() != 2 {
		t.Fatalf("timers %d, %v", c.Timers(), err)
	}
	c.Advance(time.Hour - time.Nanosecond)
	select {
	case <-a:
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Nanosecond)
	if got := <-a; !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("fired with %s", got)
	}
	c.Set(t0) // never backwards
	if !c.Now().Equal(t0.Add(time.Hour)) {
		t.Fatal("clock moved backwards")
	}
	c.Set(t0.Add(3 * time.Hour))
	<-b
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitForTimers(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitForTimers with no timer: %v", err)
	}
}

func TestMemStore(t *testing.T) {
	ctx := context.Background()
	s := pkitest.NewMemStore()
	if _, err := s.Get(ctx, "/k"); !errors.Is(err, pki.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	s.Put(ctx, "/k", []byte("a"))
	if ok, _ := s.CompareAndSwap(ctx, "/k", []byte("b"), []byte("c")); ok {
		t.Fatal("swapped on a stale value")
	}
	if ok, _ := s.CompareAndSwap(ctx, "/k", []byte("a"), []byte("c")); !ok {
		t.Fatal("did not swap on the current value")
	}
	if v, _ := s.Get(ctx, "/k"); string(v) != "c" {
		t.Fatalf("value %q", v)
	}
	s.FailNext(errors.New("boom"))
	if err := s.Put(ctx, "/k", nil); err == nil || err.Error() != "boom" {
		t.Fatalf("FailNext: %v", err)
	}
	if err := s.Put(ctx, "/k", nil); err != nil {
		t.Fatal("FailNext must fail only one operation")
	}
	s.Delete("/k")
	if len(s.Keys()) != 0 {
		t.Fatal("Delete")
	}
}
