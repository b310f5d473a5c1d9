// Package audit is sower's audit trail: one record per authentication,
// secret read, seed issued, refused or revoked, membership change and
// data-key change, on every node (Leader, Standbys, Followers), gathered on
// the quorum and queried from the Leader.
//
// An Event is made where it happens, with the node's name and a sequence
// number of that node as its ID, and the time it happened. The pair (At, ID)
// is the event's key in the trail, so an event delivered twice (a Follower
// that re-sends after a lost acknowledgement) is stored once.
//
// No Event ever carries a secret value, an API key, a password or a token:
// fields name who, what and where, never the credential.
package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is what an event is about.
type Kind string

// Kinds of events.
const (
	// KindAuthn is an authentication (API key, password, JWT, Kubernetes),
	// successful or refused.
	KindAuthn Kind = "authn"
	// KindSecretRead is a secret value read (single, batch or by version).
	KindSecretRead Kind = "secret-read"
	// KindSeed is a seed issued, refused, fetched or revoked.
	KindSeed Kind = "seed"
	// KindMembership is a quorum member added, removed, promoted or moved.
	KindMembership Kind = "membership"
	// KindDataKey is a data-key rotation.
	KindDataKey Kind = "data-key"
)

// Kinds lists every kind, for validation and docs.
var Kinds = []Kind{KindAuthn, KindSecretRead, KindSeed, KindMembership, KindDataKey}

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// Event is one audited fact.
type Event struct {
	// ID is "<node>/<sequence>", unique per origin node; with At it makes
	// the event's key, so re-delivery is idempotent.
	ID string `json:"id"`
	// At is when it happened on the origin node (UTC).
	At time.Time `json:"at"`
	// Node is the origin node's name.
	Node string `json:"node"`
	// Kind is what it is about; Action what was done ("login", "read",
	// "issue", "refuse", "revoke", "fetch", "add", "remove", "rotate"...).
	Kind   Kind   `json:"kind"`
	Action string `json:"action"`
	// Outcome is OutcomeSuccess or OutcomeFailure.
	Outcome string `json:"outcome"`
	// Identity is who acted ("acme:host:app"); empty when the credential
	// named nobody.
	Identity string `json:"identity,omitempty"`
	// Resource is what was acted on ("acme:variable:db/password", a seed
	// id, a member name).
	Resource string `json:"resource,omitempty"`
	// Version is a secret's version read, when it applies.
	Version int `json:"version,omitempty"`
	// Source is the client's address.
	Source string `json:"source,omitempty"`
	// Authenticator is how an authentication was made ("authn",
	// "authn-jwt/<id>", "authn-k8s/<id>").
	Authenticator string `json:"authenticator,omitempty"`
	// Reason says why a failure failed; never the credential.
	Reason string `json:"reason,omitempty"`
	// Count is how many identical events this one record stands for, when
	// a recorder folds a flood (failed logins) into one record; 0 and 1
	// both mean one. Last is the time of the last of them.
	Count int64     `json:"count,omitempty"`
	Last  time.Time `json:"last,omitzero"`
}

// Limits on one event, so a record stays small and a pushed batch bounded.
const (
	// MaxFieldBytes bounds every string field.
	MaxFieldBytes = 1024
	// MaxEventBytes bounds one encoded event.
	MaxEventBytes = 8 * 1024
)

// ErrInvalid is returned for an event the trail refuses.
var ErrInvalid = errors.New("audit: invalid event")

// Validate checks an event before it is stored: a known kind, an ID of the
// form node/sequence naming the event's node, a time, an outcome, and no
// field over MaxFieldBytes or holding invalid UTF-8.
func (e Event) Validate() error {
	if e.At.IsZero() {
		return fmt.Errorf("%w: no time", ErrInvalid)
	}
	known := false
	for _, k := range Kinds {
		known = known || e.Kind == k
	}
	if !known {
		return fmt.Errorf("%w: unknown kind %q (one of %v)", ErrInvalid, e.Kind, Kinds)
	}
	if e.Outcome != OutcomeSuccess && e.Outcome != OutcomeFailure {
		return fmt.Errorf("%w: outcome %q is neither %q nor %q", ErrInvalid, e.Outcome, OutcomeSuccess, OutcomeFailure)
	}
	if e.Node == "" || !strings.HasPrefix(e.ID, e.Node+"/") || len(e.ID) == len(e.Node)+1 {
		return fmt.Errorf("%w: id %q must be <node>/<sequence> of node %q", ErrInvalid, e.ID, e.Node)
	}
	if e.Count < 0 {
		return fmt.Errorf("%w: count %d is negative", ErrInvalid, e.Count)
	}
	// An array, not a map: every event recorded is validated, on the
	// request's path, and a map literal cost an allocation per event.
	for _, f := range [...]struct{ name, v string }{{"id", e.ID}, {"node", e.Node}, {"action", e.Action}, {"identity", e.Identity},
		{"resource", e.Resource}, {"source", e.Source}, {"authenticator", e.Authenticator}, {"reason", e.Reason}} {
		if len(f.v) > MaxFieldBytes {
			return fmt.Errorf("%w: %s is %d bytes (limit %d)", ErrInvalid, f.name, len(f.v), MaxFieldBytes)
		}
		if !utf8.ValidString(f.v) || strings.ContainsAny(f.v, "\x00\n") {
			return fmt.Errorf("%w: %s holds invalid UTF-8, a NUL or a newline", ErrInvalid, f.name)
		}
	}
	return nil
}

// Key is the event's name in the trail: its time (sortable, UTC, fixed
// width) then its ID, so a range read in key order is in time order and
// the same event always has the same key.
func (e Event) Key() string {
	return e.At.UTC().Format("20060102T150405.000000000Z") + "/" + e.ID
}

// Recorder takes events where they happen. Record must not block the
// request that made the event: an implementation queues.
type Recorder interface {
	Record(Event)
}

// Discard records nothing.
type Discard struct{}

// Record does nothing.
func (Discard) Record(Event) {}

// Trail is where events end up: the quorum's etcd, under
// /sower/audit/events/<Key>. Append stores each event once; an event whose
// key is already stored is skipped, not an error, so a sender may re-send
// whatever it is not sure was stored. It returns once every event is
// durable.
type Trail interface {
	Append(ctx context.Context, events []Event) error
}
