package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/pki"
)

func newSecrets(t *testing.T, cli *clientv3.Client) *Secrets {
	t.Helper()
	kr, err := pki.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSecrets(cli, kr, SecretsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const dbPassword = "acme:variable:db/password"

func TestSecretVersionsAreNumberedAndTheLatest20Kept(t *testing.T) {
	cli := startEtcd(t)
	s := newSecrets(t, cli)
	ctx := context.Background()
	if _, _, err := s.Get(ctx, dbPassword, 0); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("Get before any value: %v, want ErrNoSecret", err)
	}
	for i := 1; i <= 25; i++ {
		v, err := s.Put(ctx, dbPassword, "acme:user:admin", fmt.Appendf(nil, "value-%d", i))
		if err != nil || v != int64(i) {
			t.Fatalf("Put %d = %d, %v", i, v, err)
		}
	}
	versions, err := s.Versions(ctx, dbPassword)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{}
	for i := int64(6); i <= 25; i++ {
		want = append(want, i)
	}
	if !slices.Equal(versions, want) {
		t.Fatalf("versions kept %v, want 6..25", versions)
	}
	tests := map[string]struct {
		version     int64
		wantValue   string
		wantVersion int64
		wantMissing bool
	}{
		"latest":          {0, "value-25", 25, false},
		"oldest kept":     {6, "value-6", 6, false},
		"a middle one":    {17, "value-17", 17, false},
		"pruned":          {5, "", 0, true},
		"not yet written": {26, "", 0, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v, n, err := s.Get(ctx, dbPassword, tc.version)
			if tc.wantMissing {
				var miss *MissingSecretError
				if !errors.As(err, &miss) || miss.ResourceID != dbPassword || miss.Version != tc.version {
					t.Fatalf("Get(%d) = %q, %v; want a MissingSecretError", tc.version, v, err)
				}
				return
			}
			if err != nil || string(v) != tc.wantValue || n != tc.wantVersion {
				t.Fatalf("Get(%d) = %q (v%d), %v; want %q (v%d)", tc.version, v, n, err, tc.wantValue, tc.wantVersion)
			}
		})
	}
}

// TestSecretValuesAreSealedAndBoundToTheirKey: etcd never holds the
// plaintext, and a sealed value moved to another variable does not open.
func TestSecretValuesAreSealedAndBoundToTheirKey(t *testing.T) {
	cli := startEtcd(t)
	s := newSecrets(t, cli)
	ctx := context.Background()
	secret := []byte("correct horse battery staple")
	if _, err := s.Put(ctx, dbPassword, "acme:user:admin", secret); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, secretPrefix, clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("stored keys: %v, %v", resp, err)
	}
	if bytes.Contains(resp.Kvs[0].Value, secret) {
		t.Fatal("etcd holds the plaintext")
	}
	audit, err := cli.Get(ctx, AuditPrefix, clientv3.WithPrefix())
	if err != nil || len(audit.Kvs) != 1 || bytes.Contains(audit.Kvs[0].Value, secret) || !bytes.Contains(audit.Kvs[0].Value, []byte(`"secret-updated"`)) {
		t.Fatalf("audit of the write: %v, %v", audit.Kvs, err)
	}
	other := "acme:variable:other"
	if _, err := cli.Put(ctx, secretKey(other, 1), string(resp.Kvs[0].Value)); err != nil {
		t.Fatal(err)
	}
	if v, _, err := s.Get(ctx, other, 0); err == nil || errors.Is(err, ErrNoSecret) {
		t.Fatalf("a value copied to another variable opened: %q, %v", v, err)
	}
}

// TestSecretPrefixesDoNotOverlap: a variable whose id looks like another's
// version key stays separate.
func TestSecretPrefixesDoNotOverlap(t *testing.T) {
	cli := startEtcd(t)
	s := newSecrets(t, cli)
	ctx := context.Background()
	a, b := "acme:variable:a", "acme:variable:a/000000000001"
	if _, err := s.Put(ctx, b, "admin", []byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, a, 0); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("Get(%s) sees %s's value: %v", a, b, err)
	}
	if v, err := s.Put(ctx, a, "admin", []byte("a")); err != nil || v != 1 {
		t.Fatalf("Put(%s) = %d, %v", a, v, err)
	}
	if id, ok := resourceOfKey(secretKey(b, 7)); !ok || id != b {
		t.Fatalf("resourceOfKey = %q, %v", id, ok)
	}
}

func TestGetManyReadsAllOrNamesTheMissingOne(t *testing.T) {
	cli := startEtcd(t)
	s := newSecrets(t, cli)
	ctx := context.Background()
	var ids []string
	for i := range 150 { // more than one transaction's worth
		id := fmt.Sprintf("acme:variable:app/v%03d", i)
		ids = append(ids, id)
		if _, err := s.Put(ctx, id, "admin", []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetMany(ctx, ids)
	if err != nil || len(got) != len(ids) {
		t.Fatalf("GetMany = %d values, %v", len(got), err)
	}
	for _, id := range ids {
		if string(got[id]) != id {
			t.Fatalf("value of %s = %q", id, got[id])
		}
	}
	_, err = s.GetMany(ctx, []string{ids[0], "acme:variable:empty", ids[1]})
	var miss *MissingSecretError
	if !errors.As(err, &miss) || miss.ResourceID != "acme:variable:empty" {
		t.Fatalf("GetMany with an empty variable: %v", err)
	}
}

// TestConcurrentPutsGetDistinctVersions: a burst of writers to one secret
// all succeed (more of them than the optimistic retries, so that a store
// relying on retries alone fails), each with a version of its own.
func TestConcurrentPutsGetDistinctVersions(t *testing.T) {
	cli := startEtcd(t)
	s := newSecrets(t, cli)
	var mu sync.Mutex
	var got []int64
	var wg sync.WaitGroup
	const writers = 64
	for i := range writers {
		wg.Go(func() {
			v, err := s.Put(context.Background(), dbPassword, "admin", fmt.Appendf(nil, "w%d", i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got = append(got, v)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(got)
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("versions %v, want 1 to %d", got, writers)
		}
	}
	if len(got) != writers {
		t.Fatalf("%d writes succeeded, want %d", len(got), writers)
	}
}

// TestOnChangeHearsLocalAndRemoteWrites: a write through this store is
// reported at once; one through another node's store through the watch.
func TestOnChangeHearsLocalAndRemoteWrites(t *testing.T) {
	cli := startEtcd(t)
	s := newSecrets(t, cli)
	changes := make(chan string, 16)
	s.OnChange(func(id string) { changes <- id })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	if id := <-changes; id != "" {
		t.Fatalf("first change %q, want \"\" (the watch started)", id)
	}
	other, err := NewSecrets(cli, s.sealer, SecretsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put(ctx, "acme:variable:conjur/authn-jwt/k8s/issuer", "admin", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if id := <-changes; id != "acme:variable:conjur/authn-jwt/k8s/issuer" {
		t.Fatalf("watched change %q", id)
	}
	if _, err := s.Put(ctx, dbPassword, "admin", []byte("y")); err != nil {
		t.Fatal(err)
	}
	// The local notification comes before Put returns; the watch's follows.
	if id := <-changes; id != dbPassword {
		t.Fatalf("local change %q", id)
	}
	if id := <-changes; id != dbPassword {
		t.Fatalf("watched local change %q", id)
	}
}

// A Follower's store keeps what it read while its private etcd's revision
// stays put, and reads again once anything is written: a new version, a
// deleted one, an unrelated key.
func TestValuesAreServedFromTheCacheOnlyAtTheRevisionTheyWereRead(t *testing.T) {
	ctx := context.Background()
	e, err := cluster.StartPrivateEtcd(ctx, cluster.PrivateEtcdConfig{Dir: filepath.Join(t.TempDir(), "copy")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	cli := e.Client()
	writer := newSecrets(t, cli)
	var reads atomic.Int64
	rev := func() int64 { reads.Add(1); return e.Revision() }
	s, err := NewSecrets(cli, writer.sealer, SecretsConfig{Serializable: true, Revision: rev})
	if err != nil {
		t.Fatal(err)
	}
	get := func(version int64, want string, wantVersion int64) {
		t.Helper()
		v, n, err := s.Get(ctx, dbPassword, version)
		if err != nil || string(v) != want || n != wantVersion {
			t.Fatalf("Get(%d) = %q, %d, %v; want %q, %d", version, v, n, err, want, wantVersion)
		}
	}
	if _, err := writer.Put(ctx, dbPassword, "acme:user:admin", []byte("one")); err != nil {
		t.Fatal(err)
	}
	get(0, "one", 1)
	if s.cache.rev != e.Revision() || len(s.cache.entries) != 1 {
		t.Fatalf("cache at %d with %d entries after a read at %d", s.cache.rev, len(s.cache.entries), e.Revision())
	}
	// Served again: the entry is what the cache hands out, sealed.
	sealed := s.cache.entries[valueKey{dbPassword, 0}].sealed
	if bytes.Contains(sealed, []byte("one")) {
		t.Fatal("the cache holds the value in the clear")
	}
	get(0, "one", 1)

	if _, err := writer.Put(ctx, dbPassword, "acme:user:admin", []byte("two")); err != nil {
		t.Fatal(err)
	}
	get(0, "two", 2)
	get(1, "one", 1)
	get(1, "one", 1)
	if len(s.cache.entries) != 2 {
		t.Fatalf("%d entries, want the latest and version 1", len(s.cache.entries))
	}
	// Any write moves the revision, and the next read goes to etcd.
	if _, err := cli.Put(ctx, "/sower/unrelated", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, SecretPrefix(dbPassword), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, dbPassword, 0); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("after the delete: %v, want ErrNoSecret", err)
	}
	if len(s.cache.entries) != 2 || s.cache.rev == e.Revision() {
		t.Fatal("a missing value was cached")
	}
	if reads.Load() == 0 {
		t.Fatal("Revision was never asked")
	}
}

// A read that started before a change and ends after it cannot put its
// older value over what the cache has from the newer revision.
func TestValueCacheKeepsTheNewestRevision(t *testing.T) {
	var c valueCache
	c.put("a", 0, 7, "k7", []byte("v7"))
	c.put("a", 0, 6, "k6", []byte("v6"))
	if kv, ok := c.get("a", 0, 7); !ok || kv.key != "k7" {
		t.Fatalf("get at 7 = %+v %v, want k7", kv, ok)
	}
	if _, ok := c.get("a", 0, 8); ok {
		t.Fatal("an entry served at a revision it was not read at")
	}
	for i := range cacheMaxEntries + 10 {
		c.put(fmt.Sprint(i), 0, 9, "k", []byte("v"))
	}
	if len(c.entries) != cacheMaxEntries {
		t.Fatalf("%d entries, want the bound %d", len(c.entries), cacheMaxEntries)
	}
}
