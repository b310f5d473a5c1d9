package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SwitchPrefix holds the authenticators switched off with Conjur's PATCH
// /{authenticator}/{service_id}/{account} enabled=false: one key per
// service, <prefix><authenticator>/<service id>. An authenticator whose
// webservice is in policy is on while it has no key here. The prefix is
// replicated to Followers, so a switched-off service refuses logins on
// every node.
const SwitchPrefix = "/sower/authn/authenticators/"

// ErrBadSwitchName is returned for an authenticator or service id that
// cannot name a switch (empty, a '/', a NUL, longer than 256 bytes).
var ErrBadSwitchName = errors.New("etcdstore: an authenticator and its service id must be 1 to 256 bytes without '/' or NUL")

// switchRecord is the value of a switch key.
type switchRecord struct {
	Enabled bool      `json:"enabled"`
	By      string    `json:"by,omitempty"`
	At      time.Time `json:"at"`
}

// AuthenticatorSwitches stores which authenticator services are switched
// off. Reads are serializable reads of the local member (a Follower's
// copy, a quorum member's own state), so a login costs no quorum round
// trip.
type AuthenticatorSwitches struct {
	cli *clientv3.Client
	// w, when set (FenceWrites), is the client writes go through.
	w   atomic.Pointer[clientv3.Client]
	now func() time.Time
}

// NewAuthenticatorSwitches returns the store over cli.
func NewAuthenticatorSwitches(cli *clientv3.Client) *AuthenticatorSwitches {
	return &AuthenticatorSwitches{cli: cli, now: time.Now}
}

// FenceWrites sends every write through w from now on: the election's
// FencedClient, so that only the Leader in its term switches
// authenticators.
func (s *AuthenticatorSwitches) FenceWrites(w *clientv3.Client) { s.w.Store(w) }

func (s *AuthenticatorSwitches) writer() *clientv3.Client {
	if w := s.w.Load(); w != nil {
		return w
	}
	return s.cli
}

// SwitchKey is the etcd key of an authenticator service's switch.
func SwitchKey(authenticator, serviceID string) (string, error) {
	for _, n := range []string{authenticator, serviceID} {
		if n == "" || len(n) > 256 || strings.ContainsAny(n, "/\x00") {
			return "", ErrBadSwitchName
		}
	}
	return SwitchPrefix + authenticator + "/" + serviceID, nil
}

// Disabled reports whether the service was switched off.
func (s *AuthenticatorSwitches) Disabled(ctx context.Context, authenticator, serviceID string) (bool, error) {
	key, err := SwitchKey(authenticator, serviceID)
	if err != nil {
		return false, err
	}
	resp, err := s.cli.Get(ctx, key, clientv3.WithSerializable())
	if err != nil {
		return false, fmt.Errorf("etcdstore: read the switch of %s/%s: %w", authenticator, serviceID, err)
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	var r switchRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		// A record that does not parse can only come from a bug; a
		// switch that fails open would turn a service back on.
		return true, nil
	}
	return !r.Enabled, nil
}

// SetEnabled switches the service on (deleting its switch) or off
// (recording who did, and when), with an audit record
// "authenticator-switched" in the same transaction. by is the caller's
// role id.
func (s *AuthenticatorSwitches) SetEnabled(ctx context.Context, authenticator, serviceID string, enabled bool, by string) error {
	key, err := SwitchKey(authenticator, serviceID)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	op := clientv3.OpDelete(key)
	if !enabled {
		raw, err := json.Marshal(switchRecord{Enabled: false, By: by, At: now})
		if err != nil {
			return err
		}
		op = clientv3.OpPut(key, string(raw))
	}
	audit := AuditOp(now, "authenticator-switched", map[string]any{
		"authenticator": authenticator, "service_id": serviceID, "enabled": enabled, "by": by})
	if _, err := s.writer().Txn(ctx).Then(op, audit).Commit(); err != nil {
		return fmt.Errorf("etcdstore: switch %s/%s (enabled=%v): %w", authenticator, serviceID, enabled, err)
	}
	return nil
}
