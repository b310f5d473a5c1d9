package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/token"
)

// Key layout of authentication state. Credentials hold only hashes; signing
// keys are sealed under the data key.
const (
	credentialPrefix = "/sower/authn/credentials/"
	// SigningKeyPrefix holds the token signing keys, sealed under
	// token.KeyAADPrefix+<kid> (not their key path).
	SigningKeyPrefix = "/sower/authn/signing-keys/"
	// PepperKey holds the API-key hashing pepper, sealed.
	PepperKey = "/sower/authn/pepper"
)

// Credentials is apikey.Store over etcd: one JSON record per role.
type Credentials struct {
	cli *clientv3.Client
	// w, when set (FenceWrites), is the client writes go through.
	w atomic.Pointer[clientv3.Client]
}

// NewCredentials returns the credential store.
func NewCredentials(cli *clientv3.Client) *Credentials { return &Credentials{cli: cli} }

// FenceWrites sends every write of the store (a rotated API key, a changed
// password) through w from now on: the election's FencedClient, so that
// only the Leader in its term changes a credential. The admin's first key
// is written before the election runs, on the plain client.
func (s *Credentials) FenceWrites(w *clientv3.Client) { s.w.Store(w) }

func (s *Credentials) writer() *clientv3.Client {
	if w := s.w.Load(); w != nil {
		return w
	}
	return s.cli
}

// CredentialKey is the etcd key of a role's credential. The policy store
// deletes it in the same transaction that deletes the role.
func CredentialKey(roleID string) string { return credentialPrefix + roleID }

// Credential returns the role's credential or an error matching
// apikey.ErrNotFound.
func (s *Credentials) Credential(ctx context.Context, roleID string) (*apikey.Credential, error) {
	resp, err := s.cli.Get(ctx, CredentialKey(roleID))
	if err != nil {
		return nil, fmt.Errorf("etcdstore: read credential: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, apikey.ErrNotFound
	}
	var c apikey.Credential
	if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
		return nil, fmt.Errorf("etcdstore: credential record of %q is corrupt: %w", roleID, err)
	}
	return &c, nil
}

// UpdateCredential applies fn to the current credential in a transaction
// that retries when another writer got in between.
func (s *Credentials) UpdateCredential(ctx context.Context, roleID string, fn func(*apikey.Credential) error) error {
	key := CredentialKey(roleID)
	for range 16 {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("etcdstore: read credential: %w", err)
		}
		c := apikey.Credential{RoleID: roleID}
		var rev int64
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
				return fmt.Errorf("etcdstore: credential record of %q is corrupt: %w", roleID, err)
			}
		}
		if err := fn(&c); err != nil {
			return err
		}
		raw, err := json.Marshal(&c)
		if err != nil {
			return err
		}
		txn, err := s.writer().Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(raw))).Commit()
		if err != nil {
			return fmt.Errorf("etcdstore: write credential: %w", err)
		}
		if txn.Succeeded {
			return nil
		}
	}
	return errors.New("etcdstore: credential kept changing under concurrent updates; try again")
}

// SigningKeys is token.KeyStore over etcd.
type SigningKeys struct{ cli *clientv3.Client }

// NewSigningKeys returns the signing-key store.
func NewSigningKeys(cli *clientv3.Client) *SigningKeys { return &SigningKeys{cli: cli} }

// Keys returns every stored key.
func (s *SigningKeys) Keys(ctx context.Context) ([]token.SealedKey, error) {
	resp, err := s.cli.Get(ctx, SigningKeyPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdstore: read signing keys: %w", err)
	}
	out := make([]token.SealedKey, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, token.SealedKey{KID: strings.TrimPrefix(string(kv.Key), SigningKeyPrefix), Sealed: kv.Value})
	}
	return out, nil
}

// AddKey stores a new key; it refuses to overwrite an existing id.
func (s *SigningKeys) AddKey(ctx context.Context, k token.SealedKey) error {
	key := SigningKeyPrefix + k.KID
	txn, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(k.Sealed))).Commit()
	if err != nil {
		return fmt.Errorf("etcdstore: store signing key: %w", err)
	}
	if !txn.Succeeded {
		return fmt.Errorf("etcdstore: signing key %s already exists", k.KID)
	}
	return nil
}

// DeleteKey removes a key.
func (s *SigningKeys) DeleteKey(ctx context.Context, kid string) error {
	if _, err := s.cli.Delete(ctx, SigningKeyPrefix+kid); err != nil {
		return fmt.Errorf("etcdstore: delete signing key: %w", err)
	}
	return nil
}

var (
	_ apikey.Store   = (*Credentials)(nil)
	_ token.KeyStore = (*SigningKeys)(nil)
)
