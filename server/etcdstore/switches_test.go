package etcdstore

import (
	"context"
	"errors"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestAuthenticatorSwitches: a service is on until switched off, off once
// switched off (on every client of the member, which reads its local
// state), on again when switched on; names that cannot be one key are
// refused, and a record that does not parse keeps the service off.
func TestAuthenticatorSwitches(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	ctx := context.Background()
	sw := NewAuthenticatorSwitches(cli)
	off := func(kind, id string) bool {
		t.Helper()
		d, err := sw.Disabled(ctx, kind, id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if off("authn-jwt", "ci") {
		t.Fatal("a service never switched is off")
	}
	if err := sw.SetEnabled(ctx, "authn-jwt", "ci", false, "acme:user:admin"); err != nil {
		t.Fatal(err)
	}
	if !off("authn-jwt", "ci") || off("authn-k8s", "ci") || off("authn-jwt", "cd") {
		t.Fatal("switching authn-jwt/ci off switched the wrong services")
	}
	if err := sw.SetEnabled(ctx, "authn-jwt", "ci", true, "acme:user:admin"); err != nil {
		t.Fatal(err)
	}
	if off("authn-jwt", "ci") {
		t.Fatal("authn-jwt/ci is still off after switching it on")
	}
	audit, err := cli.Get(ctx, AuditPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, kv := range audit.Kvs {
		if strings.Contains(string(kv.Value), `"type":"authenticator-switched"`) && strings.Contains(string(kv.Value), `"by":"acme:user:admin"`) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d audit records of a switch, want 2 (off, on)", n)
	}
	for _, id := range []string{"", "a/b", "a\x00", string(make([]byte, 257))} {
		if err := sw.SetEnabled(ctx, "authn-jwt", id, false, ""); !errors.Is(err, ErrBadSwitchName) {
			t.Errorf("service id %q: %v, want ErrBadSwitchName", id, err)
		}
	}
	key, _ := SwitchKey("authn-jwt", "odd")
	if _, err := cli.Put(ctx, key, "not json"); err != nil {
		t.Fatal(err)
	}
	if !off("authn-jwt", "odd") {
		t.Error("a switch record that does not parse turned the service on")
	}
}

// BenchmarkAuthenticatorSwitchRead is what the switch adds to every JWT
// login: one serializable read of the local member.
func BenchmarkAuthenticatorSwitchRead(b *testing.B) {
	cli := startEtcd(b)
	sw := NewAuthenticatorSwitches(cli)
	ctx := context.Background()
	if err := sw.SetEnabled(ctx, "authn-jwt", "off", false, "acme:user:admin"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := sw.Disabled(ctx, "authn-jwt", "ci"); err != nil {
			b.Fatal(err)
		}
	}
}
