package conjur_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cyberark/conjur-api-go/conjurapi"
	conjurauthn "github.com/cyberark/conjur-api-go/conjurapi/authn"
)

// switchPolicy declares the JWT authenticator "ci" with its status
// webservice, a host that may log in through it, and users: carol may read
// the authenticator but not switch it, dave may read its status, erin
// neither. "half" has a status webservice but no authenticator webservice,
// "nostatus" no status webservice, "broken" no key settings, and the
// Kubernetes authenticator "dev" is configured with public keys.
const switchPolicy = `
- !policy
  id: conjur/authn-jwt/ci
  body:
  - !webservice
  - !webservice status
  - !variable public-keys
  - !variable issuer
  - !variable token-app-property
- !policy
  id: conjur/authn-jwt/half
  body:
  - !webservice status
- !policy
  id: conjur/authn-jwt/nostatus
  body:
  - !webservice
- !policy
  id: conjur/authn-jwt/broken
  body:
  - !webservice
  - !webservice status
- !policy
  id: conjur/authn-k8s/dev
  body:
  - !webservice
  - !webservice status
  - !variable public-keys
  - !variable issuer
- !host
  id: ci-apps/build-1
- !permit
  role: !host ci-apps/build-1
  privileges: [ authenticate ]
  resource: !webservice conjur/authn-jwt/ci
- !user carol
- !user dave
- !user erin
- !permit
  role: !user carol
  privileges: [ read ]
  resource: !webservice conjur/authn-jwt/ci
- !permit
  role: !user dave
  privileges: [ read ]
  resource: !webservice conjur/authn-jwt/ci/status
- !permit
  role: !user dave
  privileges: [ read ]
  resource: !webservice conjur/authn-jwt/half/status
`

// switchNode is a node with switchPolicy loaded and "ci" configured; it
// returns the API keys of the roles the policy created and a valid JWT of
// ci-apps/build-1.
func switchNode(t *testing.T) (*anNode, map[string]string, string) {
	t.Helper()
	n := startAuthnNode(t)
	keys := n.load(t, switchPolicy)
	key := ecKey("ci-1")
	n.setVariables(t, map[string]string{
		"conjur/authn-jwt/ci/public-keys":        publicKeys(key),
		"conjur/authn-jwt/ci/issuer":             "https://ci.example.com",
		"conjur/authn-jwt/ci/token-app-property": "workload",
		"conjur/authn-k8s/dev/public-keys":       publicKeys(key),
		"conjur/authn-k8s/dev/issuer":            "https://kubernetes.default.svc.cluster.local",
	})
	now := time.Now()
	tok := key.sign(t, map[string]any{"iss": "https://ci.example.com", "sub": "pipeline", "workload": "ci-apps/build-1",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	return n, keys, tok
}

// as is a conjur-api-go client logged in as login.
func (n *anNode) as(t *testing.T, login, apiKey string) *conjurapi.Client {
	t.Helper()
	c, err := conjurapi.NewClientFromKey(conjurapi.Config{Account: "acme", ApplianceURL: n.url, SSLCertPath: n.caFile},
		conjurauthn.LoginPair{Login: login, APIKey: apiKey})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCLIAuthenticatorEnableDisable: `conjur authenticator enable|disable`
// (conjur-api-go's EnableAuthenticator) with Conjur's codes: 204 for a
// caller with update on the webservice, 403 without, 401 for a webservice
// that is not declared or another account, 422 for an enabled value that
// is not a boolean. A switched-off authenticator refuses logins with 401
// and an empty body (the reason in the log only), its status says it is
// not enabled, and switching it on brings it back.
func TestCLIAuthenticatorEnableDisable(t *testing.T) {
	n, keys, jwt := switchNode(t)
	admin := n.admin(t)
	carol := n.as(t, "carol", keys["acme:user:carol"])

	if code, body := n.jwtLogin(t, "ci", "", jwt); code != http.StatusOK {
		t.Fatalf("login before any switch: %d %s", code, body)
	}
	tests := map[string]struct {
		c       *conjurapi.Client
		kind    string
		service string
		enabled bool
		want    int
	}{
		"admin enables":                {admin, "jwt", "ci", true, 0},
		"carol lacks update":           {carol, "jwt", "ci", false, http.StatusForbidden},
		"a webservice not declared":    {admin, "jwt", "nowhere", false, http.StatusUnauthorized},
		"the Kubernetes authenticator": {admin, "k8s", "dev", true, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.c.EnableAuthenticator(tc.kind, tc.service, tc.enabled)
			if got := conjurStatus(err); got != tc.want || (tc.want == 0 && err != nil) {
				t.Fatalf("EnableAuthenticator(%s, %s, %v): %v, want status %d", tc.kind, tc.service, tc.enabled, err, tc.want)
			}
		})
	}
	code, body := call(t, admin, http.MethodPatch, n.url+"/authn-jwt/ci/other-account", "enabled=false")
	if code != http.StatusUnauthorized {
		t.Fatalf("another account: %d %s, want 401", code, body)
	}
	code, body = call(t, admin, http.MethodPatch, n.url+"/authn-jwt/ci/acme", "enabled=maybe")
	if code != http.StatusUnprocessableEntity || decodeError(t, code, body).Error.Code != "unprocessable_entity" {
		t.Fatalf("enabled=maybe: %d %s, want 422", code, body)
	}

	if err := admin.EnableAuthenticator("jwt", "ci", false); err != nil {
		t.Fatalf("disable authn-jwt/ci: %v", err)
	}
	code, b := n.jwtLogin(t, "ci", "", jwt)
	if code != http.StatusUnauthorized || len(b) != 0 {
		t.Fatalf("login through a disabled authenticator: %d %q, want 401 with no body", code, b)
	}
	if !strings.Contains(n.log.String(), "authenticator authn-jwt/ci is switched off") {
		t.Errorf("the log does not say the authenticator is switched off:\n%s", n.log)
	}
	if _, err := admin.AuthenticatorStatus("jwt", "ci"); conjurStatus(err) != http.StatusInternalServerError {
		t.Errorf("status of a disabled authenticator: %v, want 500", err)
	}
	code, body = call(t, admin, http.MethodGet, n.url+"/authn-jwt/ci/acme/status", "")
	if code != http.StatusInternalServerError || !strings.Contains(string(body), "AuthenticatorNotWhitelisted: CONJ00004E 'authn-jwt/ci' is not enabled") {
		t.Errorf("status of a disabled authenticator: %d %s", code, body)
	}

	if err := admin.EnableAuthenticator("jwt", "ci", true); err != nil {
		t.Fatalf("enable authn-jwt/ci: %v", err)
	}
	if code, body := n.jwtLogin(t, "ci", "", jwt); code != http.StatusOK {
		t.Fatalf("login after enabling again: %d %s", code, body)
	}
}

// TestAuthenticatorStatusAsConjur: GET /{authenticator}/{service_id}/{account}/status
// answers as Conjur's (cucumber authenticators_status and
// authenticators_k8s status.feature): 200 {"status":"ok"}, else
// {"status":"error","error":"#<class: CONJ… message>"} with 403 for a
// caller without read on the status webservice, 404 for an authenticator
// sower does not serve, 500 for one that is not configured; 401 without a
// token.
func TestAuthenticatorStatusAsConjur(t *testing.T) {
	n, keys, _ := switchNode(t)
	admin := n.admin(t)
	dave := n.as(t, "dave", keys["acme:user:dave"])
	erin := n.as(t, "erin", keys["acme:user:erin"])

	// conjur-api-go's own call.
	if st, err := dave.AuthenticatorStatus("jwt", "ci"); err != nil || st.Status != "ok" {
		t.Fatalf("AuthenticatorStatus(jwt, ci) as dave: %+v %v", st, err)
	}
	tests := map[string]struct {
		c         *conjurapi.Client
		path      string
		want      int
		wantError string // what the error must contain ("" for ok)
	}{
		"configured, admin":              {admin, "/authn-jwt/ci/acme/status", 200, ""},
		"configured Kubernetes":          {admin, "/authn-k8s/dev/acme/status", 200, ""},
		"no read on the status":          {erin, "/authn-jwt/ci/acme/status", 403, "#<Errors::Authentication::Security::RoleNotAuthorizedOnResource: CONJ00006E 'erin' does not have 'read' privilege on acme:webservice:conjur/authn-jwt/ci/status>"},
		"no status webservice":           {admin, "/authn-jwt/nostatus/acme/status", 500, "WebserviceNotFound: CONJ00005E Webservice 'authn-jwt/nostatus/status' not found"},
		"no authenticator webservice":    {dave, "/authn-jwt/half/acme/status", 500, "WebserviceNotFound: CONJ00005E Webservice 'authn-jwt/half' not found"},
		"another account":                {admin, "/authn-jwt/ci/other/status", 500, "AccountNotDefined: CONJ00008E"},
		"an authenticator sower lacks":   {admin, "/authn-oidc/okta/acme/status", 404, "AuthenticatorNotSupported: CONJ00001E"},
		"settings without a key":         {admin, "/authn-jwt/broken/acme/status", 500, "#<Sower::AuthenticatorSettingsInvalid: "},
		"no read, Kubernetes":            {erin, "/authn-k8s/dev/acme/status", 403, "RoleNotAuthorizedOnResource: CONJ00006E"},
		"a service never declared (k8s)": {admin, "/authn-k8s/nowhere/acme/status", 500, "WebserviceNotFound: CONJ00005E"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, body := call(t, tc.c, http.MethodGet, n.url+tc.path, "")
			var got struct{ Status, Error string }
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%d %s: not JSON", code, body)
			}
			if code != tc.want {
				t.Fatalf("%d %s, want %d", code, body, tc.want)
			}
			switch {
			case tc.wantError == "" && (got.Status != "ok" || got.Error != ""):
				t.Fatalf("%s, want {\"status\":\"ok\"}", body)
			case tc.wantError != "" && (got.Status != "error" || !strings.Contains(got.Error, tc.wantError)):
				t.Fatalf("%s, want status error with %q", body, tc.wantError)
			}
		})
	}
	resp, err := n.http.Get(n.url + "/authn-jwt/ci/acme/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status without a token: %d, want 401", resp.StatusCode)
	}
}
