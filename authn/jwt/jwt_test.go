package jwt_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/internal/jwttest"
	"github.com/sowerproject/sower/authn/jwt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

var pod = jwttest.Pod{Namespace: "shop", Name: "web-7d9c8b-x2x4z", UID: "a3b1c2d4-0000-4000-8000-000000000001", ServiceAccount: "web", ServiceAccountUID: "a3b1c2d4-0000-4000-8000-0000000000aa"}

func claims(mod func(map[string]any)) map[string]any {
	c := jwttest.SAClaims(pod, now)
	if mod != nil {
		mod(c)
	}
	return c
}

func newAuthenticator(t testing.TB, s jwt.Settings, opts ...jwt.Option) *jwt.Authenticator {
	t.Helper()
	a, err := jwt.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func reasonOf(err error) string {
	r, d := authn.ReasonOf(err)
	return string(r) + ": " + d
}

func TestVerify(t *testing.T) {
	t.Parallel()
	rsaKey, ecKey := jwttest.RSA("rsa-1", 0), jwttest.EC("ec-1")
	notServed := jwttest.RSA("rsa-2", 1)
	impostor := jwttest.RSA("rsa-1", 2) // same kid, other key
	noKID := rsaKey
	noKID.KID = ""
	srv := jwttest.NewJWKSServer(t, rsaKey, ecKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustPKIX(t, rsaKey)})

	sources := map[string]jwt.Settings{
		"jwks-uri":    {JWKSURI: srv.URI(), CACert: srv.CACert(), Issuer: jwttest.Issuer, Audience: jwttest.Audience},
		"public-keys": {PublicKeys: jwttest.PublicKeys(rsaKey, ecKey), Issuer: jwttest.Issuer, Audience: jwttest.Audience},
	}
	tests := map[string]struct {
		token  string
		reason authn.Reason // "" = accepted
	}{
		"RS256 service-account token": {token: rsaKey.Sign(t, claims(nil))},
		"ES256 service-account token": {token: ecKey.Sign(t, claims(nil))},
		"no kid tries every key":      {token: noKID.Sign(t, claims(nil))},
		"aud as a string":             {token: rsaKey.Sign(t, claims(func(c map[string]any) { c["aud"] = jwttest.Audience }))},
		"aud among others":            {token: rsaKey.Sign(t, claims(func(c map[string]any) { c["aud"] = []string{"vault", jwttest.Audience} }))},
		"expired within leeway":       {token: rsaKey.Sign(t, claims(func(c map[string]any) { c["exp"] = now.Add(-29 * time.Second).Unix() }))},
		"expired":                     {token: rsaKey.Sign(t, claims(func(c map[string]any) { c["exp"] = now.Add(-31 * time.Second).Unix() })), reason: authn.ReasonExpired},
		"not yet valid":               {token: rsaKey.Sign(t, claims(func(c map[string]any) { c["nbf"] = now.Add(31 * time.Second).Unix() })), reason: authn.ReasonNotYetValid},
		"nbf within leeway":           {token: rsaKey.Sign(t, claims(func(c map[string]any) { c["nbf"] = now.Add(29 * time.Second).Unix() }))},
		"issued in the future":        {token: rsaKey.Sign(t, claims(func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() })), reason: authn.ReasonNotYetValid},
		"no exp":                      {token: rsaKey.Sign(t, claims(func(c map[string]any) { delete(c, "exp") })), reason: authn.ReasonMissingClaim},
		"wrong audience":              {token: rsaKey.Sign(t, claims(func(c map[string]any) { c["aud"] = []string{"https://kubernetes.default.svc"} })), reason: authn.ReasonAudience},
		"no audience":                 {token: rsaKey.Sign(t, claims(func(c map[string]any) { delete(c, "aud") })), reason: authn.ReasonAudience},
		"wrong issuer":                {token: rsaKey.Sign(t, claims(func(c map[string]any) { c["iss"] = "https://evil.example.com" })), reason: authn.ReasonIssuer},
		"unknown key":                 {token: notServed.Sign(t, claims(nil)), reason: authn.ReasonUnknownKey},
		"known kid, other key":        {token: impostor.Sign(t, claims(nil)), reason: authn.ReasonSignature},
		"alg none":                    {token: jwttest.Unsigned("rsa-1", claims(nil)), reason: authn.ReasonAlgorithm},
		"HS256 keyed with public key": {token: jwttest.HMAC("rsa-1", rsaPEM, claims(nil)), reason: authn.ReasonAlgorithm},
		"tampered payload":            {token: tamper(rsaKey.Sign(t, claims(nil)), claims(func(c map[string]any) { c["sub"] = "system:serviceaccount:kube-system:admin" })), reason: authn.ReasonSignature},
		"payload not JSON":            {token: signRaw(t, rsaKey, "not json"), reason: authn.ReasonMalformed},
		"garbage":                     {token: "not a token", reason: authn.ReasonMalformed},
		"two parts":                   {token: "eyJhbGciOiJSUzI1NiJ9.e30", reason: authn.ReasonMalformed},
		"five parts (JWE)":            {token: "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", reason: authn.ReasonMalformed},
		"enc header":                  {token: "eyJhbGciOiJSUzI1NiIsImVuYyI6IkEyNTZHQ00ifQ.e30.c2ln", reason: authn.ReasonMalformed},
		"header not base64url":        {token: "***.e30.c2ln", reason: authn.ReasonMalformed},
		"header not JSON":             {token: "aGVsbG8.e30.c2ln", reason: authn.ReasonMalformed},
		"signature not base64url":     {token: strings.Join(strings.Split(rsaKey.Sign(t, claims(nil)), ".")[:2], ".") + ".***", reason: authn.ReasonMalformed},
		"empty":                       {token: "", reason: authn.ReasonMissing},
		"too large":                   {token: strings.Repeat("a", jwt.MaxTokenSize+1), reason: authn.ReasonMalformed},
	}
	for sourceName, settings := range sources {
		t.Run(sourceName, func(t *testing.T) {
			t.Parallel()
			a := newAuthenticator(t, settings, jwt.WithClock(func() time.Time { return now }))
			for name, tc := range tests {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					c, err := a.Verify(context.Background(), tc.token)
					if tc.reason == "" {
						if err != nil {
							t.Fatalf("Verify = %v (%s)", err, reasonOf(err))
						}
						if ns, _ := c.String("kubernetes.io/namespace"); ns != pod.Namespace {
							t.Fatalf("namespace claim = %q", ns)
						}
						return
					}
					if !errors.Is(err, authn.ErrUnauthenticated) || !authn.IsReason(err, tc.reason) {
						t.Fatalf("Verify = %v (%s), want refusal %s", err, reasonOf(err), tc.reason)
					}
					if err.Error() != authn.ErrUnauthenticated.Error() {
						t.Fatalf("refusal text %q is not generic", err)
					}
				})
			}
		})
	}
}

func mustPKIX(t testing.TB, k jwttest.Key) []byte {
	der, err := x509.MarshalPKIXPublicKey(k.Priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// tamper replaces a token's payload, keeping header and signature.
func tamper(tok string, c map[string]any) string {
	other := jwttest.Unsigned("", c)
	parts := strings.Split(tok, ".")
	parts[1] = strings.Split(other, ".")[1]
	return strings.Join(parts, ".")
}

func signRaw(t *testing.T, k jwttest.Key, payload string) string {
	t.Helper()
	return signBytes(t, k, []byte(payload))
}

func TestClaimsFields(t *testing.T) {
	t.Parallel()
	k := jwttest.EC("ec-1")
	a := newAuthenticator(t, jwt.Settings{PublicKeys: jwttest.PublicKeys(k), Issuer: jwttest.Issuer}, jwt.WithClock(func() time.Time { return now }))
	c, err := a.Verify(context.Background(), k.Sign(t, claims(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != jwttest.Issuer || c.Subject != "system:serviceaccount:shop:web" || c.KeyID != "ec-1" || c.Algorithm != "ES256" ||
		!c.Expiry.Equal(now.Add(time.Hour)) || !c.IssuedAt.Equal(now) || !c.NotBefore.Equal(now) || len(c.Audience) != 1 {
		t.Fatalf("claims = %+v", c)
	}
	for path, want := range map[string]string{
		"kubernetes.io/namespace":           "shop",
		"kubernetes.io/pod/name":            pod.Name,
		"kubernetes.io/pod/uid":             pod.UID,
		"kubernetes.io/serviceaccount/name": "web",
		"aud[0]":                            jwttest.Audience,
		"sub":                               "system:serviceaccount:shop:web",
	} {
		if got, ok := c.String(path); !ok || got != want {
			t.Errorf("String(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
	for _, path := range []string{"kubernetes.io/nope", "aud[1]", "exp", "kubernetes.io", "/sub", "sub/", "aud[x]", "aud[0", ""} {
		if got, ok := c.String(path); ok {
			t.Errorf("String(%q) = %q, want not found", path, got)
		}
	}
}

func TestJWKSRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k1, k2 := jwttest.RSA("k1", 0), jwttest.EC("k2")
	srv := jwttest.NewJWKSServer(t, k1)
	clk := &clock{t: now}
	a := newAuthenticator(t, jwt.Settings{JWKSURI: srv.URI(), CACert: srv.CACert(), Issuer: jwttest.Issuer},
		jwt.WithClock(clk.Now), jwt.WithRefreshInterval(10*time.Second), jwt.WithCacheTTL(time.Hour))
	at := func() map[string]any { return jwttest.SAClaims(pod, clk.Now()) }

	if srv.Hits() != 0 {
		t.Fatal("New fetched the JWKS")
	}
	if _, err := a.Verify(ctx, k1.Sign(t, at())); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(ctx, k1.Sign(t, at())); err != nil {
		t.Fatal(err)
	}
	if srv.Hits() != 1 {
		t.Fatalf("two verifications fetched %d times, want 1 (cached)", srv.Hits())
	}

	// The issuer rotates to k2; a k2 token makes a fetch once the interval has passed.
	srv.SetKeys(k1, k2)
	clk.Advance(10 * time.Second)
	if _, err := a.Verify(ctx, k2.Sign(t, at())); err != nil {
		t.Fatalf("token of rotated key: %v (%s)", err, reasonOf(err))
	}
	if srv.Hits() != 2 {
		t.Fatalf("hits = %d, want 2", srv.Hits())
	}

	// Unknown kids within the interval do not fetch again.
	stranger := jwttest.EC("made-up")
	for range 20 {
		if _, err := a.Verify(ctx, stranger.Sign(t, at())); !authn.IsReason(err, authn.ReasonUnknownKey) {
			t.Fatalf("unknown kid: %v (%s)", err, reasonOf(err))
		}
	}
	if srv.Hits() != 2 {
		t.Fatalf("unknown kids fetched: hits = %d, want 2", srv.Hits())
	}
	clk.Advance(10 * time.Second)
	_, _ = a.Verify(ctx, stranger.Sign(t, at()))
	if srv.Hits() != 3 {
		t.Fatalf("after the interval hits = %d, want 3", srv.Hits())
	}

	// The issuer is down: cached keys keep verifying, even past the cache TTL.
	srv.Fail(http.StatusServiceUnavailable)
	clk.Advance(2 * time.Hour)
	if _, err := a.Verify(ctx, k2.Sign(t, at())); err != nil {
		t.Fatalf("cached key while issuer is down: %v (%s)", err, reasonOf(err))
	}
	if srv.Hits() != 4 {
		t.Fatalf("stale cache did not try a fetch: hits = %d", srv.Hits())
	}

	// The issuer drops k1: after the TTL the cache follows.
	srv.SetKeys(k2)
	clk.Advance(2 * time.Hour)
	if _, err := a.Verify(ctx, k1.Sign(t, at())); !authn.IsReason(err, authn.ReasonUnknownKey) {
		t.Fatalf("removed key: %v (%s)", err, reasonOf(err))
	}
}

// TestJWKSConcurrentFirstFetch: callers that arrive while the first fetch is
// in flight wait for it instead of failing, and the issuer sees one fetch.
func TestJWKSConcurrentFirstFetch(t *testing.T) {
	t.Parallel()
	k := jwttest.RSA("k1", 0)
	srv := jwttest.NewJWKSServer(t, k)
	a := newAuthenticator(t, jwt.Settings{JWKSURI: srv.URI(), CACert: srv.CACert()}, jwt.WithClock(func() time.Time { return now }))
	tok := k.Sign(t, claims(nil))
	const n = 16
	errs := make(chan error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := a.Verify(context.Background(), tok)
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent first Verify = %v (%s)", err, reasonOf(err))
		}
	}
	if srv.Hits() != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", srv.Hits())
	}
}

func TestJWKSUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := jwttest.RSA("k1", 0)
	srv := jwttest.NewJWKSServer(t, k)
	tok := k.Sign(t, claims(nil))
	clock := jwt.WithClock(func() time.Time { return now })

	tests := map[string]struct {
		settings jwt.Settings
		prepare  func()
	}{
		"server down":               {settings: jwt.Settings{JWKSURI: srv.URI(), CACert: srv.CACert()}, prepare: func() {}},
		"certificate of another CA": {settings: jwt.Settings{JWKSURI: srv.URI(), CACert: jwttest.UnrelatedCACert()}},
		"system roots only":         {settings: jwt.Settings{JWKSURI: srv.URI()}},
		"not found":                 {settings: jwt.Settings{JWKSURI: srv.URL + "/nope", CACert: srv.CACert()}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.prepare != nil {
				down := jwttest.NewJWKSServer(t, k)
				down.Fail(http.StatusInternalServerError)
				tc.settings = jwt.Settings{JWKSURI: down.URI(), CACert: down.CACert()}
			}
			a := newAuthenticator(t, tc.settings, clock)
			// The second attempt, within the refresh interval, does not fetch
			// and is still an outage rather than an unknown key.
			for range 2 {
				_, err := a.Verify(ctx, tok)
				if !authn.IsReason(err, authn.ReasonUnavailable) {
					t.Fatalf("Verify = %v (%s), want unavailable", err, reasonOf(err))
				}
			}
		})
	}
}

func TestBadJWKS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := jwttest.RSA("k1", 0)
	tok := k.Sign(t, claims(nil))
	tests := map[string]string{
		"symmetric key": `{"keys":[{"kty":"oct","kid":"k1","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`,
		"not JSON":      `<html>`,
		"no keys":       `{"keys":[]}`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := jwttest.NewJWKSServer(t)
			srv.SetBody(body)
			a := newAuthenticator(t, jwt.Settings{JWKSURI: srv.URI(), CACert: srv.CACert()}, jwt.WithClock(func() time.Time { return now }))
			if _, err := a.Verify(ctx, tok); !authn.IsReason(err, authn.ReasonUnavailable) {
				t.Fatalf("Verify = %v (%s), want unavailable", err, reasonOf(err))
			}
		})
	}
}

func TestSettings(t *testing.T) {
	t.Parallel()
	k := jwttest.RSA("k1", 0)
	pk := jwttest.PublicKeys(k)
	tests := map[string]struct {
		s    jwt.Settings
		opts []jwt.Option
		ok   bool
	}{
		"jwks-uri":                  {s: jwt.Settings{JWKSURI: "https://k8s.example.com/openid/v1/jwks"}, ok: true},
		"public-keys with issuer":   {s: jwt.Settings{PublicKeys: pk, Issuer: jwttest.Issuer}, ok: true},
		"nothing":                   {s: jwt.Settings{Issuer: jwttest.Issuer}},
		"both sources":              {s: jwt.Settings{JWKSURI: "https://a/jwks", PublicKeys: pk, Issuer: "x"}},
		"provider-uri":              {s: jwt.Settings{ProviderURI: "https://accounts.example.com"}},
		"public-keys without iss":   {s: jwt.Settings{PublicKeys: pk}},
		"ca-cert with public-keys":  {s: jwt.Settings{PublicKeys: pk, Issuer: "x", CACert: "-----BEGIN CERTIFICATE-----"}},
		"http jwks-uri":             {s: jwt.Settings{JWKSURI: "http://k8s.example.com/jwks"}},
		"bad ca-cert":               {s: jwt.Settings{JWKSURI: "https://a/jwks", CACert: "not pem"}},
		"public-keys wrong type":    {s: jwt.Settings{PublicKeys: `{"type":"pem","value":"x"}`, Issuer: "x"}},
		"public-keys no keys":       {s: jwt.Settings{PublicKeys: `{"type":"jwks","value":{"keys":[]}}`, Issuer: "x"}},
		"public-keys not JSON":      {s: jwt.Settings{PublicKeys: `jwks`, Issuer: "x"}},
		"public-keys symmetric":     {s: jwt.Settings{PublicKeys: `{"type":"jwks","value":{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}}`, Issuer: "x"}},
		"bad token-app-property":    {s: jwt.Settings{JWKSURI: "https://a/jwks", TokenAppProperty: "a//b"}},
		"HS256 allowed":             {s: jwt.Settings{JWKSURI: "https://a/jwks"}, opts: []jwt.Option{jwt.WithAlgorithms("RS256", "HS256")}},
		"none allowed":              {s: jwt.Settings{JWKSURI: "https://a/jwks"}, opts: []jwt.Option{jwt.WithAlgorithms("none")}},
		"empty allow-list":          {s: jwt.Settings{JWKSURI: "https://a/jwks"}, opts: []jwt.Option{jwt.WithAlgorithms()}},
		"narrowed allow-list":       {s: jwt.Settings{JWKSURI: "https://a/jwks"}, opts: []jwt.Option{jwt.WithAlgorithms("ES256")}, ok: true},
		"identity-path without tap": {s: jwt.Settings{JWKSURI: "https://a/jwks", IdentityPath: "apps"}, ok: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a, err := jwt.New(tc.s, tc.opts...)
			if tc.ok {
				if err != nil {
					t.Fatalf("New = %v", err)
				}
				_ = a.Close()
				return
			}
			if !errors.Is(err, jwt.ErrSettings) {
				t.Fatalf("New = %v, want ErrSettings", err)
			}
		})
	}
}

func TestNarrowedAlgorithms(t *testing.T) {
	t.Parallel()
	k := jwttest.RSA("k1", 0)
	a := newAuthenticator(t, jwt.Settings{PublicKeys: jwttest.PublicKeys(k), Issuer: jwttest.Issuer},
		jwt.WithAlgorithms("ES256"), jwt.WithClock(func() time.Time { return now }))
	if _, err := a.Verify(context.Background(), k.Sign(t, claims(nil))); !authn.IsReason(err, authn.ReasonAlgorithm) {
		t.Fatalf("RS256 with ES256-only list: %v (%s)", err, reasonOf(err))
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	k := jwttest.EC("k")
	tests := map[string]struct {
		tap, path string
		urlHost   string
		want      string
		reason    authn.Reason
	}{
		"host from URL":                {urlHost: "host/conjur/authn-k8s/prod/apps/shop/*/*", want: "host/conjur/authn-k8s/prod/apps/shop/*/*"},
		"host from URL without prefix": {urlHost: "myapp", want: "host/myapp"},
		"no host anywhere":             {reason: authn.ReasonInvalidHostID},
		"token-app-property":           {tap: "sub", want: "host/system:serviceaccount:shop:web"},
		"nested with identity-path":    {tap: "kubernetes.io/serviceaccount/name", path: "/apps/k8s/", want: "host/apps/k8s/web"},
		"array claim":                  {tap: "aud[0]", path: "apps", want: "host/apps/" + jwttest.Audience},
		"URL host with property":       {tap: "sub", urlHost: "host/other", reason: authn.ReasonInvalidHostID},
		"missing claim":                {tap: "kubernetes.io/nope", reason: authn.ReasonMissingClaim},
		"non-string claim":             {tap: "exp", reason: authn.ReasonMissingClaim},
		"path traversal":               {tap: "jti", path: "apps", reason: authn.ReasonInvalidHostID},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := newAuthenticator(t, jwt.Settings{PublicKeys: jwttest.PublicKeys(k), Issuer: jwttest.Issuer, TokenAppProperty: tc.tap, IdentityPath: tc.path},
				jwt.WithClock(func() time.Time { return now }))
			cl := claims(func(c map[string]any) { c["jti"] = "../admin" })
			c, err := a.Verify(context.Background(), k.Sign(t, cl))
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Identity(c, tc.urlHost)
			if tc.reason != "" {
				if !authn.IsReason(err, tc.reason) {
					t.Fatalf("Identity = %q, %v (%s); want %s", got, err, reasonOf(err), tc.reason)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Identity = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestMatchAnnotations(t *testing.T) {
	t.Parallel()
	k := jwttest.EC("k")
	a := newAuthenticator(t, jwt.Settings{PublicKeys: jwttest.PublicKeys(k), Issuer: jwttest.Issuer}, jwt.WithClock(func() time.Time { return now }))
	c, err := a.Verify(context.Background(), k.Sign(t, claims(nil)))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		ann    map[string]string
		reason authn.Reason
	}{
		"none":                  {ann: nil},
		"matching":              {ann: map[string]string{"authn-jwt/prod/kubernetes.io/namespace": "shop", "authn-jwt/prod/sub": "system:serviceaccount:shop:web"}},
		"other service ignored": {ann: map[string]string{"authn-jwt/dev/kubernetes.io/namespace": "other"}},
		"other prefix ignored":  {ann: map[string]string{"description": "x"}},
		"mismatch":              {ann: map[string]string{"authn-jwt/prod/kubernetes.io/namespace": "other"}, reason: authn.ReasonClaimMismatch},
		"missing claim":         {ann: map[string]string{"authn-jwt/prod/project_id": "1"}, reason: authn.ReasonMissingClaim},
		"non-string claim":      {ann: map[string]string{"authn-jwt/prod/exp": "1"}, reason: authn.ReasonClaimMismatch},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := jwt.MatchAnnotations("prod", tc.ann, c)
			if tc.reason == "" && err != nil || tc.reason != "" && !authn.IsReason(err, tc.reason) {
				t.Fatalf("MatchAnnotations = %v (%s), want %q", err, reasonOf(err), tc.reason)
			}
		})
	}
}
