package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/authn/hostfactory"
)

// Key layout of host factory tokens:
//
//	/sower/authn/host-factory-tokens/<escaped host factory id>/<sha256 of the token>   the record
//	/sower/authn/host-factory-token-index/<sha256 of the token>                        the record's key
//
// The record is the token's (hostfactory.Token as JSON: expiration,
// networks, who made it); the token itself is never stored. Keying records
// by the host factory lets the policy store delete a factory's tokens with
// the factory, in the same transaction, as Conjur's foreign key does; the
// index finds a presented token in one read (an index entry whose record
// went with its factory finds nothing). Tokens are not replicated to
// Followers: they serve no writes.
const (
	hostFactoryTokenPrefix = "/sower/authn/host-factory-tokens/"
	hostFactoryIndexPrefix = "/sower/authn/host-factory-token-index/"
)

// ErrTooManyTokens is wrapped when a host factory would hold more than
// hostfactory.MaxTokensPerFactory live tokens.
var ErrTooManyTokens = errors.New("etcdstore: too many host factory tokens")

// HostFactoryTokenPrefix is the prefix of a host factory's tokens. Whoever
// deletes the host factory deletes this prefix with it.
func HostFactoryTokenPrefix(hostFactoryID string) string {
	return hostFactoryTokenPrefix + escapeSegment(hostFactoryID) + "/"
}

func hostFactoryTokenKey(t hostfactory.Token) string {
	return HostFactoryTokenPrefix(t.HostFactory) + t.Hash
}

// HostFactoryTokens keeps host factory tokens in etcd.
type HostFactoryTokens struct {
	cli *clientv3.Client
	// w, when set (FenceWrites), is the client writes go through.
	w atomic.Pointer[clientv3.Client]
}

// NewHostFactoryTokens returns the store.
func NewHostFactoryTokens(cli *clientv3.Client) *HostFactoryTokens {
	return &HostFactoryTokens{cli: cli}
}

// FenceWrites sends every write through w from now on: the election's
// FencedClient, so that only the current Leader's term creates or revokes
// tokens.
func (s *HostFactoryTokens) FenceWrites(w *clientv3.Client) { s.w.Store(w) }

func (s *HostFactoryTokens) writer() *clientv3.Client {
	if w := s.w.Load(); w != nil {
		return w
	}
	return s.cli
}

// Create stores tokens of one host factory in one transaction, deleting the
// factory's expired tokens in it. It refuses (ErrTooManyTokens) when the
// factory would hold more than hostfactory.MaxTokensPerFactory live tokens.
func (s *HostFactoryTokens) Create(ctx context.Context, toks []hostfactory.Token, now time.Time) error {
	if len(toks) == 0 {
		return nil
	}
	hf := toks[0].HostFactory
	old, err := s.List(ctx, hf)
	if err != nil {
		return err
	}
	var ops []clientv3.Op
	live := 0
	for _, t := range old {
		if t.Expired(now) {
			ops = append(ops, clientv3.OpDelete(hostFactoryTokenKey(t)), clientv3.OpDelete(hostFactoryIndexPrefix+t.Hash))
		} else {
			live++
		}
	}
	if live+len(toks) > hostfactory.MaxTokensPerFactory {
		return fmt.Errorf("%w: %s holds %d live tokens; %d more would pass the limit of %d per host factory (revoke some, or let them expire)",
			ErrTooManyTokens, hf, live, len(toks), hostfactory.MaxTokensPerFactory)
	}
	for _, t := range toks {
		if t.HostFactory != hf {
			return fmt.Errorf("etcdstore: tokens of %s and %s in one Create", hf, t.HostFactory)
		}
		raw, err := json.Marshal(t)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(hostFactoryTokenKey(t), string(raw)), clientv3.OpPut(hostFactoryIndexPrefix+t.Hash, hostFactoryTokenKey(t)))
	}
	ops = append(ops, AuditOp(now, "host-factory-tokens-created", map[string]any{"host_factory": hf, "count": len(toks), "by": toks[0].CreatedBy}))
	if _, err := s.writer().Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("etcdstore: store host factory tokens: %w", err)
	}
	return nil
}

// Find returns the token whose hash is hash, or an error matching
// hostfactory.ErrNotFound.
func (s *HostFactoryTokens) Find(ctx context.Context, hash string) (hostfactory.Token, error) {
	if len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return hostfactory.Token{}, hostfactory.ErrNotFound
	}
	resp, err := s.cli.Get(ctx, hostFactoryIndexPrefix+hash)
	if err != nil {
		return hostfactory.Token{}, fmt.Errorf("etcdstore: read host factory token index: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return hostfactory.Token{}, hostfactory.ErrNotFound
	}
	key := string(resp.Kvs[0].Value)
	if !strings.HasPrefix(key, hostFactoryTokenPrefix) || !strings.HasSuffix(key, "/"+hash) {
		return hostfactory.Token{}, fmt.Errorf("etcdstore: host factory token index entry %s is corrupt", hash)
	}
	return s.get(ctx, key)
}

func (s *HostFactoryTokens) get(ctx context.Context, key string) (hostfactory.Token, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return hostfactory.Token{}, fmt.Errorf("etcdstore: read host factory token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return hostfactory.Token{}, hostfactory.ErrNotFound
	}
	return decodeToken(key, resp.Kvs[0].Value)
}

func decodeToken(key string, raw []byte) (hostfactory.Token, error) {
	var t hostfactory.Token
	if err := json.Unmarshal(raw, &t); err != nil {
		return hostfactory.Token{}, fmt.Errorf("etcdstore: host factory token record %s is corrupt: %w", key, err)
	}
	t.Hash = key[strings.LastIndexByte(key, '/')+1:]
	return t, nil
}

// Delete revokes a token; one already gone is hostfactory.ErrNotFound.
func (s *HostFactoryTokens) Delete(ctx context.Context, t hostfactory.Token, by string) error {
	key := hostFactoryTokenKey(t)
	txn, err := s.writer().Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
		Then(clientv3.OpDelete(key), clientv3.OpDelete(hostFactoryIndexPrefix+t.Hash), AuditOp(time.Now(), "host-factory-token-revoked", map[string]any{"host_factory": t.HostFactory, "by": by})).
		Commit()
	if err != nil {
		return fmt.Errorf("etcdstore: revoke host factory token: %w", err)
	}
	if !txn.Succeeded {
		return hostfactory.ErrNotFound
	}
	return nil
}

// List returns a host factory's tokens (expired ones included until the
// next Create prunes them), oldest first.
func (s *HostFactoryTokens) List(ctx context.Context, hostFactoryID string) ([]hostfactory.Token, error) {
	resp, err := s.cli.Get(ctx, HostFactoryTokenPrefix(hostFactoryID), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdstore: read host factory tokens: %w", err)
	}
	out := make([]hostfactory.Token, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		t, err := decodeToken(string(kv.Key), kv.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b hostfactory.Token) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Hash, b.Hash)
	})
	return out, nil
}
