package keypool_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/sowerproject/sower/internal/keypool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counter hands out 1, 2, 3, ... so a test sees whether a key was handed out twice.
type counter struct{ n atomic.Int64 }

func (c *counter) gen() (int64, error) { return c.n.Add(1), nil }

func TestEveryKeyOnce(t *testing.T) {
	var c counter
	p := keypool.New(8, c.gen)
	defer p.Stop()
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				k, err := p.Get()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[k] {
					t.Errorf("key %d handed out twice", k)
				}
				seen[k] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 2000 {
		t.Fatalf("got %d distinct keys, want 2000", len(seen))
	}
}

func TestFillsInTheBackgroundAfterFirstGet(t *testing.T) {
	var c counter
	made := make(chan int64, 64)
	p := keypool.New(4, func() (int64, error) {
		k, _ := c.gen()
		made <- k
		return k, nil
	})
	defer p.Stop()
	select {
	case k := <-made:
		t.Fatalf("key %d made before anyone asked", k)
	default:
	}
	if _, err := p.Get(); err != nil {
		t.Fatal(err)
	}
	// The first Get starts the filler, which makes four keys for the pool
	// and a fifth that waits for room, besides any made for Get itself.
	for range 5 {
		<-made
	}
	for p.Len() < 4 {
		<-made // bounded: the filler makes at most one key beyond a full pool
	}
	before := c.n.Load()
	k, err := p.Get()
	if err != nil || k > before {
		t.Fatalf("Get = %d, %v; want a pooled key (made before %d)", k, err, before)
	}
	p.Stop()
	if p.Len() != 0 {
		t.Fatalf("a stopped pool holds %d keys", p.Len())
	}
	// A stopped pool still serves, generating on demand.
	if k, err := p.Get(); err != nil || k <= before {
		t.Fatalf("Get after Stop = %d, %v", k, err)
	}
}

func TestGeneratorError(t *testing.T) {
	boom := errors.New("entropy source failed")
	p := keypool.New(4, func() (int, error) { return 0, boom })
	defer p.Stop()
	if _, err := p.Get(); !errors.Is(err, boom) {
		t.Fatalf("Get = %v, want the generator's error", err)
	}
}

func TestSizeZeroGeneratesOnDemand(t *testing.T) {
	var c counter
	p := keypool.New(0, c.gen)
	defer p.Stop()
	for want := int64(1); want <= 3; want++ {
		if k, err := p.Get(); err != nil || k != want {
			t.Fatalf("Get = %d, %v; want %d", k, err, want)
		}
	}
}
