package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalidFact is returned when a stored key or value does not decode to a
// fact.
var ErrInvalidFact = errors.New("policy: invalid fact")

// Fact is one row of the permission model: a Role, Resource, Membership,
// Permission or Annotation. The set of facts is closed; a type switch over
// those five types is exhaustive.
type Fact interface {
	// Key is the fact's stable storage key (see key.go). Two facts with the
	// same key are two versions of the same fact.
	Key() string
	// Policy is the policy whose load created the fact, or the zero ID for
	// facts created outside any policy load (the account's bootstrap).
	Policy() ID
	fact()
}

// Role is a role: something that can be granted privileges and be a member
// of other roles. Users, hosts, groups, layers, policies and host factories
// are roles (and resources).
type Role struct {
	ID       ID `json:"id"`
	PolicyID ID `json:"policy,omitzero"`
	// RestrictedTo lists the networks (CIDR) a user or host may authenticate
	// from; empty means anywhere. It is set by restricted_to in policy.
	RestrictedTo []string `json:"restricted_to,omitempty"`
	// PublicKeys are a user's SSH public keys (public_keys in policy),
	// served by Conjur's GET /public_keys/{account}/user/{id}; sorted.
	PublicKeys []string `json:"public_keys,omitempty"`
}

// Resource is something privileges are granted on. Its owner holds every
// privilege on it.
type Resource struct {
	ID       ID `json:"id"`
	Owner    ID `json:"owner"`
	PolicyID ID `json:"policy,omitzero"`
}

// Membership makes Member a member of Role: Member holds every privilege
// Role holds, transitively. AdminOption lets Member grant Role to others.
// Ownership marks the membership that makes the owner of a role a member of
// it (always with AdminOption); the planner creates and removes those along
// with the owner.
type Membership struct {
	Role        ID   `json:"role"`
	Member      ID   `json:"member"`
	AdminOption bool `json:"admin_option"`
	Ownership   bool `json:"ownership"`
	PolicyID    ID   `json:"policy,omitzero"`
}

// Permission grants Privilege on Resource to Role (and to every member of
// Role, transitively). Privileges are plain words (read, execute, update,
// create, authenticate …) and do not imply one another.
type Permission struct {
	Role      ID     `json:"role"`
	Privilege string `json:"privilege"`
	Resource  ID     `json:"resource"`
	PolicyID  ID     `json:"policy,omitzero"`
}

// Annotation is a name/value pair on a resource.
type Annotation struct {
	Resource ID     `json:"resource"`
	Name     string `json:"name"`
	Value    string `json:"value"`
	PolicyID ID     `json:"policy,omitzero"`
}

func (Role) fact()       {}
func (Resource) fact()   {}
func (Membership) fact() {}
func (Permission) fact() {}
func (Annotation) fact() {}

func (f Role) Policy() ID       { return f.PolicyID }
func (f Resource) Policy() ID   { return f.PolicyID }
func (f Membership) Policy() ID { return f.PolicyID }
func (f Permission) Policy() ID { return f.PolicyID }
func (f Annotation) Policy() ID { return f.PolicyID }

// Equal reports whether two facts are the same fact with the same values.
func Equal(a, b Fact) bool {
	switch a := a.(type) {
	case Role:
		b, ok := b.(Role)
		return ok && equalRoles(a, b)
	case Resource:
		b, ok := b.(Resource)
		return ok && a == b
	case Membership:
		b, ok := b.(Membership)
		return ok && a == b
	case Permission:
		b, ok := b.(Permission)
		return ok && a == b
	case Annotation:
		b, ok := b.(Annotation)
		return ok && a == b
	}
	return false
}

func equalRoles(a, b Role) bool {
	return a.ID == b.ID && a.PolicyID == b.PolicyID && slices.Equal(a.RestrictedTo, b.RestrictedTo) &&
		slices.Equal(a.PublicKeys, b.PublicKeys)
}

// MarshalFact returns the JSON value stored under f.Key().
func MarshalFact(f Fact) ([]byte, error) {
	return appendFactJSON(make([]byte, 0, 160), f), nil
}

// UnmarshalFact decodes a stored fact. The key says which type the value
// holds, and must be the key the decoded fact would have.
func UnmarshalFact(key string, value []byte) (Fact, error) {
	prefix, _, _ := strings.Cut(key, "/")
	f, ok := decodeFactJSON(prefix, value)
	if !ok {
		var err error
		if f, err = unmarshalFactReflect(prefix, key, value); err != nil {
			return nil, err
		}
	}
	var buf [keyBufSize]byte
	if string(appendKey(buf[:0], f)) != key {
		return nil, fmt.Errorf("%w: value stored under %q belongs under %q", ErrInvalidFact, key, f.Key())
	}
	return f, nil
}

// unmarshalFactReflect decodes value with encoding/json: what
// decodeFactJSON does not take.
func unmarshalFactReflect(prefix, key string, value []byte) (Fact, error) {
	var (
		f   Fact
		err error
	)
	switch prefix {
	case keyRole:
		var v Role
		err = json.Unmarshal(value, &v)
		f = v
	case keyResource:
		var v Resource
		err = json.Unmarshal(value, &v)
		f = v
	case keyMembership:
		var v Membership
		err = json.Unmarshal(value, &v)
		f = v
	case keyPermission:
		var v Permission
		err = json.Unmarshal(value, &v)
		f = v
	case keyAnnotation:
		var v Annotation
		err = json.Unmarshal(value, &v)
		f = v
	default:
		return nil, fmt.Errorf("%w: unknown key prefix in %q", ErrInvalidFact, key)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: decode %q: %w", ErrInvalidFact, key, err)
	}
	return f, nil
}
