package token

import (
	"context"
	"testing"
)

func BenchmarkIssue(b *testing.B) {
	for _, alg := range []Algorithm{EdDSA, ES256} {
		b.Run(string(alg), func(b *testing.B) {
			f := newFixture(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.svc.Issue("host/conjur/authn-k8s/prod/apps/ns/deployment/web"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range []Algorithm{EdDSA, ES256} {
		b.Run(string(alg), func(b *testing.B) {
			f := newFixture(b, alg)
			tok := mustIssue(b, f.svc, "host/conjur/authn-k8s/prod/apps/ns/deployment/web")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.svc.Verify(ctx, tok.JSON); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyHeader is what every protected request pays: parse the
// Authorization header and verify the token.
func BenchmarkVerifyHeader(b *testing.B) {
	f := newFixture(b, EdDSA)
	h := mustIssue(b, f.svc, "host/app").AuthorizationHeader()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		raw, err := ParseAuthorization(h)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.svc.Verify(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
}
