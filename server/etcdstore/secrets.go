package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Key layout of secret values (Conjur's variables):
//
//	/sower/secrets/<escaped resource id>/<version, 12 digits>   the value, sealed
//
// The resource id ("acme:variable:db/password") is one key segment with '%'
// and '/' escaped, so one resource's prefix never holds another's versions.
// Each value is sealed under the data key with its own etcd key as the
// additional data: a value copied to another variable or version fails to
// open. Versions count from 1 and keep counting after old ones are pruned;
// a write keeps the latest VersionsKept (20, as Conjur) and deletes the rest
// in the same transaction.
const secretPrefix = "/sower/secrets/"

// DefaultSecretVersionsKept is how many versions of a value are kept, as
// Conjur keeps them.
const DefaultSecretVersionsKept = 20

// ErrNoSecret is matched by the error for a resource without a value, or
// without the version asked for.
var ErrNoSecret = errors.New("etcdstore: no such secret value")

// MissingSecretError names the resource whose value is missing.
type MissingSecretError struct {
	ResourceID string
	// Version is the version asked for; 0 for the latest.
	Version int64
}

func (e *MissingSecretError) Error() string {
	if e.Version > 0 {
		return fmt.Sprintf("etcdstore: %s has no version %d", e.ResourceID, e.Version)
	}
	return fmt.Sprintf("etcdstore: %s has no value", e.ResourceID)
}

// Is makes the error match ErrNoSecret.
func (e *MissingSecretError) Is(target error) bool { return target == ErrNoSecret }

// Sealer seals values under the data key; *pki.Keyring implements it.
// Open must not modify sealed (a Follower's store opens cached values).
type Sealer interface {
	Seal(aad string, plaintext []byte) ([]byte, error)
	Open(aad string, sealed []byte) ([]byte, error)
}

// SecretsConfig tunes the secret store.
type SecretsConfig struct {
	// VersionsKept is how many versions of each value are kept (default 20).
	VersionsKept int
	// Logger receives the watch's log lines. Nil discards.
	Logger *slog.Logger
	// Serializable makes reads local to the member, without etcd's
	// linearizable round trip: right for a single-member etcd whose every
	// acknowledged write is already applied (a Follower's private copy).
	Serializable bool
	// Revision, when set, is the store's current revision on a
	// single-member etcd (cluster.Etcd.Revision of a Follower's private
	// copy, which only the replica writes): values read are then kept,
	// sealed as stored, with the revision they were read at, and served
	// again without a read of etcd while the revision has not moved. On a
	// member of a quorum it must stay nil (its revision can move before
	// its own reads see the change).
	Revision func() int64
}

// Secrets keeps secret values in etcd, sealed. Run follows changes made by
// any node and tells the functions registered with OnChange, so that caches
// built from values (the JWT authenticators' settings) are dropped.
type Secrets struct {
	cli *clientv3.Client
	// w, when set (FenceWrites), is the client writes go through.
	w      atomic.Pointer[clientv3.Client]
	sealer Sealer
	c      SecretsConfig

	mu        sync.Mutex
	listeners []func(resourceID string)

	cache *valueCache // with SecretsConfig.Revision

	// writing serializes this node's writes to one resource (striped by
	// the resource id's hash): version numbers are taken optimistically
	// (read the head, create head+1 if absent), and without it a burst of
	// concurrent writers to one secret lost the race over and over until
	// some ran out of retries.
	writing [64]sync.Mutex
}

// writeLock is the lock of resourceID's stripe.
func (s *Secrets) writeLock(resourceID string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(resourceID))
	return &s.writing[h.Sum32()%uint32(len(s.writing))]
}

// NewSecrets returns the store; sealer is required.
func NewSecrets(cli *clientv3.Client, sealer Sealer, c SecretsConfig) (*Secrets, error) {
	if cli == nil || sealer == nil {
		return nil, errors.New("etcdstore: secrets need an etcd client and a sealer")
	}
	if c.VersionsKept <= 0 {
		c.VersionsKept = DefaultSecretVersionsKept
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Secrets{cli: cli, sealer: sealer, c: c}
	if c.Revision != nil {
		s.cache = &valueCache{}
	}
	return s, nil
}

// FenceWrites sends every write of the store through w from now on: the
// election's FencedClient, so that a Leader that has lost its term cannot
// store a value in the moment before it notices. Reads keep the store's
// own client.
func (s *Secrets) FenceWrites(w *clientv3.Client) { s.w.Store(w) }

func (s *Secrets) writer() *clientv3.Client {
	if w := s.w.Load(); w != nil {
		return w
	}
	return s.cli
}

// SecretPrefix is the etcd prefix of every version of a resource's value.
// Whoever deletes the resource should delete this prefix with it.
func SecretPrefix(resourceID string) string { return secretPrefix + escapeSegment(resourceID) + "/" }

func secretKey(resourceID string, version int64) string {
	return SecretPrefix(resourceID) + fmt.Sprintf("%012d", version)
}

// resourceOfKey returns the resource id of a version key.
func resourceOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, secretPrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	return unescapeSegment(rest[:i]), true
}

// OnChange registers fn to be called with a resource id whenever its value
// changes (on this node at once, on others through Run's watch), and with ""
// when every value may have changed (the watch restarted). Register before
// Run.
func (s *Secrets) OnChange(fn func(resourceID string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}

func (s *Secrets) notify(resourceID string) {
	s.mu.Lock()
	ls := s.listeners
	s.mu.Unlock()
	for _, fn := range ls {
		fn(resourceID)
	}
}

// Put stores value as the resource's next version and returns its number.
// by (the caller's role) goes to the audit trail with the resource and
// version, never the value.
func (s *Secrets) Put(ctx context.Context, resourceID, by string, value []byte) (int64, error) {
	prefix := SecretPrefix(resourceID)
	l := s.writeLock(resourceID)
	l.Lock()
	defer l.Unlock()
	for range 16 {
		head, err := s.head(ctx, resourceID)
		if err != nil {
			return 0, err
		}
		next := head + 1
		key := secretKey(resourceID, next)
		sealed, err := s.sealer.Seal(key, value)
		if err != nil {
			return 0, fmt.Errorf("etcdstore: seal the value of %s: %w", resourceID, err)
		}
		ops := []clientv3.Op{
			clientv3.OpPut(key, string(sealed)),
			AuditOp(time.Now(), "secret-updated", map[string]any{"resource": resourceID, "version": next, "by": by}),
		}
		if keepFrom := next - int64(s.c.VersionsKept) + 1; keepFrom > 1 {
			ops = append(ops, clientv3.OpDelete(prefix, clientv3.WithRange(secretKey(resourceID, keepFrom))))
		}
		txn, err := s.writer().Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(ops...).Commit()
		if err != nil {
			return 0, fmt.Errorf("etcdstore: store the value of %s: %w", resourceID, err)
		}
		if txn.Succeeded {
			s.notify(resourceID)
			return next, nil
		}
	}
	return 0, fmt.Errorf("etcdstore: the value of %s kept changing under concurrent writes; try again", resourceID)
}

// head returns the resource's latest version number, 0 without a value.
func (s *Secrets) head(ctx context.Context, resourceID string) (int64, error) {
	prefix := SecretPrefix(resourceID)
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return 0, fmt.Errorf("etcdstore: read the versions of %s: %w", resourceID, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return parseVersion(prefix, string(resp.Kvs[0].Key))
}

func parseVersion(prefix, key string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(key, prefix), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("etcdstore: secret key %s is not a version key", key)
	}
	return n, nil
}

// Get returns the resource's value at version (0: the latest) and that
// version's number, or a *MissingSecretError.
func (s *Secrets) Get(ctx context.Context, resourceID string, version int64) ([]byte, int64, error) {
	if s.cache != nil {
		if kv, ok := s.cache.get(resourceID, version, s.c.Revision()); ok {
			return s.openKV(resourceID, kv.key, kv.sealed)
		}
	}
	op := s.getOp(resourceID, version)
	resp, err := s.cli.Do(ctx, op)
	if err != nil {
		return nil, 0, fmt.Errorf("etcdstore: read the value of %s: %w", resourceID, err)
	}
	g := resp.Get()
	if s.cache != nil && g != nil && len(g.Kvs) > 0 {
		s.cache.put(resourceID, version, g.Header.GetRevision(), string(g.Kvs[0].Key), g.Kvs[0].Value)
	}
	return s.open(resourceID, version, g)
}

// Versions returns the version numbers kept of a resource's value, oldest
// first.
func (s *Secrets) Versions(ctx context.Context, resourceID string) ([]int64, error) {
	prefix := SecretPrefix(resourceID)
	resp, err := s.cli.Get(ctx, prefix, append(s.readOpts(), clientv3.WithPrefix(), clientv3.WithKeysOnly())...)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: read the versions of %s: %w", resourceID, err)
	}
	out := make([]int64, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v, err := parseVersion(prefix, string(kv.Key))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Secrets) getOp(resourceID string, version int64) clientv3.Op {
	if version > 0 {
		return clientv3.OpGet(secretKey(resourceID, version), s.readOpts()...)
	}
	return clientv3.OpGet(SecretPrefix(resourceID), append(s.readOpts(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))...)
}

// readOpts are the options of every read (SecretsConfig.Serializable).
func (s *Secrets) readOpts() []clientv3.OpOption {
	if s.c.Serializable {
		return []clientv3.OpOption{clientv3.WithSerializable()}
	}
	return nil
}

func (s *Secrets) open(resourceID string, version int64, resp *clientv3.GetResponse) ([]byte, int64, error) {
	if resp == nil || len(resp.Kvs) == 0 {
		return nil, 0, &MissingSecretError{ResourceID: resourceID, Version: version}
	}
	return s.openKV(resourceID, string(resp.Kvs[0].Key), resp.Kvs[0].Value)
}

func (s *Secrets) openKV(resourceID, key string, sealed []byte) ([]byte, int64, error) {
	v, err := parseVersion(SecretPrefix(resourceID), key)
	if err != nil {
		return nil, 0, err
	}
	value, err := s.sealer.Open(key, sealed)
	if err != nil {
		return nil, 0, fmt.Errorf("etcdstore: open the value of %s version %d (is data.key the cluster's?): %w", resourceID, v, err)
	}
	return value, v, nil
}

// Bounds of the value cache (SecretsConfig.Revision).
const (
	cacheMaxEntries = 4096
	cacheMaxBytes   = 16 << 20
)

// valueCache holds sealed values read at one revision of a single-member
// etcd. A read at a later revision starts it afresh; a lookup at any
// other revision misses. So an entry is served only while nothing can
// have changed since it was read, and the cache needs no invalidation by
// key: the revision moving is the invalidation. Values stay sealed (as
// stored) and are opened on each read, so no plaintext is kept.
type valueCache struct {
	mu      sync.RWMutex
	rev     int64
	entries map[valueKey]sealedKV
	bytes   int
}

type valueKey struct {
	resourceID string
	version    int64 // 0: the latest
}

type sealedKV struct {
	key    string
	sealed []byte
}

func (c *valueCache) get(resourceID string, version, rev int64) (sealedKV, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if rev != c.rev {
		return sealedKV{}, false
	}
	kv, ok := c.entries[valueKey{resourceID, version}]
	return kv, ok
}

func (c *valueCache) put(resourceID string, version, rev int64, key string, sealed []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case rev < c.rev:
		return // read before a change the cache has already seen
	case rev > c.rev:
		c.rev, c.entries, c.bytes = rev, make(map[valueKey]sealedKV), 0
	}
	n := len(key) + len(sealed)
	if len(c.entries) >= cacheMaxEntries || c.bytes+n > cacheMaxBytes {
		return
	}
	c.entries[valueKey{resourceID, version}] = sealedKV{key: key, sealed: sealed}
	c.bytes += n
}

// GetMany returns the latest value of each resource, read at one etcd
// revision, or a *MissingSecretError for the first resource without one.
func (s *Secrets) GetMany(ctx context.Context, resourceIDs []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(resourceIDs))
	// One transaction reads every value at the same revision; etcd bounds
	// the operations of one transaction, so large batches are split.
	const perTxn = 100
	for start := 0; start < len(resourceIDs); start += perTxn {
		ids := resourceIDs[start:min(start+perTxn, len(resourceIDs))]
		ops := make([]clientv3.Op, len(ids))
		for i, id := range ids {
			ops[i] = s.getOp(id, 0)
		}
		txn, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("etcdstore: read %d values: %w", len(ids), err)
		}
		for i, id := range ids {
			v, _, err := s.open(id, 0, (*clientv3.GetResponse)(txn.Responses[i].GetResponseRange()))
			if err != nil {
				return nil, err
			}
			out[id] = v
		}
	}
	return out, nil
}

// Run watches every value until ctx ends and tells the OnChange functions
// what changed. When the watch has to start again (etcd compacted past it,
// or the connection to a leader was lost), they are told that everything
// may have changed.
func (s *Secrets) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := s.watch(ctx); err != nil && ctx.Err() == nil {
			s.c.Logger.Warn("watch of secret values restarts", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

func (s *Secrets) watch(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, secretPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, secretPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	// Anything cached before this point may predate a change the watch
	// will not report.
	s.notify("")
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, ev := range wr.Events {
			if id, ok := resourceOfKey(string(ev.Kv.Key)); ok && !seen[id] {
				seen[id] = true
				s.notify(id)
			}
		}
	}
	return ctx.Err()
}

// VersionsOf returns the kept version numbers of many resources' values at
// once, oldest first, leaving out resources without a value: one keys-only
// read of every value when there are many resources (a resource listing),
// one read each when there are few.
func (s *Secrets) VersionsOf(ctx context.Context, resourceIDs []string) (map[string][]int64, error) {
	out := make(map[string][]int64, len(resourceIDs))
	if len(resourceIDs) <= versionsOfSingleReads {
		for _, id := range resourceIDs {
			vs, err := s.Versions(ctx, id)
			if err != nil {
				return nil, err
			}
			if len(vs) > 0 {
				out[id] = vs
			}
		}
		return out, nil
	}
	want := make(map[string]bool, len(resourceIDs))
	for _, id := range resourceIDs {
		want[id] = true
	}
	resp, err := s.cli.Get(ctx, secretPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("etcdstore: read secret versions: %w", err)
	}
	for _, kv := range resp.Kvs {
		id, ok := resourceOfKey(string(kv.Key))
		if !ok || !want[id] {
			continue
		}
		v, err := parseVersion(SecretPrefix(id), string(kv.Key))
		if err != nil {
			return nil, err
		}
		out[id] = append(out[id], v)
	}
	return out, nil
}

// versionsOfSingleReads is how many resources VersionsOf reads one by one
// before it reads every value's key at once instead.
const versionsOfSingleReads = 32
