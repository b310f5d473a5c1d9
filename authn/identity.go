package authn

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Identity is an authenticated caller: a Conjur role of kind user or host.
type Identity struct {
	Account string
	// Kind is "user" or "host".
	Kind string
	// ID is the role's id within the account ("admin", "alice@dev-db",
	// "conjur/authn-k8s/prod/apps/ns/*/*").
	ID string
	// IssuedAt is when the caller's access token was issued.
	IssuedAt time.Time
}

// RoleID returns "account:kind:id".
func (i Identity) RoleID() string { return i.Account + ":" + i.Kind + ":" + i.ID }

// Login returns the caller's login as Conjur writes it: the user's id, or
// "host/" and the host's id. It is the access token's subject.
func (i Identity) Login() string {
	if i.Kind == "host" {
		return "host/" + i.ID
	}
	return i.ID
}

// ErrBadLogin is returned for a login that names no user or host.
var ErrBadLogin = errors.New("authn: login must be a user id or host/<host id>")

// ParseLogin reads a Conjur login ("alice", "alice@dev-db", "host/myapp")
// into an Identity of the account.
func ParseLogin(account, login string) (Identity, error) {
	if login == "" || strings.ContainsAny(login, "\x00\n") || len(login) > 1024 {
		return Identity{}, ErrBadLogin
	}
	if id, ok := strings.CutPrefix(login, "host/"); ok {
		if id == "" {
			return Identity{}, ErrBadLogin
		}
		return Identity{Account: account, Kind: "host", ID: id}, nil
	}
	if strings.Contains(login, "/") {
		return Identity{}, ErrBadLogin
	}
	return Identity{Account: account, Kind: "user", ID: login}, nil
}

type identityKey struct{}

// NewContext returns ctx carrying the caller's identity.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the caller's identity, if the call was authenticated.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
