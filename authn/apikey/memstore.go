package apikey

import (
	"context"
	"fmt"
	"sync"
)

// MemStore is an in-memory Store, for tests and single-process tools. The
// server keeps credentials in etcd.
type MemStore struct {
	mu sync.Mutex
	m  map[string]Credential
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{m: make(map[string]Credential)} }

// Credential implements Store.
func (s *MemStore) Credential(_ context.Context, roleID string) (*Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[roleID]
	if !ok {
		return nil, fmt.Errorf("role %q: %w", roleID, ErrNotFound)
	}
	return clone(c), nil
}

// UpdateCredential implements Store.
func (s *MemStore) UpdateCredential(_ context.Context, roleID string, fn func(*Credential) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[roleID]
	if !ok {
		c = Credential{RoleID: roleID}
	}
	n := clone(c)
	if err := fn(n); err != nil {
		return err
	}
	s.m[roleID] = *n
	return nil
}

func clone(c Credential) *Credential {
	c.APIKeyHash = append([]byte(nil), c.APIKeyHash...)
	c.PasswordHash = append([]byte(nil), c.PasswordHash...)
	return &c
}
