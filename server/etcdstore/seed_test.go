package etcdstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/seed"
)

// gatedKV holds the first transaction until release is closed, so that a
// test can line records up behind it deterministically.
type gatedKV struct {
	clientv3.KV
	once             sync.Once
	entered, release chan struct{}
}

func (g *gatedKV) Txn(ctx context.Context) clientv3.Txn {
	g.once.Do(func() { close(g.entered); <-g.release })
	return g.KV.Txn(ctx)
}

func gatedSeeds(cli *clientv3.Client) (s *Seeds, entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	c := clientv3.NewCtxClient(cli.Ctx())
	c.KV = &gatedKV{KV: cli.KV, entered: entered, release: release}
	return NewSeeds(c), entered, release
}

// queued waits until n records wait behind the held transaction.
func queued(t *testing.T, s *Seeds, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		got := len(s.queue)
		s.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d records never queued", n)
}

func record(id string) seed.Record {
	return seed.Record{ID: id, Kind: "follower", Requester: "acme:host:f", Hostnames: []string{id + ".example"}, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
}

// TestSeedsGroupCommit: records that arrive while a transaction is in
// flight are committed together (one revision per batch of at most
// MaxSeedBatch), each Put returns once its record is stored, and a taken id
// fails only its own Put.
func TestSeedsGroupCommit(t *testing.T) {
	cli := startEtcd(t)
	ctx := context.Background()
	plain := NewSeeds(cli)
	if err := plain.Put(ctx, record("taken"), nil); err != nil {
		t.Fatal(err)
	}
	s, entered, release := gatedSeeds(cli)
	rev0, err := cli.Get(ctx, "/none")
	if err != nil {
		t.Fatal(err)
	}
	const n = 150
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	// The first Put's transaction is held; the rest queue behind it,
	// "taken" among them.
	wg.Add(1)
	go func() { defer wg.Done(); errs[0] = s.Put(ctx, record("first"), nil) }()
	<-entered
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("s-%03d", i)
		if i == 77 {
			id = "taken"
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Put(ctx, record(id), nil) }()
	}
	queued(t, s, n)
	// The goroutines queued in any order: find the batch "taken" is in.
	s.mu.Lock()
	takenBatch := -1
	for i, p := range s.queue {
		if p.id == "taken" {
			takenBatch = i / MaxSeedBatch
		}
	}
	s.mu.Unlock()
	close(release)
	wg.Wait()
	for i, err := range errs {
		if i == 77 {
			if err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("the taken id: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	list, err := plain.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n+1 { // "taken" once, "first", and n-1 others
		t.Fatalf("%d records stored, want %d", len(list), n+1)
	}
	end, err := cli.Get(ctx, "/none")
	if err != nil {
		t.Fatal(err)
	}
	// "first" alone; then batches of 64, 64 and 22: the one holding
	// "taken" fails its compare as a whole and is retried record by
	// record (a failed compare takes no revision), the others take one
	// revision each.
	used := end.Header.Revision - rev0.Header.Revision
	sizes := []int64{MaxSeedBatch, MaxSeedBatch, n - 2*MaxSeedBatch}
	want := int64(1)
	for i, size := range sizes {
		if i == takenBatch {
			want += size - 1
		} else {
			want++
		}
	}
	if used != want {
		t.Fatalf("%d revisions used for %d records, want %d (group commit)", used, n+1, want)
	}
}
