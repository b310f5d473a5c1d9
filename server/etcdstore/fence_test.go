package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/token"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/policy"
)

// TestALeaderThatLostItsTermCannotWrite is issue 11's eighth point: with
// the election's fenced client, the policy, secrets, credential and signing
// key stores and the audit trail's prune commit only during the node's
// term. The term is ended the way a failover ends it,
// by another node's election key, and the writes are tried at once,
// before this node's election may have noticed.
func TestALeaderThatLostItsTermCannotWrite(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	ctx := context.Background()
	el, err := cluster.NewElection(cluster.ElectionConfig{Client: cli, Self: cluster.Leader{Name: "n1", MemberID: 1},
		TTL: func(context.Context) time.Duration { return cluster.MinFailoverTTL }})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { el.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(30 * time.Second)
	for !el.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("n1 never became the Leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	fenced := el.FencedClient(cli)

	// MaxTxnOps 16 makes a load of more than 15 writes a large one (claim,
	// batches, commit).
	p := openStore(t, cli, PolicyConfig{MaxTxnOps: 16, MaxTxnBytes: 1 << 20})
	if err := p.EnsureAccount(ctx, account); err != nil {
		t.Fatal(err)
	}
	p.FenceWrites(fenced)
	s := newSecrets(t, cli)
	s.FenceWrites(fenced)
	creds := NewCredentials(cli)
	creds.FenceWrites(fenced)
	signing := NewSigningKeys(cli)
	signing.FenceWrites(fenced)
	trail := NewAuditTrail(cli, TrailConfig{MaxEvents: 1})
	trail.FencePrune(fenced)
	audit := NewAuthnAudit(trail, AuditConfig{Node: "n1"})
	setKey := func(key string) error {
		return creds.UpdateCredential(ctx, "acme:host:app", func(c *apikey.Credential) error {
			c.Scheme, c.APIKeyHash = apikey.SchemeHMACSHA256, []byte(key)
			return nil
		})
	}
	// Two records, so the prune after the term has one to delete.
	for _, id := range []string{"acme:user:a", "acme:user:b"} {
		audit.Record(AuthnEvent{Outcome: OutcomeSuccess, Authenticator: "authn", Identity: id})
		if err := audit.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sw := NewAuthenticatorSwitches(cli)
	sw.FenceWrites(fenced)

	// During the term, fenced writes commit.
	if err := tryLoad(p, "- !variable db/password\n"); err != nil {
		t.Fatalf("a load during the term: %v", err)
	}
	if _, err := s.Put(ctx, dbPassword, "acme:user:admin", []byte("v1")); err != nil {
		t.Fatalf("a secret during the term: %v", err)
	}
	if err := setKey("k1"); err != nil {
		t.Fatalf("a credential during the term: %v", err)
	}
	if err := signing.AddKey(ctx, token.SealedKey{KID: "kid-1", Sealed: []byte("sealed")}); err != nil {
		t.Fatalf("a signing key during the term: %v", err)
	}
	if err := sw.SetEnabled(ctx, "authn-jwt", "ci", false, "acme:user:admin"); err != nil {
		t.Fatalf("an authenticator switch during the term: %v", err)
	}

	// Another node's key: this node's term is over.
	if _, err := cli.Delete(ctx, cluster.LeaderKey); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, cluster.LeaderKey, `{"name":"n2","member_id":2}`); err != nil {
		t.Fatal(err)
	}
	before := stored(t, cli, "/sower/")
	for name, write := range map[string]func() error{
		"a direct policy load": func() error { return tryLoad(p, "- !variable direct\n") },
		"a large policy load":  func() error { return tryLoad(p, manyHosts(40)) },
		"a secret value": func() error {
			_, err := s.Put(ctx, dbPassword, "acme:user:admin", []byte("v2"))
			return err
		},
		"an API key rotation": func() error { return setKey("k2") },
		"a new signing key": func() error {
			return signing.AddKey(ctx, token.SealedKey{KID: "kid-2", Sealed: []byte("sealed")})
		},
		"a pruned signing key":    func() error { return signing.DeleteKey(ctx, "kid-1") },
		"an authenticator switch": func() error { return sw.SetEnabled(ctx, "authn-jwt", "ci", true, "acme:user:admin") },
	} {
		if err := write(); !errors.Is(err, cluster.ErrNotLeader) {
			t.Errorf("%s after the term: %v, want cluster.ErrNotLeader", name, err)
		}
	}
	// The audit trail's prune is the Leader's: elsewhere it deletes
	// nothing and says nothing.
	if n, err := trail.Prune(ctx); n != (Pruned{}) || err != nil {
		t.Errorf("the audit prune after the term: deleted %+v, %v; want nothing, nil", n, err)
	}
	after := stored(t, cli, "/sower/")
	delete(before, cluster.LeaderKey)
	delete(after, cluster.LeaderKey)
	if !equalMaps(before, after) {
		t.Fatalf("a write of the former Leader was stored: %d keys before, %d after", len(before), len(after))
	}
}

// tryLoad is load without failing the test.
func tryLoad(p *Policies, text string) error {
	ctx := context.Background()
	snap, err := p.Begin(ctx)
	if err != nil {
		return err
	}
	cs, err := p.Graph().Plan(policy.LoadRequest{Policy: rootPolicy, Mode: policy.Append, Text: []byte(text)})
	if err != nil {
		return err
	}
	var creds []*apikey.Credential
	for _, r := range cs.NewRoles {
		creds = append(creds, &apikey.Credential{RoleID: r.String(), Scheme: apikey.SchemeHMACSHA256, APIKeyHash: []byte("h")})
	}
	_, _, err = p.Commit(ctx, snap, PolicyCommit{ChangeSet: cs, Credentials: creds,
		Versions: []PolicyVersion{{Policy: rootPolicy.String(), Mode: policy.Append.String(), Text: text, Role: "acme:user:admin"}}})
	return err
}

// TestANewLeaderRollsBackAFormerTermsLoadAtOnce is issue 11's fifth point
// in the store: a large load left by a Leader that died mid-load holds the
// policy guard while its owner's lease lives on (intentTTL). With fenced
// writes, the next Leader's Begin rolls it back at once instead of waiting
// for that lease.
func TestANewLeaderRollsBackAFormerTermsLoadAtOnce(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	ctx := context.Background()
	el, err := cluster.NewElection(cluster.ElectionConfig{Client: cli, Self: cluster.Leader{Name: "n2", MemberID: 2},
		TTL: func(context.Context) time.Duration { return cluster.MinFailoverTTL }})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { el.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	p := openStore(t, cli, PolicyConfig{MaxTxnOps: 16, MaxTxnBytes: 1 << 20})
	if err := p.EnsureAccount(ctx, account); err != nil {
		t.Fatal(err)
	}
	before := stored(t, cli, "/sower/policy/")

	// The dead Leader's claim, its owner key on a lease that is still
	// alive, and part of its load.
	lease, err := cli.Grant(ctx, intentTTL)
	if err != nil {
		t.Fatal(err)
	}
	base := latest(t, cli)
	if _, err := cli.Txn(ctx).Then(
		clientv3.OpPut(guardKey, guard{Intent: "dead", Base: base}.encode()),
		clientv3.OpPut(ownerKey("dead"), "writer", clientv3.WithLease(lease.ID)),
		clientv3.OpPut(FactKey(policy.Resource{ID: policy.NewID(account, policy.KindVariable, "half")}), "{}"),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !el.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("n2 never became the Leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.FenceWrites(el.FencedClient(cli))

	// Well inside the dead owner's 30 s lease.
	bctx, bcancel := context.WithTimeout(ctx, 10*time.Second)
	defer bcancel()
	if _, err := p.Begin(bctx); err != nil {
		t.Fatalf("Begin with a former term's load in progress: %v", err)
	}
	after := stored(t, cli, "/sower/policy/")
	delete(before, guardKey)
	delete(after, guardKey)
	if !equalMaps(before, after) {
		t.Fatalf("the former term's load was not rolled back: %d keys before, %d after", len(before), len(after))
	}
	if err := tryLoad(p, "- !variable next\n"); err != nil {
		t.Fatalf("a load after the rollback: %v", err)
	}
}
