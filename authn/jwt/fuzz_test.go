package jwt_test

import (
	"context"
	"testing"
	"time"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/internal/jwttest"
	"github.com/sowerproject/sower/authn/jwt"
)

// FuzzVerify feeds arbitrary strings to the JWT parser and verifier with
// static keys: nothing may panic, every failure is a refusal, and only the
// tokens the test key signed verify.
func FuzzVerify(f *testing.F) {
	k := jwttest.EC("ec-1")
	a, err := jwt.New(jwt.Settings{PublicKeys: jwttest.PublicKeys(k), Issuer: jwttest.Issuer, Audience: jwttest.Audience},
		jwt.WithClock(func() time.Time { return now }))
	if err != nil {
		f.Fatal(err)
	}
	good := k.Sign(f, claims(nil))
	f.Add(good)
	f.Add(jwttest.Unsigned("ec-1", claims(nil)))
	f.Add(jwttest.HMAC("ec-1", []byte("secret"), claims(nil)))
	f.Add("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := a.Verify(context.Background(), raw)
		if err != nil {
			if _, ok := err.(*authn.Refusal); !ok {
				t.Fatalf("Verify error %v (%T) is not a refusal", err, err)
			}
			return
		}
		if c.Subject != "system:serviceaccount:shop:web" || c.KeyID != "ec-1" {
			t.Fatalf("forged token verified: %+v", c)
		}
		_, _ = a.Identity(c, "")
		_, _ = c.Lookup("kubernetes.io/pod/name")
	})
}

// FuzzClaimPath checks the claim-path reader on arbitrary paths.
func FuzzClaimPath(f *testing.F) {
	c := &jwt.Claims{Raw: map[string]any{"a": map[string]any{"b": []any{"x", map[string]any{"c": "y"}}}}}
	for _, p := range []string{"a/b[1]/c", "a/b[0]", "a[0]", "a/b[99999999999999999999]", "a//b", "[0]"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		_, _ = c.Lookup(p)
		_ = jwt.MatchAnnotations("s", map[string]string{"authn-jwt/s/" + p: "y"}, c)
	})
}
