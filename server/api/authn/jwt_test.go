package authn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/token"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	authnapi "github.com/sowerproject/sower/server/api/authn"
	"github.com/sowerproject/sower/server/etcdstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"))
}

const account = "acme"

// variables is an in-memory variable store that counts reads, standing in
// for etcdstore.Secrets (whose own tests run against etcd).
type variables struct {
	mu    sync.Mutex
	v     map[string]string
	reads int
}

func (s *variables) Get(_ context.Context, id string, _ int64) ([]byte, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	v, ok := s.v[id]
	if !ok {
		return nil, 0, &etcdstore.MissingSecretError{ResourceID: id}
	}
	return []byte(v), 1, nil
}

func (s *variables) set(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v["acme:variable:"+name] = value
}

func (s *variables) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// auditLog collects audit events.
type auditLog struct {
	mu     sync.Mutex
	events []etcdstore.AuthnEvent
}

func (a *auditLog) Record(e etcdstore.AuthnEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
}

func (a *auditLog) last() etcdstore.AuthnEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.events[len(a.events)-1]
}

const testPolicy = `
- !policy
  id: conjur
  body:
  - !policy
    id: authn-k8s/prod
    body:
    - !webservice
    - !host apps/shop/*/*
    - !host apps/shop/pod/other
    - !permit
      role: !host apps/shop/*/*
      privilege: [ authenticate ]
      resource: !webservice
  - !policy
    id: authn-jwt/ci
    body:
    - !webservice
- !host
  id: ci/build
  annotations:
    authn-jwt/ci/ref: main
- !permit
  role: !host ci/build
  privilege: [ authenticate ]
  resource: !webservice conjur/authn-jwt/ci
- !user alice
`

type fixture struct {
	svc   *authnapi.Service
	vars  *variables
	audit *auditLog
	key   *ecdsa.PrivateKey
	keys  *apikey.Manager
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	g := policy.NewGraph()
	cs, err := g.PlanAccount(account)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	if cs, err = g.Plan(policy.LoadRequest{Policy: policy.NewID(account, policy.KindPolicy, policy.RootPolicy), Mode: policy.Append, Text: []byte(testPolicy)}); err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	kr, err := pki.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := token.New(token.Config{Keys: token.NewMemKeyStore(), Sealer: kr})
	if err != nil {
		t.Fatal(err)
	}
	if err := tokens.EnsureKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	pepper, _ := apikey.NewPepper(nil)
	keys, err := apikey.New(apikey.Config{Store: apikey.NewMemStore(), Pepper: pepper})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	vars := &variables{v: map[string]string{}}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	pk := `{"type":"jwks","value":` + string(jwks) + `}`
	vars.set("conjur/authn-k8s/prod/public-keys", pk)
	vars.set("conjur/authn-k8s/prod/issuer", "https://kubernetes.default.svc")
	vars.set("conjur/authn-jwt/ci/public-keys", pk)
	vars.set("conjur/authn-jwt/ci/issuer", "https://ci.example.com")
	vars.set("conjur/authn-jwt/ci/token-app-property", "workload")
	vars.set("conjur/authn-jwt/ci/identity-path", "ci")
	audit := &auditLog{}
	svc, err := authnapi.New(authnapi.Config{Account: account, Keys: keys, Tokens: tokens, Limiter: authn.NewLimiter(authn.LimiterConfig{}),
		Graph: func() *policy.Graph { return g }, Variables: vars, Audit: audit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return &fixture{svc: svc, vars: vars, audit: audit, key: key, keys: keys}
}

func (f *fixture) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := json.Marshal(claims)
	jws, err := s.Sign(p)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func saClaims(ns, podName, sa string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": "https://kubernetes.default.svc", "aud": []string{"sower"}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"sub": "system:serviceaccount:" + ns + ":" + sa,
		"kubernetes.io": map[string]any{"namespace": ns, "pod": map[string]any{"name": podName, "uid": "u1"},
			"serviceaccount": map[string]any{"name": sa, "uid": "u2"}},
	}
}

func ciClaims(workload, ref string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": "https://ci.example.com", "sub": "p", "workload": workload, "ref": ref, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func jwtReq(service, host, jwt string) *sowerv1.AuthenticateJWTRequest {
	return &sowerv1.AuthenticateJWTRequest{ServiceId: service, Account: account, Host: host, Jwt: jwt}
}

func TestAuthenticateJWT(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ns := "conjur/authn-k8s/prod/apps/shop/*/*"
	tests := map[string]struct {
		req        *sowerv1.AuthenticateJWTRequest
		wantLogin  string
		wantReason authn.Reason
		wantHow    string
	}{
		"kubernetes namespace form":   {req: jwtReq("prod", ns, f.sign(t, saClaims("shop", "web-1", "web"))), wantLogin: "host/" + ns, wantHow: "authn-k8s/prod"},
		"kubernetes, host/ prefix":    {req: jwtReq("prod", "host/"+ns, f.sign(t, saClaims("shop", "web-1", "web"))), wantLogin: "host/" + ns, wantHow: "authn-k8s/prod"},
		"kubernetes, other namespace": {req: jwtReq("prod", ns, f.sign(t, saClaims("bank", "web-1", "web"))), wantReason: authn.ReasonWorkloadMismatch, wantHow: "authn-k8s/prod"},
		"kubernetes, no authenticate": {req: jwtReq("prod", "conjur/authn-k8s/prod/apps/shop/pod/other", f.sign(t, saClaims("shop", "other", "web"))), wantReason: authn.ReasonNotPermitted, wantHow: "authn-k8s/prod"},
		"generic JWT":                 {req: jwtReq("ci", "", f.sign(t, ciClaims("build", "main"))), wantLogin: "host/ci/build", wantHow: "authn-jwt/ci"},
		"generic JWT, annotation":     {req: jwtReq("ci", "", f.sign(t, ciClaims("build", "dev"))), wantReason: authn.ReasonClaimMismatch, wantHow: "authn-jwt/ci"},
		"generic JWT, unknown host":   {req: jwtReq("ci", "", f.sign(t, ciClaims("nobody", "main"))), wantReason: authn.ReasonUnknownIdentity, wantHow: "authn-jwt/ci"},
		"service not enabled":         {req: jwtReq("nope", "", f.sign(t, ciClaims("build", "main"))), wantReason: authn.ReasonNotEnabled, wantHow: "authn-jwt/nope"},
		"service id with a slash":     {req: jwtReq("prod/x", "", f.sign(t, ciClaims("build", "main"))), wantReason: authn.ReasonInvalidHostID},
		"other account":               {req: &sowerv1.AuthenticateJWTRequest{ServiceId: "ci", Account: "other", Jwt: "x.y.z"}, wantReason: authn.ReasonUnknownIdentity},
		"no jwt":                      {req: jwtReq("ci", "", ""), wantReason: authn.ReasonMissing},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := f.svc.AuthenticateJWT(ctx, tc.req)
			e := f.audit.last()
			if tc.wantLogin != "" {
				if err != nil || resp.GetLogin() != tc.wantLogin || len(resp.GetToken()) == 0 {
					t.Fatalf("AuthenticateJWT = %v, %v; want %s", resp, err, tc.wantLogin)
				}
				if e.Outcome != etcdstore.OutcomeSuccess || e.Authenticator != tc.wantHow || "host/"+strings.TrimPrefix(e.Identity, "acme:host:") != tc.wantLogin {
					t.Fatalf("audit %+v", e)
				}
				return
			}
			if tc.wantReason == authn.ReasonNotPermitted {
				// Conjur's 403: the host exists but lacks authenticate.
				if status.Code(err) != codes.PermissionDenied {
					t.Fatalf("AuthenticateJWT: %v, want PermissionDenied", err)
				}
			} else if status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != "authentication failed" {
				t.Fatalf("AuthenticateJWT: %v, want the generic Unauthenticated", err)
			}
			if e.Outcome != etcdstore.OutcomeFailure || e.Reason != string(tc.wantReason) || (tc.wantHow != "" && e.Authenticator != tc.wantHow) || e.Method != "AuthenticateJWT" {
				t.Fatalf("audit %+v, want reason %s by %s", e, tc.wantReason, tc.wantHow)
			}
		})
	}
}

// TestVerifiersAreCachedUntilTheirVariablesChange: the settings are read
// once per service, again only after a change to one of its variables.
func TestVerifiersAreCachedUntilTheirVariablesChange(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	login := func(issuer string) error {
		c := ciClaims("build", "main")
		c["iss"] = issuer
		_, err := f.svc.AuthenticateJWT(ctx, jwtReq("ci", "", f.sign(t, c)))
		return err
	}
	if err := login("https://ci.example.com"); err != nil {
		t.Fatal(err)
	}
	reads := f.vars.readCount()
	for range 10 {
		if err := login("https://ci.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if f.vars.readCount() != reads {
		t.Fatalf("%d more variable reads for cached logins", f.vars.readCount()-reads)
	}
	f.vars.set("conjur/authn-jwt/ci/issuer", "https://ci-2.example.com")
	f.svc.InvalidateJWT("acme:variable:app/unrelated") // another variable: still cached
	if err := login("https://ci.example.com"); err != nil {
		t.Fatalf("after an unrelated change: %v", err)
	}
	f.svc.InvalidateJWT("acme:variable:conjur/authn-jwt/ci/issuer")
	if err := login("https://ci.example.com"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("old issuer after the change: %v", err)
	}
	if err := login("https://ci-2.example.com"); err != nil {
		t.Fatalf("new issuer after the change: %v", err)
	}
	// Invalid settings are kept too, so that a misconfigured service
	// cannot make every request read etcd; a change clears them.
	f.vars.set("conjur/authn-jwt/ci/public-keys", `{"type":"nope"}`)
	f.svc.InvalidateJWT("")
	for range 3 {
		if err := login("https://ci-2.example.com"); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("with invalid settings: %v", err)
		}
	}
	if e := f.audit.last(); e.Reason != string(authn.ReasonUnavailable) || !strings.Contains(e.Detail, "settings") {
		t.Fatalf("audit of invalid settings: %+v", e)
	}
	reads = f.vars.readCount()
	_ = login("https://ci-2.example.com")
	if f.vars.readCount() != reads {
		t.Fatal("invalid settings were read again")
	}
}

func TestAPIKeyLoginsAreAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, err := f.keys.Rotate(ctx, "acme:user:alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, &sowerv1.AuthenticateRequest{Account: account, Login: "alice", ApiKey: key}); err != nil {
		t.Fatal(err)
	}
	if e := f.audit.last(); e.Outcome != etcdstore.OutcomeSuccess || e.Identity != "acme:user:alice" || e.Authenticator != "authn" || e.Method != "Authenticate" {
		t.Fatalf("success audit %+v", e)
	}
	_, err = f.svc.Authenticate(ctx, &sowerv1.AuthenticateRequest{Account: account, Login: "alice", ApiKey: "wrong"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatal(err)
	}
	e := f.audit.last()
	if e.Outcome != etcdstore.OutcomeFailure || e.Identity != "acme:user:alice" || e.Reason != string(authn.ReasonBadCredentials) || strings.Contains(fmt.Sprint(e), "wrong") {
		t.Fatalf("failure audit %+v", e)
	}
}
