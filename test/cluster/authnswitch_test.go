package clustertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestFollowerRefusesDisabledAuthenticator: `conjur authenticator disable`
// on the Leader reaches a Follower with the replicated state, and the
// Follower refuses that authenticator's logins (401) from the revision the
// Leader's answer names; enabling it brings logins back; the PATCH itself
// is a write a Follower answers 405 naming the Leader. A password changed
// on the Leader reaches the Follower, which refuses a password login (it
// would issue a new API key) naming the Leader. One Leader, one Follower,
// real processes.
func TestFollowerRefusesDisabledAuthenticator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	h := newHarness(t, "prod", 2)
	l1 := h.node("leader-1", "127.0.0.2")
	if err := l1.start("--cluster", "prod"); err != nil {
		t.Fatal(err)
	}
	admin, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	pol := strings.Replace(h.clusterPolicy("leader-1"), "    - !webservice\n",
		"    - !webservice\n      annotations:\n        sower/follower-hostnames: \"*."+followerDomain+"\"\n", 1) + `
- !policy
  id: conjur/authn-jwt/ci
  body:
  - !webservice
  - !variable public-keys
  - !variable issuer
  - !variable token-app-property
- !host ci-apps/build-1
- !user alice
- !permit
  role: !host ci-apps/build-1
  privileges: [ authenticate ]
  resource: !webservice conjur/authn-jwt/ci
`
	code, body, err := h.loadPolicy(l1.url(), admin, pol)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("load policy: %d %s %v", code, body, err)
	}
	var loaded struct {
		CreatedRoles map[string]struct {
			APIKey string `json:"api_key"`
		} `json:"created_roles"`
	}
	if err := json.Unmarshal([]byte(body), &loaded); err != nil {
		t.Fatal(err)
	}
	aliceKey := loaded.CreatedRoles[account+":user:alice"].APIKey
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv.Public(), KeyID: "ci-1", Algorithm: string(jose.ES256), Use: "sig"}}})
	for name, v := range map[string]string{
		"public-keys":        `{"type":"jwks","value":` + string(jwks) + `}`,
		"issuer":             "https://ci.example.com",
		"token-app-property": "workload",
	} {
		code, _, body, err := l1.req(http.MethodPost, "/secrets/"+account+"/variable/"+url.PathEscape("conjur/authn-jwt/ci/"+name), admin, v)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("set %s: %d %s %v", name, code, body, err)
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "ci-1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": "https://ci.example.com", "sub": "pipeline", "workload": "ci-apps/build-1",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	jws, err := signer.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	jwt, _ := jws.CompactSerialize()

	f1, _ := h.followerNode(l1.url(), "follower-1", "127.0.0.5")
	if err := f1.start(); err != nil {
		t.Fatal(err)
	}
	// login posts the JWT to p once p holds revision rev.
	login := func(p *proc, rev string) int {
		t.Helper()
		code, _, body, err := p.req(http.MethodPost, "/authn-jwt/ci/"+account+"/authenticate", "", "jwt="+jwt,
			"Content-Type", "application/x-www-form-urlencoded", "X-Sower-Min-Revision", rev)
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusPreconditionFailed {
			t.Fatalf("%s did not reach revision %s: %s", p.name, rev, body)
		}
		return code
	}
	// patch switches the authenticator on the Leader and returns the
	// revision its answer names.
	patch := func(enabled bool) string {
		t.Helper()
		code, hdr, body, err := l1.req(http.MethodPatch, "/authn-jwt/ci/"+account, admin, fmt.Sprintf("enabled=%v", enabled),
			"Content-Type", "application/x-www-form-urlencoded")
		if err != nil || code != http.StatusNoContent {
			t.Fatalf("PATCH enabled=%v on the Leader: %d %s %v", enabled, code, body, err)
		}
		return hdr.Get("X-Sower-Revision")
	}

	if code := login(f1, "0"); code != http.StatusOK {
		t.Fatalf("login on the Follower before any switch: %d", code)
	}
	var hdr http.Header
	code, hdr, body, err = f1.req(http.MethodPatch, "/authn-jwt/ci/"+account, admin, "enabled=false", "Content-Type", "application/x-www-form-urlencoded")
	if err != nil || code != http.StatusMethodNotAllowed || hdr.Get("X-Sower-Leader") != l1.url() {
		t.Fatalf("PATCH on the Follower: %d %s %v (X-Sower-Leader %q), want 405 naming %s", code, body, err, hdr.Get("X-Sower-Leader"), l1.url())
	}
	if code := login(f1, "0"); code != http.StatusOK {
		t.Fatalf("the refused PATCH switched the authenticator off: %d", code)
	}

	rev := patch(false)
	for _, p := range []*proc{l1, f1} {
		if code := login(p, rev); code != http.StatusUnauthorized {
			t.Errorf("login on %s through the disabled authenticator: %d, want 401", p.name, code)
		}
	}
	rev = patch(true)
	for _, p := range []*proc{l1, f1} {
		if code := login(p, rev); code != http.StatusOK {
			t.Errorf("login on %s after enabling again: %d, want 200", p.name, code)
		}
	}

	// A password is set on the Leader; a Follower serves API-key logins but
	// not password logins, which issue a new key: it names the Leader.
	basic := func(p *proc, method, path, user, secret, body, minRev string) (int, http.Header, string) {
		t.Helper()
		r, _ := http.NewRequest(method, p.url()+path, strings.NewReader(body))
		r.SetBasicAuth(user, secret)
		if minRev != "" {
			r.Header.Set("X-Sower-Min-Revision", minRev)
		}
		resp, err := p.client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	passwordPath, loginPath := "/authn/"+account+"/password", "/authn/"+account+"/login"
	if code, _, body := basic(f1, http.MethodPut, passwordPath, "alice", aliceKey, "New-Password1", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("change-password on the Follower: %d %s, want 405", code, body)
	}
	code, hdr, body = basic(l1, http.MethodPut, passwordPath, "alice", aliceKey, "New-Password1", "")
	if code != http.StatusNoContent {
		t.Fatalf("change-password on the Leader: %d %s", code, body)
	}
	rev = hdr.Get("X-Sower-Revision")
	if code, _, body := basic(f1, http.MethodGet, loginPath, "alice", aliceKey, "", rev); code != http.StatusOK || body != aliceKey {
		t.Errorf("API-key login on the Follower: %d %q, want the key", code, body)
	}
	if code, _, body := basic(f1, http.MethodGet, loginPath, "alice", "New-Password1", "", rev); code != http.StatusUnprocessableEntity || !strings.Contains(body, l1.url()) {
		t.Errorf("password login on the Follower: %d %s, want 422 naming the Leader %s", code, body, l1.url())
	}
}
