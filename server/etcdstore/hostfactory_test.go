package etcdstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sowerproject/sower/authn/hostfactory"
	"github.com/sowerproject/sower/policy"
)

func TestHostFactoryTokens(t *testing.T) {
	cli := startEtcd(t)
	s := NewHostFactoryTokens(cli)
	ctx := context.Background()
	now := time.Now()
	const hf = "acme:host_factory:apps/factory"
	mk := func(exp time.Time) (string, hostfactory.Token) {
		t.Helper()
		secret, tok, err := hostfactory.New(hostfactory.Spec{HostFactory: hf, Expiration: exp, CreatedBy: "acme:user:admin"}, now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return secret, tok
	}
	live, liveTok := mk(now.Add(time.Hour))
	_, oldTok := mk(now.Add(-time.Minute))
	if err := s.Create(ctx, []hostfactory.Token{liveTok, oldTok}, now.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Find(ctx, hostfactory.Hash(live))
	if err != nil || got.HostFactory != hf || !got.Expiration.Equal(liveTok.Expiration) || got.Hash != liveTok.Hash {
		t.Fatalf("Find = %+v, %v", got, err)
	}
	for name, h := range map[string]string{"unknown": hostfactory.Hash("nope"), "not a hash": "../x", "empty": ""} {
		if _, err := s.Find(ctx, h); !errors.Is(err, hostfactory.ErrNotFound) {
			t.Errorf("Find %s: %v, want ErrNotFound", name, err)
		}
	}
	// The next Create prunes the expired token, record and index.
	_, third := mk(now.Add(time.Hour))
	if err := s.Create(ctx, []hostfactory.Token{third}, now); err != nil {
		t.Fatal(err)
	}
	toks, err := s.List(ctx, hf)
	if err != nil || len(toks) != 2 {
		t.Fatalf("List = %d tokens, %v; want the two live ones", len(toks), err)
	}
	if _, err := s.Find(ctx, oldTok.Hash); !errors.Is(err, hostfactory.ErrNotFound) {
		t.Fatalf("Find of the pruned token: %v", err)
	}
	if resp, _ := cli.Get(ctx, hostFactoryIndexPrefix+oldTok.Hash); len(resp.Kvs) != 0 {
		t.Fatal("the pruned token's index entry is left")
	}
	if err := s.Delete(ctx, liveTok, "acme:user:admin"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, liveTok, "acme:user:admin"); !errors.Is(err, hostfactory.ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Find(ctx, liveTok.Hash); !errors.Is(err, hostfactory.ErrNotFound) {
		t.Fatalf("Find of the revoked token: %v", err)
	}
}

func TestHostFactoryTokensLimit(t *testing.T) {
	cli := startEtcd(t)
	s := NewHostFactoryTokens(cli)
	ctx := context.Background()
	now := time.Now()
	batch := func(n int) []hostfactory.Token {
		out := make([]hostfactory.Token, n)
		for i := range out {
			_, tok, err := hostfactory.New(hostfactory.Spec{HostFactory: "acme:host_factory:f", Expiration: now.Add(time.Hour)}, now)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = tok
		}
		return out
	}
	for range hostfactory.MaxTokensPerFactory / hostfactory.MaxTokensPerRequest {
		if err := s.Create(ctx, batch(hostfactory.MaxTokensPerRequest), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Create(ctx, batch(1), now); !errors.Is(err, ErrTooManyTokens) {
		t.Fatalf("token %d: %v, want ErrTooManyTokens", hostfactory.MaxTokensPerFactory+1, err)
	}
}

// A load's audit records are written in its transaction.
func TestCommitWritesItsAuditRecords(t *testing.T) {
	cli := startEtcd(t)
	p := openStore(t, cli, PolicyConfig{})
	ctx := context.Background()
	if err := p.EnsureAccount(ctx, account); err != nil {
		t.Fatal(err)
	}
	snap, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := p.Graph().Plan(policy.LoadRequest{Policy: rootPolicy, Mode: policy.Append, Text: []byte("- !host web\n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Commit(ctx, snap, PolicyCommit{ChangeSet: cs, Audit: []AuditEvent{{Type: "host-factory-host-enrolled", Body: map[string]string{"host": "acme:host:web"}}}}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range stored(t, cli, AuditPrefix) {
		found = found || strings.Contains(v, `"type":"host-factory-host-enrolled"`) && strings.Contains(v, `"host":"acme:host:web"`)
	}
	if !found {
		t.Fatalf("no audit record of the load: %v", stored(t, cli, AuditPrefix))
	}
}
