package authn_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/internal/jwttest"
	"github.com/sowerproject/sower/authn/internal/sealtest"
	"github.com/sowerproject/sower/authn/jwt"
	"github.com/sowerproject/sower/authn/k8s"
	"github.com/sowerproject/sower/authn/token"
)

// These benchmarks measure the in-process work of a login, end to end, with
// b.RunParallel so that ns/op on 2 cores is the throughput of the node's
// CPU (1e9/ns-per-op logins per second), minus TLS and HTTP.

func newTokens(b *testing.B) *token.Service {
	b.Helper()
	s, err := token.New(token.Config{Keys: token.NewMemKeyStore(), Sealer: sealtest.New()})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.EnsureKey(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAPIKeyLogin is POST /authn/{account}/{login}/authenticate:
// limiter, API-key check, token issue.
func BenchmarkAPIKeyLogin(b *testing.B) {
	ctx := context.Background()
	pepper, _ := apikey.NewPepper(nil)
	keys, _ := apikey.New(apikey.Config{Store: apikey.NewMemStore(), Pepper: pepper})
	const n = 256
	ids, secrets := make([]string, n), make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("myorg:host:app-%d", i)
		secrets[i], _ = keys.Rotate(ctx, ids[i])
	}
	tokens := newTokens(b)
	limiter := authn.NewLimiter(authn.LimiterConfig{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			id := ids[i%n]
			if _, ok := limiter.Allow(id, "10.0.0.1"); !ok {
				b.Fatal("rate limited")
			}
			if err := keys.Verify(ctx, id, secrets[i%n]); err != nil {
				b.Fatal(err)
			}
			limiter.Succeed(id, "10.0.0.1")
			if _, err := tokens.Issue("host/app"); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkTokenCheck is what every protected request pays: header parse and
// token verification.
func BenchmarkTokenCheck(b *testing.B) {
	tokens := newTokens(b)
	tok, _ := tokens.Issue("host/app")
	h := tok.AuthorizationHeader()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			raw, err := token.ParseAuthorization(h)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tokens.Verify(ctx, raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type allHosts struct{}

func (allHosts) Annotations(context.Context, string) (map[string]string, error) { return nil, nil }
func (allHosts) CanAuthenticate(context.Context, string, string) (bool, error)  { return true, nil }

// BenchmarkJWTLogin is POST /authn-jwt/{service_id}/{account}/{host}/authenticate
// for a namespace-form host without Kubernetes API reads: JWT verification
// (RS256, cached JWKS), host mapping, token issue.
func BenchmarkJWTLogin(b *testing.B) {
	for name, key := range map[string]jwttest.Key{"RS256": jwttest.RSA("k", 0), "ES256": jwttest.EC("k")} {
		b.Run(name, func(b *testing.B) {
			now := time.Now()
			srv := jwttest.NewJWKSServer(b, key)
			j, err := jwt.New(jwt.Settings{JWKSURI: srv.URI(), CACert: srv.CACert(), Issuer: jwttest.Issuer, Audience: jwttest.Audience})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			a, err := k8s.New(k8s.Config{ServiceID: "prod", JWT: j, Hosts: allHosts{}})
			if err != nil {
				b.Fatal(err)
			}
			pod := jwttest.Pod{Namespace: "shop", Name: "web-1", UID: "u1", ServiceAccount: "web", ServiceAccountUID: "u2"}
			req := k8s.Request{Token: key.Sign(b, jwttest.SAClaims(pod, now)), Host: "host/conjur/authn-k8s/prod/apps/shop/*/*"}
			tokens := newTokens(b)
			ctx := context.Background()
			if _, err := a.Authenticate(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := a.Authenticate(ctx, req)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := tokens.Issue(res.HostID); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
