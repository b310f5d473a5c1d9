package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/pki"
)

// KV is a byte store over etcd: pki.Store and pki.Swapper.
type KV struct{ cli *clientv3.Client }

// NewKV returns a KV over cli.
func NewKV(cli *clientv3.Client) *KV { return &KV{cli: cli} }

// Get returns the value at key or an error wrapping pki.ErrNotFound.
func (s *KV) Get(ctx context.Context, key string) ([]byte, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%s: %w", key, pki.ErrNotFound)
	}
	return resp.Kvs[0].Value, nil
}

// Put stores value at key.
func (s *KV) Put(ctx context.Context, key string, value []byte) error {
	if _, err := s.cli.Put(ctx, key, string(value)); err != nil {
		return fmt.Errorf("etcdstore: put %s: %w", key, err)
	}
	return nil
}

// CompareAndSwap stores next at key only if the current value is prev.
func (s *KV) CompareAndSwap(ctx context.Context, key string, prev, next []byte) (bool, error) {
	cmp := clientv3.Compare(clientv3.Value(key), "=", string(prev))
	if prev == nil {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(next))).Commit()
	if err != nil {
		return false, fmt.Errorf("etcdstore: swap %s: %w", key, err)
	}
	return resp.Succeeded, nil
}

var (
	_ pki.Store   = (*KV)(nil)
	_ pki.Swapper = (*KV)(nil)
)
