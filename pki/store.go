package pki

import "context"

// Store is the storage this package needs from its caller: bytes by key. The
// server backs it with etcd; tests use pkitest.MemStore.
//
// Keys are full etcd key paths and must reach etcd unchanged, because a
// sealed value is bound to the path it is stored under (it is the AAD): an
// adapter that prefixes or rewrites keys would make every value fail to open
// once the prefix changes.
type Store interface {
	// Get returns the value at key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put stores value at key, replacing any previous value.
	Put(ctx context.Context, key string, value []byte) error
}

// Swapper is an optional Store ability, found by type assertion. Rewrap uses
// it so that a write made between its read and its write is not lost; an
// etcd-backed Store implements it with a transaction comparing the value.
type Swapper interface {
	// CompareAndSwap stores next at key only if the current value equals
	// prev. It reports whether the swap happened.
	CompareAndSwap(ctx context.Context, key string, prev, next []byte) (bool, error)
}

// Sealer encrypts values with authenticated additional data. *Keyring
// implements it; the CA seals its keys with it before they reach the Store.
type Sealer interface {
	Seal(aad string, plaintext []byte) ([]byte, error)
	Open(aad string, sealed []byte) ([]byte, error)
}
