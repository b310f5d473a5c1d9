package token

import (
	"context"
	"errors"
	"sort"
	"sync"
)

// MemKeyStore is an in-memory KeyStore, for tests and single-process tools.
// FailNext makes the next call fail, and Reads counts calls to Keys, so that
// tests can see the reload rate limit at work.
type MemKeyStore struct {
	mu       sync.Mutex
	keys     map[string][]byte
	failNext error
	reads    int
}

// NewMemKeyStore returns an empty MemKeyStore.
func NewMemKeyStore() *MemKeyStore { return &MemKeyStore{keys: make(map[string][]byte)} }

// FailNext makes the next call return err.
func (m *MemKeyStore) FailNext(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failNext = err
}

// Reads returns how many times Keys was called.
func (m *MemKeyStore) Reads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

func (m *MemKeyStore) takeFailure() error {
	err := m.failNext
	m.failNext = nil
	return err
}

// Keys implements KeyStore.
func (m *MemKeyStore) Keys(context.Context) ([]SealedKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if err := m.takeFailure(); err != nil {
		return nil, err
	}
	out := make([]SealedKey, 0, len(m.keys))
	for kid, b := range m.keys {
		out = append(out, SealedKey{KID: kid, Sealed: append([]byte(nil), b...)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KID < out[j].KID })
	return out, nil
}

// AddKey implements KeyStore.
func (m *MemKeyStore) AddKey(_ context.Context, k SealedKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.takeFailure(); err != nil {
		return err
	}
	if _, ok := m.keys[k.KID]; ok {
		return errors.New("token: key id already stored")
	}
	m.keys[k.KID] = append([]byte(nil), k.Sealed...)
	return nil
}

// DeleteKey implements KeyStore.
func (m *MemKeyStore) DeleteKey(_ context.Context, kid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.takeFailure(); err != nil {
		return err
	}
	delete(m.keys, kid)
	return nil
}
