package apikey

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode"

	"github.com/sowerproject/sower/authn"
)

var (
	// ErrNotFound is what a Store returns when a role has no credential.
	ErrNotFound = errors.New("apikey: no credential for this role")
	// ErrStoreRequired is returned by New without a Store.
	ErrStoreRequired = errors.New("apikey: Store is required")
	// ErrWeakPassword is returned by SetPassword for a password that does not
	// meet Conjur's complexity rules.
	ErrWeakPassword = errors.New("apikey: password must be 12 to 128 characters with at least 2 upper-case letters, 2 lower-case letters, 1 digit and 1 special character")
	// ErrEmptyRoleID is returned for an empty role id.
	ErrEmptyRoleID = errors.New("apikey: role id is empty")
)

// Credential is what is stored for a role. It holds no secret: the API key
// only as a keyed hash, the password only as a bcrypt hash of a keyed hash.
type Credential struct {
	RoleID string `json:"role_id"`
	// Scheme names how APIKeyHash was made (SchemeHMACSHA256).
	Scheme     string `json:"scheme,omitempty"`
	APIKeyHash []byte `json:"api_key_hash,omitempty"`
	// PasswordHash is empty for hosts and for users without a password.
	PasswordHash []byte    `json:"password_hash,omitempty"`
	Rotated      time.Time `json:"rotated"`
}

// Store keeps credentials; the server implements it on etcd.
type Store interface {
	// Credential returns the role's credential, or an error matching
	// ErrNotFound.
	Credential(ctx context.Context, roleID string) (*Credential, error)
	// UpdateCredential atomically reads the role's credential (a Credential
	// with only RoleID set when there is none), applies fn, and writes the
	// result back unless fn fails. fn may be called more than once (an etcd
	// transaction that retries).
	UpdateCredential(ctx context.Context, roleID string, fn func(*Credential) error) error
}

// Config holds the required dependencies of a Manager.
type Config struct {
	Store Store
	// Pepper is the cluster-wide secret keying the hashes, at least
	// PepperBytes long (see NewPepper, OpenPepper).
	Pepper []byte
}

// Option changes an optional behaviour of a Manager.
type Option func(*Manager)

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }

// WithRandom replaces crypto/rand as the source of new keys (tests only).
func WithRandom(r io.Reader) Option { return func(m *Manager) { m.rand = r } }

// Method says which secret a Login matched.
type Method string

// The secrets Login accepts.
const (
	MethodAPIKey   Method = "api_key"
	MethodPassword Method = "password"
)

// Manager issues and checks API keys and passwords.
type Manager struct {
	store Store
	h     hasher
	now   func() time.Time
	rand  io.Reader
	// dummy is checked against when a role is unknown, so that unknown and
	// known roles cost the same.
	dummy []byte
}

// New returns a Manager.
func New(cfg Config, opts ...Option) (*Manager, error) {
	if cfg.Store == nil {
		return nil, ErrStoreRequired
	}
	if len(cfg.Pepper) < PepperBytes {
		return nil, ErrPepperTooShort
	}
	m := &Manager{store: cfg.Store, h: hasher{pepper: append([]byte(nil), cfg.Pepper...)}, now: time.Now}
	for _, o := range opts {
		o(m)
	}
	m.dummy = m.h.apiKeyHash("", "")
	return m, nil
}

// Rotate gives the role a new API key, replacing any previous one (which stops
// working at once), and returns it. This is also how a role gets its first
// key. The key is returned only here: show it to its owner and forget it.
func (m *Manager) Rotate(ctx context.Context, roleID string) (string, error) {
	if roleID == "" {
		return "", ErrEmptyRoleID
	}
	key, err := Generate(m.rand)
	if err != nil {
		return "", err
	}
	if err := m.setKey(ctx, roleID, key); err != nil {
		return "", err
	}
	return key, nil
}

// SetAPIKey stores a given API key for the role, for importing keys from an
// existing Conjur; it must be at least 32 characters.
func (m *Manager) SetAPIKey(ctx context.Context, roleID, key string) error {
	if roleID == "" {
		return ErrEmptyRoleID
	}
	if len(key) < 32 {
		return fmt.Errorf("apikey: an imported API key must be at least 32 characters, this one has %d", len(key))
	}
	return m.setKey(ctx, roleID, key)
}

func (m *Manager) setKey(ctx context.Context, roleID, key string) error {
	sum := m.h.apiKeyHash(roleID, key)
	now := m.now().UTC()
	err := m.store.UpdateCredential(ctx, roleID, func(c *Credential) error {
		c.RoleID = roleID
		c.Scheme = SchemeHMACSHA256
		c.APIKeyHash = sum
		c.Rotated = now
		return nil
	})
	if err != nil {
		return fmt.Errorf("apikey: store API key of %q: %w", roleID, err)
	}
	return nil
}

// Verify checks an API key in constant time. It returns nil, an
// authn.Refusal (unknown_identity, bad_credentials), or a store error.
func (m *Manager) Verify(ctx context.Context, roleID, key string) error {
	c, err := m.credential(ctx, roleID)
	if err != nil {
		// Spend the same HMAC on an unknown role as on a known one.
		equalHash(m.h.apiKeyHash(roleID, key), m.dummy)
		return err
	}
	if !m.keyMatches(c, key) {
		return authn.Refuse(authn.ReasonBadCredentials, "API key of %q does not match", roleID)
	}
	return nil
}

func (m *Manager) keyMatches(c *Credential, key string) bool {
	sum := m.h.apiKeyHash(c.RoleID, key)
	return c.Scheme == SchemeHMACSHA256 && len(c.APIKeyHash) > 0 && equalHash(sum, c.APIKeyHash)
}

func (m *Manager) credential(ctx context.Context, roleID string) (*Credential, error) {
	c, err := m.store.Credential(ctx, roleID)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, authn.Refuse(authn.ReasonUnknownIdentity, "no credential for %q", roleID)
	case err != nil:
		return nil, fmt.Errorf("apikey: read credential of %q: %w", roleID, err)
	case c == nil || c.RoleID != roleID:
		return nil, authn.Refuse(authn.ReasonUnknownIdentity, "credential record does not belong to %q", roleID)
	}
	return c, nil
}

// Login checks a secret that may be the role's API key or its password, as
// Conjur's GET /authn/{account}/login does with basic auth, and says which one
// matched. A password check costs a bcrypt (about a quarter second), so
// callers rate-limit failures with authn.Limiter.
//
// Only the key's hash is stored, so a password login cannot return the
// current API key; the server decides whether to rotate it (see docs/authn.md).
func (m *Manager) Login(ctx context.Context, roleID, secret string) (Method, error) {
	c, err := m.credential(ctx, roleID)
	if err != nil {
		equalHash(m.h.apiKeyHash(roleID, secret), m.dummy)
		return "", err
	}
	if m.keyMatches(c, secret) {
		return MethodAPIKey, nil
	}
	if len(c.PasswordHash) > 0 && m.h.checkPassword(c.PasswordHash, roleID, secret) {
		return MethodPassword, nil
	}
	return "", authn.Refuse(authn.ReasonBadCredentials, "neither the API key nor the password of %q matches", roleID)
}

// SetPassword sets a user's password after checking Conjur's complexity rules.
func (m *Manager) SetPassword(ctx context.Context, roleID, password string) error {
	if roleID == "" {
		return ErrEmptyRoleID
	}
	if err := ValidatePassword(password); err != nil {
		return err
	}
	ph, err := m.h.passwordHash(roleID, password)
	if err != nil {
		return fmt.Errorf("apikey: hash password: %w", err)
	}
	err = m.store.UpdateCredential(ctx, roleID, func(c *Credential) error {
		c.RoleID = roleID
		c.PasswordHash = ph
		return nil
	})
	if err != nil {
		return fmt.Errorf("apikey: store password of %q: %w", roleID, err)
	}
	return nil
}

// ValidatePassword applies Conjur's password rules: 12 to 128 characters, at
// least 2 upper-case and 2 lower-case letters, a digit and a special character.
func ValidatePassword(p string) error {
	var n, upper, lower, digit, special int
	for _, r := range p {
		n++
		switch {
		case unicode.IsUpper(r):
			upper++
		case unicode.IsLower(r):
			lower++
		case unicode.IsDigit(r):
			digit++
		case !unicode.IsSpace(r) && !unicode.IsControl(r):
			special++
		}
	}
	if n < 12 || n > 128 || upper < 2 || lower < 2 || digit < 1 || special < 1 {
		return ErrWeakPassword
	}
	return nil
}
