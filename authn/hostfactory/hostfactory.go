// Package hostfactory holds Conjur's host factory tokens: the bearer tokens
// with which a machine enrols itself as a host in a host factory's layers
// (POST /host_factories/hosts), without an administrator's login.
//
// A token is random (256 bits) and handed out once, when it is created; what
// is stored is its SHA-256 (the index Conjur keeps too) with the host
// factory it belongs to, its expiration and the networks it may be used
// from. A plain hash is enough for a secret of that much entropy: nobody can
// search for a preimage, so the peppered HMAC the API keys use would add
// nothing. Conjur also keeps the token itself, encrypted, to show it again
// in the host factory's resource JSON; sower never can, by design.
//
// The package is a pure engine: New makes a token, Token.Check decides
// whether it may be used now from an address. Storage is the caller's
// (etcdstore.HostFactoryTokens); authorization (execute on the host factory
// to create tokens, update to revoke) is the policy service's.
//
//	secret, tok, err := hostfactory.New(hostfactory.Spec{HostFactory: hf, Expiration: exp, CIDR: []string{"10.0.0.0/8"}}, time.Now())
//	// store tok, hand secret to the caller once
//	err = tok.Check(clientAddr, time.Now()) // nil, or an error matching ErrRefused
package hostfactory

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/policy"
)

// Limits of a token request, named in the errors that enforce them.
const (
	// TokenBytes is the token's entropy: 32 random bytes, as Conjur's
	// Slosilo salt.
	TokenBytes = 32
	// MaxTokenLength bounds a presented token before it is hashed.
	MaxTokenLength = 256
	// MaxCIDRs is how many networks one token may name.
	MaxCIDRs = 64
	// MaxCIDRLength bounds one network as written.
	MaxCIDRLength = 64
	// MaxTokensPerRequest bounds count in one request for tokens.
	MaxTokensPerRequest = 100
	// MaxTokensPerFactory bounds the live tokens one host factory holds.
	MaxTokensPerFactory = 1000
)

var (
	// ErrRefused is matched by every reason a presented token is not
	// accepted: unknown, revoked, expired, or used from outside its
	// networks. Callers answer them all alike (Conjur's 401) and log the
	// detail.
	ErrRefused = errors.New("hostfactory: token refused")
	// ErrNotFound is what a store returns for a token it does not hold.
	ErrNotFound = errors.New("hostfactory: no such token")
	// ErrInvalid is wrapped by New for a spec it cannot make a token of;
	// the message is Conjur's.
	ErrInvalid = errors.New("hostfactory: invalid token request")
)

// Spec is what a new token is made of.
type Spec struct {
	// HostFactory is the host factory's full resource id.
	HostFactory string
	// Expiration is when the token stops working; it must be in the
	// future.
	Expiration time.Time
	// CIDR are the networks the token may be used from, written as
	// restricted_to entries ("10.0.0.0/8", "10.1.2.3"); none means from
	// anywhere.
	CIDR []string
	// CreatedBy is the role that asked for it, for the record.
	CreatedBy string
}

// Token is a token as stored: everything but the token itself.
type Token struct {
	// HostFactory is the host factory's full resource id.
	HostFactory string `json:"host_factory"`
	// Hash is the hex SHA-256 of the token.
	Hash string `json:"-"`
	// Expiration is when it stops working (UTC, whole seconds).
	Expiration time.Time `json:"expiration"`
	// CIDR are its networks in canonical form ("10.1.2.3/32").
	CIDR []string `json:"cidr"`
	// CreatedBy and CreatedAt record who made it and when.
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Hash returns the hex SHA-256 of a token, the key it is stored under.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// encoding is Crockford's base 32 alphabet in lower case, as Conjur writes
// its tokens: no padding, no letters that read like digits.
var encoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// New makes a token for spec at time now and returns it with its record.
// The token is shown once; only the record is stored.
func New(spec Spec, now time.Time) (string, Token, error) {
	if _, err := policy.ParseID(spec.HostFactory); err != nil {
		return "", Token{}, fmt.Errorf("%w: host_factory %q is not a resource id", ErrInvalid, spec.HostFactory)
	}
	exp := spec.Expiration.UTC().Truncate(time.Second)
	if !exp.After(now) {
		return "", Token{}, fmt.Errorf("%w: Value for parameter expiration must be in the future: %s", ErrInvalid, exp.Format(time.RFC3339))
	}
	cidrs, err := CanonicalCIDRs(spec.CIDR)
	if err != nil {
		return "", Token{}, err
	}
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", Token{}, fmt.Errorf("hostfactory: read random bytes: %w", err)
	}
	secret := encoding.EncodeToString(b)
	return secret, Token{
		HostFactory: spec.HostFactory, Hash: Hash(secret), Expiration: exp, CIDR: cidrs,
		CreatedBy: spec.CreatedBy, CreatedAt: now.UTC(),
	}, nil
}

// CanonicalCIDRs checks networks as Conjur checks a token's cidr (as it
// checks restricted_to) and writes them as Conjur shows them.
func CanonicalCIDRs(in []string) ([]string, error) {
	if len(in) > MaxCIDRs {
		return nil, fmt.Errorf("%w: a token may name at most %d networks (cidr), not %d", ErrInvalid, MaxCIDRs, len(in))
	}
	out := make([]string, 0, len(in))
	for _, c := range in {
		if len(c) > MaxCIDRLength {
			return nil, fmt.Errorf("%w: Invalid IP address or CIDR range: a network is at most %d characters", ErrInvalid, MaxCIDRLength)
		}
		canon, err := policy.CanonicalCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalid, err.Error())
		}
		out = append(out, canon)
	}
	return out, nil
}

// Check decides whether the token may be used now from addr (the client's
// address, as the node sees it after its trusted proxies). Every refusal
// matches ErrRefused; the message says which check failed, for the log.
func (t Token) Check(addr string, now time.Time) error {
	if !now.Before(t.Expiration) {
		return fmt.Errorf("%w: expired at %s", ErrRefused, t.Expiration.Format(time.RFC3339))
	}
	if len(t.CIDR) == 0 {
		return nil
	}
	nets, err := authn.ParseNetworks(t.CIDR)
	if err != nil {
		return fmt.Errorf("%w: stored networks unreadable: %v", ErrRefused, err)
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(addr))
	if err != nil || !nets.Contains(ip) {
		return fmt.Errorf("%w: address %q is outside the token's networks", ErrRefused, addr)
	}
	return nil
}

// Expired reports whether the token no longer works at now.
func (t Token) Expired(now time.Time) bool { return !now.Before(t.Expiration) }
