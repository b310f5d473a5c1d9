package conjur_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyberark/conjur-api-go/conjurapi"
)

// k8sPolicy enables the Kubernetes authenticator "prod": its webservice,
// its settings variables, and hosts in each of the six host-id forms and
// the annotation form, all but one allowed to authenticate.
const k8sPolicy = `
- !policy
  id: conjur
  body:
  - !policy
    id: authn-k8s/prod
    body:
    - !webservice
    - !variable jwks-uri
    - !variable issuer
    - !variable audience
    - !variable kubernetes/api-url
    - !variable kubernetes/ca-cert
    - !variable kubernetes/service-account-token
    - !group consumers
    - !permit
      role: !group consumers
      privileges: [ read, authenticate ]
      resource: !webservice
    - !host apps/shop/*/*
    - !host apps/shop/deployment/web
    - !host apps/ops/deployment_config/legacy
    - !host apps/shop/stateful_set/db
    - !host apps/shop/pod/web-7d9c8b-x2x4z
    - !host apps/shop/service_account/web
    - !host apps/shop/deployment/no-permission
    - !host
      id: annotated-web
      annotations:
        authn-k8s/namespace: shop
        authn-k8s/deployment: web
    - !grant
      role: !group consumers
      members:
      - !host apps/shop/*/*
      - !host apps/shop/deployment/web
      - !host apps/ops/deployment_config/legacy
      - !host apps/shop/stateful_set/db
      - !host apps/shop/pod/web-7d9c8b-x2x4z
      - !host apps/shop/service_account/web
      - !host annotated-web
`

const apps = "conjur/authn-k8s/prod/apps/"

// k8sNode is a node with the "prod" Kubernetes authenticator configured
// against a Kubernetes API server whose JWKS holds key.
func k8sNode(t testing.TB, key signingKey) (*anNode, *kubeAPI) {
	t.Helper()
	n := startAuthnNode(t)
	kube := newKubeAPI(t, key)
	n.load(t, k8sPolicy)
	n.setVariables(t, map[string]string{
		"conjur/authn-k8s/prod/jwks-uri":                         kube.URL + "/openid/v1/jwks",
		"conjur/authn-k8s/prod/issuer":                           kubeIssuer,
		"conjur/authn-k8s/prod/audience":                         kubeAudience,
		"conjur/authn-k8s/prod/kubernetes/api-url":               kube.URL,
		"conjur/authn-k8s/prod/kubernetes/ca-cert":               kube.caPEM(),
		"conjur/authn-k8s/prod/kubernetes/service-account-token": kube.token,
	})
	return n, kube
}

// accessToken decodes a base64 access token and returns its subject.
func accessTokenSubject(t testing.TB, b64 []byte) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil {
		t.Fatalf("token is not base64: %q", b64)
	}
	var tok struct{ Payload string }
	if err := json.Unmarshal(raw, &tok); err != nil {
		t.Fatalf("token is not JSON: %s", raw)
	}
	p, err := base64.StdEncoding.DecodeString(tok.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Sub string }
	if err := json.Unmarshal(p, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Sub
}

// TestServiceAccountTokenForEachHostForm: a valid projected
// service-account token authenticates through the REST endpoint as a host
// of each of the six host-id forms and of the annotation form, and the
// access token it gets works on a protected endpoint.
func TestServiceAccountTokenForEachHostForm(t *testing.T) {
	key := rsaKey("kube-1", 0)
	n, kube := k8sNode(t, key)
	now := time.Now()
	tests := map[string]struct {
		pod  pod
		host string
	}{
		"namespace":         {webPod, apps + "shop/*/*"},
		"deployment":        {webPod, apps + "shop/deployment/web"},
		"deployment_config": {legacyPod, apps + "ops/deployment_config/legacy"},
		"stateful_set":      {dbPod, apps + "shop/stateful_set/db"},
		"pod":               {webPod, apps + "shop/pod/web-7d9c8b-x2x4z"},
		"service_account":   {webPod, apps + "shop/service_account/web"},
		"annotations":       {webPod, "conjur/authn-k8s/prod/annotated-web"},
		"host/ prefix":      {webPod, "host/" + apps + "shop/*/*"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, body := n.jwtLogin(t, "prod", tc.host, key.sign(t, saClaims(tc.pod, now)))
			if code != http.StatusOK {
				t.Fatalf("authenticate as %s: %d %s\n%s", tc.host, code, body, n.log)
			}
			want := "host/" + strings.TrimPrefix(tc.host, "host/")
			if sub := accessTokenSubject(t, body); sub != want {
				t.Fatalf("token for %q, want %q", sub, want)
			}
			if who := n.whoami(t, string(body)); who["username"] != want {
				t.Fatalf("whoami = %v", who)
			}
		})
	}
	if kube.requests.Load() == 0 {
		t.Fatal("the Kubernetes API was never asked (pods, owners, JWKS)")
	}
}

// TestRefusedTokensGet401AndTheAuditSaysWhy: every kind of bad token, host
// or service is answered 401 with an empty body, while the audit trail and
// the log name the check that failed.
func TestRefusedTokensGet401AndTheAuditSaysWhy(t *testing.T) {
	key := rsaKey("kube-1", 0)
	n, _ := k8sNode(t, key)
	now := time.Now()
	valid := func() map[string]any { return saClaims(webPod, now) }
	with := func(change func(map[string]any)) map[string]any {
		c := valid()
		change(c)
		return c
	}
	nsHost := apps + "shop/*/*"
	tests := map[string]struct {
		service, host, token string
		reason               string
	}{
		"expired": {"prod", nsHost, key.sign(t, with(func(c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		})), "expired"},
		"not yet valid": {"prod", nsHost, key.sign(t, with(func(c map[string]any) {
			c["nbf"], c["iat"] = now.Add(time.Hour).Unix(), now.Add(time.Hour).Unix()
			c["exp"] = now.Add(2 * time.Hour).Unix()
		})), "not_yet_valid"},
		"wrong audience":      {"prod", nsHost, key.sign(t, with(func(c map[string]any) { c["aud"] = []string{"https://elsewhere.example.com"} })), "wrong_audience"},
		"wrong issuer":        {"prod", nsHost, key.sign(t, with(func(c map[string]any) { c["iss"] = "https://evil.example.com" })), "wrong_issuer"},
		"unknown key":         {"prod", nsHost, rsaKey("stolen", 1).sign(t, valid()), "unknown_key"},
		"alg none":            {"prod", nsHost, unsignedToken("kube-1", valid()), "algorithm_not_allowed"},
		"HMAC signed":         {"prod", nsHost, hmacToken(key, valid()), "algorithm_not_allowed"},
		"malformed":           {"prod", nsHost, "this.is-not-a.jwt", "malformed"},
		"no jwt":              {"prod", nsHost, "", "missing"},
		"unknown host":        {"prod", apps + "shop/pod/ghost", key.sign(t, valid()), "unknown_identity"},
		"another pod's host":  {"prod", apps + "shop/stateful_set/db", key.sign(t, valid()), "workload_mismatch"},
		"service not enabled": {"staging", nsHost, key.sign(t, valid()), "not_enabled"},
		"no host named":       {"prod", "", key.sign(t, valid()), "invalid_host_id"},
	}
	rev := n.revision(t)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, body := n.jwtLogin(t, tc.service, tc.host, tc.token)
			if code != http.StatusUnauthorized || len(body) != 0 {
				t.Fatalf("got %d %q, want 401 with an empty body", code, body)
			}
		})
	}
	want := map[string]bool{}
	for _, tc := range tests {
		want[tc.reason] = true
	}
	recs := n.waitAudit(t, rev, func(recs []auditRecord) bool {
		seen := map[string]bool{}
		for _, r := range recs {
			if r.Type == "authn-failure" {
				seen[r.Event.Reason] = true
			}
		}
		for r := range want {
			if !seen[r] {
				return false
			}
		}
		return true
	})
	for _, r := range recs {
		if r.Type != "authn-failure" {
			continue
		}
		e := r.Event
		if e.Source != "127.0.0.1" || !strings.HasPrefix(e.Authenticator, "authn-") || e.Detail == "" || e.Method != "AuthenticateJWT" {
			t.Errorf("audit record lacks who/how/where/why: %+v", e)
		}
		if strings.Contains(e.Detail, "eyJ") {
			t.Errorf("audit detail holds a token: %q", e.Detail)
		}
		if e.Reason == "unknown_identity" && e.Identity != "acme:host:"+apps+"shop/pod/ghost" {
			t.Errorf("unknown host recorded as %q", e.Identity)
		}
	}
	logs := n.log.String()
	for _, reason := range slices.Sorted(maps.Keys(want)) {
		if !strings.Contains(logs, "reason="+reason) {
			t.Errorf("the log does not say reason=%s", reason)
		}
	}
	if strings.Contains(logs, "eyJ") {
		t.Error("the log holds a token")
	}
}

// TestChangedSettingsTakeEffect: the authenticator is rebuilt when one of
// its variables changes, here the audience.
func TestChangedSettingsTakeEffect(t *testing.T) {
	key := rsaKey("kube-1", 0)
	n, _ := k8sNode(t, key)
	tok := key.sign(t, saClaims(webPod, time.Now()))
	host := apps + "shop/*/*"
	if code, body := n.jwtLogin(t, "prod", host, tok); code != http.StatusOK {
		t.Fatalf("before the change: %d %s", code, body)
	}
	n.setVariables(t, map[string]string{"conjur/authn-k8s/prod/audience": "https://conjur-2.example.com"})
	if code, _ := n.jwtLogin(t, "prod", host, tok); code != http.StatusUnauthorized {
		t.Fatalf("a token for the old audience after the change: %d", code)
	}
	c := saClaims(webPod, time.Now())
	c["aud"] = []string{"https://conjur-2.example.com"}
	if code, body := n.jwtLogin(t, "prod", host, key.sign(t, c)); code != http.StatusOK {
		t.Fatalf("a token for the new audience: %d %s", code, body)
	}
}

// TestUnknownKeysDoNotHammerTheIssuer: tokens with made-up key ids make
// the node fetch the JWKS again at most once per refresh interval (10 s),
// however many arrive.
func TestUnknownKeysDoNotHammerTheIssuer(t *testing.T) {
	key := rsaKey("kube-1", 0)
	n, kube := k8sNode(t, key)
	host := apps + "shop/*/*"
	if code, _ := n.jwtLogin(t, "prod", host, key.sign(t, saClaims(webPod, time.Now()))); code != http.StatusOK {
		t.Fatal("first login failed")
	}
	before := kube.jwksHits.Load()
	for i := range 50 {
		forged := rsaKey(fmt.Sprintf("forged-%d", i), 1)
		if code, _ := n.jwtLogin(t, "prod", host, forged.sign(t, saClaims(webPod, time.Now()))); code != http.StatusUnauthorized {
			t.Fatalf("forged kid %d: %d", i, code)
		}
	}
	if hits := kube.jwksHits.Load() - before; hits > 1 {
		t.Fatalf("50 unknown kids made %d JWKS fetches, want at most 1", hits)
	}
}

// jwtPolicy enables the generic JWT authenticator "ci" with static public
// keys and token-app-property, and a host it may log in as.
const jwtPolicy = `
- !policy
  id: conjur
  body:
  - !policy
    id: authn-jwt/ci
    body:
    - !webservice
    - !variable public-keys
    - !variable issuer
    - !variable audience
    - !variable token-app-property
    - !variable identity-path
- !policy
  id: ci
  body:
  - !variable deploy-key
- !host
  id: ci-apps/build-42
  annotations:
    authn-jwt/ci/ref: main
- !host
  id: ci-apps/build-43
- !permit
  role: !host ci-apps/build-42
  privileges: [ authenticate ]
  resource: !webservice conjur/authn-jwt/ci
- !permit
  role: !host ci-apps/build-42
  privileges: [ read, execute ]
  resource: !variable ci/deploy-key
`

// TestConjurClientAuthenticatesWithAJWT: conjur-api-go's own JWT
// authenticator logs in through authn-jwt (host from token-app-property,
// claims checked against the host's annotations) and reads a secret.
func TestConjurClientAuthenticatesWithAJWT(t *testing.T) {
	n := startAuthnNode(t)
	key := ecKey("ci-1")
	n.load(t, jwtPolicy)
	n.setVariables(t, map[string]string{
		"conjur/authn-jwt/ci/public-keys":        publicKeys(key),
		"conjur/authn-jwt/ci/issuer":             "https://ci.example.com",
		"conjur/authn-jwt/ci/audience":           "sower",
		"conjur/authn-jwt/ci/token-app-property": "workload",
		"conjur/authn-jwt/ci/identity-path":      "ci-apps",
		"ci/deploy-key":                          "ssh-ed25519 AAAA",
	})
	claims := func(workload, ref string) map[string]any {
		now := time.Now()
		return map[string]any{"iss": "https://ci.example.com", "aud": "sower", "sub": "pipeline", "workload": workload, "ref": ref,
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	}
	client := func(token string) *conjurapi.Client {
		c, err := conjurapi.NewClientFromJwt(conjurapi.Config{Account: "acme", ApplianceURL: n.url, SSLCertPath: n.caFile,
			AuthnType: "jwt", ServiceID: "ci", JWTContent: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	v, err := client(key.sign(t, claims("build-42", "main"))).RetrieveSecret("ci/deploy-key")
	if err != nil || string(v) != "ssh-ed25519 AAAA" {
		t.Fatalf("RetrieveSecret with a JWT: %q, %v\n%s", v, err, n.log)
	}
	// A host without authenticate is Conjur's 403; other refusals 401.
	tests := map[string]struct {
		tok, want string
	}{
		"annotation mismatch":      {key.sign(t, claims("build-42", "feature")), "401"},
		"host without permission":  {key.sign(t, claims("build-43", "main")), "403"},
		"host that does not exist": {key.sign(t, claims("build-99", "main")), "401"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := client(tc.tok).RetrieveSecret("ci/deploy-key"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RetrieveSecret: %v, want a %s", err, tc.want)
			}
		})
	}
	// token-app-property names the host; a URL that names one too is refused.
	if code, _ := n.jwtLogin(t, "ci", "ci-apps/build-42", key.sign(t, claims("build-42", "main"))); code != http.StatusUnauthorized {
		t.Fatalf("host in the URL with token-app-property: %d", code)
	}
}

// TestConjurStatusCodesForKubernetesLogins: a host that exists but lacks
// authenticate on the webservice is answered 403 with an empty body, as
// Conjur answers (RoleNotAuthorizedOnResource); Conjur's authn-k8s path
// serves the same JWT login; a request there without a jwt (Conjur's
// certificate flow) is 401; and a missing DeploymentConfig or service
// account refuses the login through the REST endpoint.
func TestConjurStatusCodesForKubernetesLogins(t *testing.T) {
	key := rsaKey("kube-1", 0)
	n, _ := k8sNode(t, key)
	n.load(t, `
- !host
  id: team-a/ops/deployment_config/orphan
- !host
  id: team-a/shop/service_account/batch
- !host
  id: team-a/shop/deployment/web
- !grant
  role: !group conjur/authn-k8s/prod/consumers
  members:
  - !host team-a/ops/deployment_config/orphan
  - !host team-a/shop/service_account/batch
  - !host team-a/shop/deployment/web
`)
	now := time.Now()
	orphanPod := pod{"ops", "orphan-2-h7d4s", uid(22), "default", uid(103)}
	batchPod := pod{"shop", "batch-x7k2p", uid(20), "batch", uid(104)}
	login := func(path, body string) (int, []byte) {
		resp, err := n.http.Post(n.url+path, "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	esc := url.PathEscape
	tests := map[string]struct {
		path, jwt string
		want      int
	}{
		"host without authenticate": {"/authn-jwt/prod/acme/" + esc("host/"+apps+"shop/deployment/no-permission") + "/authenticate", key.sign(t, saClaims(webPod, now)), http.StatusForbidden},
		"authn-k8s path":            {"/authn-k8s/prod/acme/" + esc("host/"+apps+"shop/deployment/web") + "/authenticate", key.sign(t, saClaims(webPod, now)), http.StatusOK},
		"authn-k8s path, 403":       {"/authn-k8s/prod/acme/" + esc("host/"+apps+"shop/deployment/no-permission") + "/authenticate", key.sign(t, saClaims(webPod, now)), http.StatusForbidden},
		"authn-k8s path, no jwt":    {"/authn-k8s/prod/acme/" + esc("host/"+apps+"shop/deployment/web") + "/authenticate", "", http.StatusUnauthorized},
		"host under another policy": {"/authn-k8s/prod/acme/" + esc("host/team-a/shop/deployment/web") + "/authenticate", key.sign(t, saClaims(webPod, now)), http.StatusOK},
		"deployment config missing": {"/authn-k8s/prod/acme/" + esc("host/team-a/ops/deployment_config/orphan") + "/authenticate", key.sign(t, saClaims(orphanPod, now)), http.StatusUnauthorized},
		"service account missing":   {"/authn-jwt/prod/acme/" + esc("host/team-a/shop/service_account/batch") + "/authenticate", key.sign(t, saClaims(batchPod, now)), http.StatusUnauthorized},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			body := ""
			if tc.jwt != "" {
				body = "jwt=" + tc.jwt
			}
			code, b := login(tc.path, body)
			if code != tc.want {
				t.Fatalf("%s: %d %s, want %d\n%s", tc.path, code, b, tc.want, n.log)
			}
			if code != http.StatusOK && len(b) != 0 {
				t.Fatalf("refusal has a body: %q", b)
			}
		})
	}
	// Conjur's certificate flow is not built: 501 saying what to use.
	if code, b := login("/authn-k8s/prod/inject_client_cert", "-----BEGIN CERTIFICATE REQUEST-----"); code != http.StatusNotImplemented || !strings.Contains(string(b), "JWT mode") {
		t.Fatalf("inject_client_cert: %d %s", code, b)
	}
	logs := n.log.String()
	for _, d := range []string{"deployment config ops/orphan does not exist", "service account shop/batch does not exist"} {
		if !strings.Contains(logs, d) {
			t.Errorf("the log does not say %q", d)
		}
	}
}
