package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of the records the policy language declares. A Conjur id names its
// kind explicitly ("myorg:host:app/web-01"); !role and !resource statements
// may use other kinds.
const (
	KindUser        = "user"
	KindHost        = "host"
	KindGroup       = "group"
	KindLayer       = "layer"
	KindPolicy      = "policy"
	KindVariable    = "variable"
	KindWebservice  = "webservice"
	KindHostFactory = "host_factory"
)

// RootPolicy is the identifier of the policy every account starts with. Loads
// into it are not wrapped in a !policy statement.
const RootPolicy = "root"

// ErrInvalidID is returned for a malformed "account:kind:identifier" string.
var ErrInvalidID = errors.New("policy: invalid id")

// ID is the fully qualified id of a role or resource: account, kind and
// identifier, written "account:kind:identifier". The identifier may contain
// ':' and '/'; account and kind may not contain ':'.
//
// In JSON an ID is the string "account:kind:identifier", and the zero ID is "".
type ID struct {
	Account string
	Kind    string
	// Name is what Conjur calls the identifier: "conjur/seed-generation".
	Name string
}

// NewID returns the ID of kind and name in account.
func NewID(account, kind, name string) ID {
	return ID{Account: account, Kind: kind, Name: name}
}

// ParseID parses "account:kind:identifier".
func ParseID(s string) (ID, error) {
	account, rest, ok := strings.Cut(s, ":")
	if !ok {
		return ID{}, fmt.Errorf("%w %q: want account:kind:identifier", ErrInvalidID, s)
	}
	kind, name, ok := strings.Cut(rest, ":")
	if !ok || account == "" || kind == "" || name == "" {
		return ID{}, fmt.Errorf("%w %q: want account:kind:identifier", ErrInvalidID, s)
	}
	return ID{Account: account, Kind: kind, Name: name}, nil
}

// ParseRef parses a role or resource reference as Conjur's REST API accepts
// it: "account:kind:identifier", "kind:identifier" in the default account, or
// "identifier" with the default kind as well (defaultKind may be empty to
// require a kind).
func ParseRef(s, defaultAccount, defaultKind string) (ID, error) {
	parts := strings.SplitN(s, ":", 3)
	switch {
	case len(parts) == 3:
		return ParseID(s)
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return ID{Account: defaultAccount, Kind: parts[0], Name: parts[1]}, nil
	case len(parts) == 1 && s != "" && defaultKind != "":
		return ID{Account: defaultAccount, Kind: defaultKind, Name: s}, nil
	}
	return ID{}, fmt.Errorf("%w %q: want [account:]kind:identifier", ErrInvalidID, s)
}

// String returns "account:kind:identifier".
func (id ID) String() string {
	return id.Account + ":" + id.Kind + ":" + id.Name
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// IsRoleKind reports whether records of kind are roles as well as resources
// when the policy language declares them: users, hosts, groups, layers,
// policies and host factories. Variables and webservices are resources only.
func IsRoleKind(kind string) bool {
	switch kind {
	case KindUser, KindHost, KindGroup, KindLayer, KindPolicy, KindHostFactory:
		return true
	}
	return false
}

// MarshalText writes "account:kind:identifier", or nothing for the zero ID.
func (id ID) MarshalText() ([]byte, error) {
	if id.IsZero() {
		return nil, nil
	}
	return []byte(id.String()), nil
}

// UnmarshalText is the inverse of MarshalText.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = ID{}
		return nil
	}
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
