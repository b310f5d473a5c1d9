package pkitest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/sowerproject/sower/pki"
)

// MemStore is an in-memory pki.Store and pki.Swapper.
type MemStore struct {
	mu      sync.Mutex
	m       map[string][]byte
	nextErr error

	// BeforeSwap, if set, runs at the start of each CompareAndSwap, outside
	// the lock: a test uses it to write concurrently between a reader's Get
	// and its swap.
	BeforeSwap func(key string)
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{m: map[string][]byte{}} }

// FailNext makes the next operation return err.
func (s *MemStore) FailNext(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextErr = err
}

func (s *MemStore) takeErr() error {
	err := s.nextErr
	s.nextErr = nil
	return err
}

// Get implements pki.Store.
func (s *MemStore) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.takeErr(); err != nil {
		return nil, err
	}
	v, ok := s.m[key]
	if !ok {
		return nil, fmt.Errorf("key %q: %w", key, pki.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

// Put implements pki.Store.
func (s *MemStore) Put(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.takeErr(); err != nil {
		return err
	}
	s.m[key] = bytes.Clone(value)
	return nil
}

// CompareAndSwap implements pki.Swapper.
func (s *MemStore) CompareAndSwap(_ context.Context, key string, prev, next []byte) (bool, error) {
	if s.BeforeSwap != nil {
		s.BeforeSwap(key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.takeErr(); err != nil {
		return false, err
	}
	cur, ok := s.m[key]
	if !ok || !bytes.Equal(cur, prev) {
		return false, nil
	}
	s.m[key] = bytes.Clone(next)
	return true, nil
}

// Delete removes key.
func (s *MemStore) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

// Keys lists the stored keys, sorted.
func (s *MemStore) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.m))
}
