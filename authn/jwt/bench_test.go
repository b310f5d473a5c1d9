package jwt_test

import (
	"context"
	"testing"
	"time"

	"github.com/sowerproject/sower/authn/internal/jwttest"
	"github.com/sowerproject/sower/authn/jwt"
)

// BenchmarkVerify measures verifying a Kubernetes service-account token,
// keys cached (the JWKS fetch happens once, before the timer).
func BenchmarkVerify(b *testing.B) {
	for name, k := range map[string]jwttest.Key{"RS256": jwttest.RSA("rsa", 0), "ES256": jwttest.EC("ec")} {
		b.Run(name, func(b *testing.B) {
			srv := jwttest.NewJWKSServer(b, k)
			a := newAuthenticator(b, jwt.Settings{JWKSURI: srv.URI(), CACert: srv.CACert(), Issuer: jwttest.Issuer, Audience: jwttest.Audience},
				jwt.WithClock(func() time.Time { return now }))
			tok := k.Sign(b, claims(nil))
			ctx := context.Background()
			if _, err := a.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
