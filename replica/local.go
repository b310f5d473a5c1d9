package replica

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// AppliedKey is where the local copy records the source revision it
// reflects. It is outside /sower/, so no store of the node reads it as
// data, and it commits in the same transaction as what it describes.
const AppliedKey = "/sower-replica/applied"

// LocalConfig tunes a LocalStore.
type LocalConfig struct {
	// Rewrite, when set, may change a value before it is stored; local
	// reads the copy as it is just before the write (the policy store's
	// guard names a revision of the store it is in, which a copy must
	// translate into its own).
	Rewrite func(key string, value []byte, local LocalView) []byte
	// Rewrites, when set, names the keys Rewrite may change; others are
	// stored as they come without calling it, and a batch of revisions
	// (ApplyBatch) is one transaction as long as none of them puts one.
	// Without it every revision is its own transaction when Rewrite is
	// set (Rewrite reads the copy as it is just before that revision).
	Rewrites func(key string) bool
	// FirstBatch is how many keys one transaction of the very first load
	// holds (default 10,000); nothing serves before it ends, so it need
	// not be one transaction. Later snapshots are one transaction.
	FirstBatch int
	// Bulk, when set, writes the pages of a first load (Loader) straight
	// into the copy's store instead of through transactions.
	Bulk BulkWriter
	// Direct, when set, writes each applied revision (Apply, ApplyBatch)
	// straight into the copy's store, one revision as a transaction would
	// make, without the transaction's trip through the consensus log.
	Direct DirectWriter
}

// DirectWriter writes one revision into the local copy's store outside
// its consensus log (cluster.Etcd's WriteDirect on a rebuildable private
// etcd). The Replica's loop is the only writer of the replicated keys.
type DirectWriter interface {
	WriteDirect(deletes, keys []string, values [][]byte) (int64, error)
}

// BulkWriter writes keys into the local copy's store outside its
// consensus log, as one revision (cluster.Etcd's BulkPut on a
// rebuildable private etcd): a first load costs a third of the CPU.
type BulkWriter interface {
	BulkPut(keys []string, values [][]byte) (int64, error)
}

// LocalStore is the Follower's copy in its private etcd: the same keys as
// the source, so the node's stores (server/etcdstore) read it unchanged.
type LocalStore struct {
	cli *clientv3.Client
	c   LocalConfig
}

// NewLocalStore returns the store over the private etcd's client.
func NewLocalStore(cli *clientv3.Client, c LocalConfig) *LocalStore {
	if c.FirstBatch <= 0 {
		c.FirstBatch = 10_000
	}
	return &LocalStore{cli: cli, c: c}
}

var _ Store = (*LocalStore)(nil)

// Applied implements Store.
func (s *LocalStore) Applied(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, AppliedKey)
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("replica: %s holds %q, not a revision", AppliedKey, resp.Kvs[0].Value)
	}
	return n, nil
}

// LocalView reads the local copy during a Rewrite.
type LocalView interface {
	// Revision is the copy's own etcd revision.
	Revision() int64
	// Get returns the copy's value at key, nil when absent.
	Get(key string) []byte
}

type localView struct {
	ctx context.Context
	cli *clientv3.Client
}

func (v localView) Revision() int64 {
	resp, err := v.cli.Get(v.ctx, AppliedKey, clientv3.WithCountOnly())
	if err != nil {
		return 0
	}
	return resp.Header.Revision
}

func (v localView) Get(key string) []byte {
	resp, err := v.cli.Get(v.ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0].Value
}

func (s *LocalStore) put(ctx context.Context, kv KV) clientv3.Op {
	v := kv.Value
	if s.rewrites(kv.Key) {
		v = s.c.Rewrite(kv.Key, v, localView{ctx: ctx, cli: s.cli})
	}
	return clientv3.OpPut(kv.Key, string(v))
}

func (s *LocalStore) rewrites(key string) bool {
	return s.c.Rewrite != nil && (s.c.Rewrites == nil || s.c.Rewrites(key))
}

// Apply implements Store: one transaction with the cursor.
func (s *LocalStore) Apply(ctx context.Context, c Change) error {
	if s.c.Direct != nil {
		w := newWriteSet(len(c.Puts) + len(c.Deletes) + 1)
		for _, k := range c.Deletes {
			w.del(k)
		}
		for _, kv := range c.Puts {
			v := kv.Value
			if s.rewrites(kv.Key) {
				v = s.c.Rewrite(kv.Key, v, localView{ctx: ctx, cli: s.cli})
			}
			w.put(kv.Key, v)
		}
		return s.writeDirect(w, c.Revision, c.Revision)
	}
	ops := make([]clientv3.Op, 0, len(c.Puts)+len(c.Deletes)+1)
	for _, k := range c.Deletes {
		ops = append(ops, clientv3.OpDelete(k))
	}
	for _, kv := range c.Puts {
		ops = append(ops, s.put(ctx, kv))
	}
	ops = append(ops, clientv3.OpPut(AppliedKey, strconv.FormatInt(c.Revision, 10)))
	if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("replica: apply revision %d locally: %w", c.Revision, err)
	}
	return nil
}

// writeSet is what one local revision writes, each key once (the last
// write of it wins): etcd refuses a transaction that writes a key twice.
type writeSet struct {
	keys   []string
	values [][]byte // nil: delete
	at     map[string]int
}

func newWriteSet(n int) *writeSet {
	return &writeSet{keys: make([]string, 0, n), values: make([][]byte, 0, n)}
}

func (w *writeSet) set(key string, value []byte) {
	if w.at != nil {
		if i, ok := w.at[key]; ok {
			w.values[i] = value
			return
		}
		w.at[key] = len(w.keys)
	}
	w.keys, w.values = append(w.keys, key), append(w.values, value)
}

func (w *writeSet) put(key string, value []byte) {
	if value == nil {
		value = []byte{}
	}
	w.set(key, value)
}

func (w *writeSet) del(key string) { w.set(key, nil) }

// writeDirect writes w and the cursor at revision to as one revision of
// the copy's store.
func (s *LocalStore) writeDirect(w *writeSet, from, to int64) error {
	var deletes []string
	keys, values := make([]string, 0, len(w.keys)+1), make([][]byte, 0, len(w.keys)+1)
	for i, k := range w.keys {
		if w.values[i] == nil {
			deletes = append(deletes, k)
		} else {
			keys, values = append(keys, k), append(values, w.values[i])
		}
	}
	keys, values = append(keys, AppliedKey), append(values, strconv.AppendInt(nil, to, 10))
	if _, err := s.c.Direct.WriteDirect(deletes, keys, values); err != nil {
		if from == to {
			return fmt.Errorf("replica: apply revision %d locally: %w", to, err)
		}
		return fmt.Errorf("replica: apply revisions %d-%d locally: %w", from, to, err)
	}
	return nil
}

var _ Batcher = (*LocalStore)(nil)

// ApplyBatch implements Batcher: consecutive revisions in one transaction
// with the cursor at the last; a key several of them write is written
// once, as the last of them left it. A revision that puts a key Rewrite
// may change is applied on its own (Rewrite reads the copy as it is just
// before it), between transactions of the others.
func (s *LocalStore) ApplyBatch(ctx context.Context, cs []Change) error {
	from := 0
	for i := range cs {
		if !s.rewritesAny(cs[i]) {
			continue
		}
		if err := s.applyMerged(ctx, cs[from:i]); err != nil {
			return err
		}
		if err := s.Apply(ctx, cs[i]); err != nil {
			return err
		}
		from = i + 1
	}
	return s.applyMerged(ctx, cs[from:])
}

func (s *LocalStore) rewritesAny(c Change) bool {
	for _, kv := range c.Puts {
		if s.rewrites(kv.Key) {
			return true
		}
	}
	return false
}

// applyMerged writes cs, none of which Rewrite changes, in one
// transaction: etcd refuses a transaction that writes a key twice, so
// each key is written once, by the last revision that wrote it.
func (s *LocalStore) applyMerged(ctx context.Context, cs []Change) error {
	switch len(cs) {
	case 0:
		return nil
	case 1:
		return s.Apply(ctx, cs[0])
	}
	n := 1
	for _, c := range cs {
		n += len(c.Puts) + len(c.Deletes)
	}
	w := newWriteSet(n)
	w.at = make(map[string]int, n)
	for _, c := range cs {
		for _, k := range c.Deletes {
			w.del(k)
		}
		for _, kv := range c.Puts {
			w.put(kv.Key, kv.Value)
		}
	}
	last := cs[len(cs)-1].Revision
	if s.c.Direct != nil {
		return s.writeDirect(w, cs[0].Revision, last)
	}
	ops := make([]clientv3.Op, 0, len(w.keys)+1)
	for i, k := range w.keys {
		if w.values[i] == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(w.values[i])))
		}
	}
	ops = append(ops, clientv3.OpPut(AppliedKey, strconv.FormatInt(last, 10)))
	if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("replica: apply revisions %d-%d locally: %w", cs[0].Revision, last, err)
	}
	return nil
}

// Replace implements Store. It writes only the difference between the
// copy and kvs, in one transaction with the cursor, so the copy's own
// watches see a resynchronisation as one revision that changed what
// changed.
func (s *LocalStore) Replace(ctx context.Context, rev int64, kvs []KV) error {
	applied, err := s.Applied(ctx)
	if err != nil {
		return err
	}
	want := make(map[string][]byte, len(kvs))
	for _, kv := range kvs {
		if Allowed(kv.Key) {
			want[kv.Key] = kv.Value
		}
	}
	var ops []clientv3.Op
	for _, r := range Replicated {
		if err := s.scan(ctx, r, func(key string, value []byte) {
			nv, ok := want[key]
			switch {
			case !ok:
				ops = append(ops, clientv3.OpDelete(key))
			case bytes.Equal(nv, value):
				delete(want, key) // unchanged
			}
		}); err != nil {
			return err
		}
	}
	// clientv3.Op is large: grow once, not by doubling through
	// hundreds of thousands of them.
	ops = slices.Grow(ops, len(want)+1)
	for _, kv := range kvs {
		if _, ok := want[kv.Key]; ok {
			ops = append(ops, s.put(ctx, kv))
		}
	}
	cursor := clientv3.OpPut(AppliedKey, strconv.FormatInt(rev, 10))
	if applied == 0 {
		// Nothing serves from an empty copy: the first load may take
		// several transactions, the cursor last.
		for len(ops) > s.c.FirstBatch {
			if _, err := s.cli.Txn(ctx).Then(ops[:s.c.FirstBatch]...).Commit(); err != nil {
				return fmt.Errorf("replica: load the snapshot at %d: %w", rev, err)
			}
			ops = ops[s.c.FirstBatch:]
		}
	}
	if _, err := s.cli.Txn(ctx).Then(append(ops, cursor)...).Commit(); err != nil {
		return fmt.Errorf("replica: swap in the snapshot at %d: %w", rev, err)
	}
	return nil
}

var _ Loader = (*LocalStore)(nil)

// LoadStart implements Loader: it deletes every replicated key an
// interrupted load left (the cursor is not written until LoadEnd).
func (s *LocalStore) LoadStart(ctx context.Context, rev int64) error {
	ops := make([]clientv3.Op, 0, len(Replicated)+1)
	for _, r := range Replicated {
		if r.Prefix {
			ops = append(ops, clientv3.OpDelete(r.Key, clientv3.WithPrefix()))
		} else {
			ops = append(ops, clientv3.OpDelete(r.Key))
		}
	}
	ops = append(ops, clientv3.OpDelete(AppliedKey))
	if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("replica: clear the local copy for the snapshot at %d: %w", rev, err)
	}
	return nil
}

// loadTxnOps is how many keys one transaction of a first load writes.
// etcd traces every operation of a transaction and, when one takes over
// 100 ms, logs the trace step by step: 10,000-key transactions spent
// more time in that than in writing.
const loadTxnOps = 1000

// LoadPage implements Loader: one bulk write, or transactions of
// loadTxnOps keys.
func (s *LocalStore) LoadPage(ctx context.Context, kvs []KV) error {
	if s.c.Bulk != nil {
		keys, values := make([]string, 0, len(kvs)), make([][]byte, 0, len(kvs))
		for _, kv := range kvs {
			if !Allowed(kv.Key) {
				continue
			}
			v := kv.Value
			if s.rewrites(kv.Key) {
				v = s.c.Rewrite(kv.Key, v, localView{ctx: ctx, cli: s.cli})
			}
			keys, values = append(keys, kv.Key), append(values, v)
		}
		if _, err := s.c.Bulk.BulkPut(keys, values); err != nil {
			return fmt.Errorf("replica: write a snapshot page: %w", err)
		}
		return nil
	}
	ops := make([]clientv3.Op, 0, min(len(kvs), loadTxnOps))
	for i, kv := range kvs {
		if Allowed(kv.Key) {
			ops = append(ops, s.put(ctx, kv))
		}
		if len(ops) == loadTxnOps || i == len(kvs)-1 && len(ops) > 0 {
			if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				return fmt.Errorf("replica: write a snapshot page: %w", err)
			}
			ops = ops[:0]
		}
	}
	return nil
}

// LoadEnd implements Loader.
func (s *LocalStore) LoadEnd(ctx context.Context, rev int64) error {
	if _, err := s.cli.Put(ctx, AppliedKey, strconv.FormatInt(rev, 10)); err != nil {
		return fmt.Errorf("replica: record the snapshot at %d: %w", rev, err)
	}
	return nil
}

func (s *LocalStore) scan(ctx context.Context, r Rule, fn func(key string, value []byte)) error {
	key, end := r.Key, ""
	if r.Prefix {
		end = clientv3.GetPrefixRangeEnd(r.Key)
	}
	for {
		// Large pages: etcd counts the rest of the range on each one.
		opts := []clientv3.OpOption{clientv3.WithLimit(100_000)}
		if end != "" {
			opts = append(opts, clientv3.WithRange(end))
		}
		resp, err := s.cli.Get(ctx, key, opts...)
		if err != nil {
			return fmt.Errorf("replica: read the local copy: %w", err)
		}
		for _, kv := range resp.Kvs {
			fn(string(kv.Key), kv.Value)
		}
		if !resp.More || len(resp.Kvs) == 0 || end == "" {
			return nil
		}
		key = string(append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0))
	}
}
