package conjur_test

import (
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/server"
)

// from returns an HTTP client of n whose connections leave from the local
// address ip (127.0.0.x), so the node sees that client address.
func (n *anNode) from(t testing.TB, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	tr := &http.Transport{TLSClientConfig: testutil.TLSConfig(t, n.dataDir), DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// call sends a request and returns the status, body and headers.
func callFrom(t testing.TB, hc *http.Client, method, u, body string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

const restrictedPolicy = `
- !host
  id: pinned
  restricted_to: 127.0.0.2/32
- !user
  id: carol
  restricted_to: [127.0.0.2]
- !host
  id: anywhere
`

// TestRestrictedToIsEnforced: a host and a user restricted to 127.0.0.2
// authenticate (API key) and log in (basic auth) from 127.0.0.2, get 401
// with Conjur's empty body from 127.0.0.3, and the token they got is
// refused from 127.0.0.3 as conjur-rack refuses a token outside its cidr
// claim (403, "IP address rejected"). An unrestricted host works from
// anywhere.
func TestRestrictedToIsEnforced(t *testing.T) {
	n := startAuthnNode(t)
	keys := n.load(t, restrictedPolicy)
	good, bad := n.from(t, "127.0.0.2"), n.from(t, "127.0.0.3")
	tests := map[string]struct {
		login, key string
		restricted bool
	}{
		"host":              {"host/pinned", keys["acme:host:pinned"], true},
		"user":              {"carol", keys["acme:user:carol"], true},
		"unrestricted host": {"host/anywhere", keys["acme:host:anywhere"], false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			authnURL := n.url + "/authn/acme/" + url.PathEscape(tc.login) + "/authenticate"
			code, tok, _ := callFrom(t, good, http.MethodPost, authnURL, tc.key, map[string]string{"Accept-Encoding": "base64"})
			if code != http.StatusOK {
				t.Fatalf("authenticate from 127.0.0.2: %d %q\n%s", code, tok, n.log)
			}
			basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(tc.login+":"+tc.key))
			if code, body, _ := callFrom(t, good, http.MethodGet, n.url+"/authn/acme/login", "", map[string]string{"Authorization": basic}); code != http.StatusOK || body != tc.key {
				t.Fatalf("login from 127.0.0.2: %d %q", code, body)
			}
			bearer := map[string]string{"Authorization": `Token token="` + tok + `"`}
			if code, body, _ := callFrom(t, good, http.MethodGet, n.url+"/whoami", "", bearer); code != http.StatusOK {
				t.Fatalf("whoami from 127.0.0.2: %d %q", code, body)
			}

			wantFar := http.StatusOK
			if tc.restricted {
				wantFar = http.StatusUnauthorized
			}
			code, body, _ := callFrom(t, bad, http.MethodPost, authnURL, tc.key, nil)
			if code != wantFar || (tc.restricted && body != "") {
				t.Fatalf("authenticate from 127.0.0.3: %d %q, want %d with an empty body", code, body, wantFar)
			}
			if code, body, _ := callFrom(t, bad, http.MethodGet, n.url+"/authn/acme/login", "", map[string]string{"Authorization": basic}); code != wantFar {
				t.Fatalf("login from 127.0.0.3: %d %q, want %d", code, body, wantFar)
			}
			code, body, hdr := callFrom(t, bad, http.MethodGet, n.url+"/whoami", "", bearer)
			if !tc.restricted {
				if code != http.StatusOK {
					t.Fatalf("unrestricted token from 127.0.0.3: %d %q", code, body)
				}
				return
			}
			if code != http.StatusForbidden || body != "IP address rejected" || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
				t.Fatalf("token used from 127.0.0.3: %d %q (%s), want 403 \"IP address rejected\" text/plain", code, body, hdr.Get("Content-Type"))
			}
		})
	}
	if !strings.Contains(n.log.String(), "reason=invalid_origin") {
		t.Fatalf("the log does not name the refusal reason invalid_origin:\n%s", n.log)
	}
}

// TestForwardedForIsBelievedOnlyFromTrustedProxies: by default
// X-Forwarded-For is never believed, on the Conjur paths and on /v1 (where
// the gateway used to pass the client's own header on first); with
// --trusted-proxies the right-most address that is not a trusted proxy is
// the client.
func TestForwardedForIsBelievedOnlyFromTrustedProxies(t *testing.T) {
	proxies, err := authn.ParseNetworks([]string{"127.0.0.4/32", "127.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	plain := startAuthnNode(t)
	proxied := startAuthnNode(t, func(c *server.Config) { c.TrustedProxies = proxies })
	tests := map[string]struct {
		node *anNode
		from string
		xff  string
		want int
	}{
		"no proxies: a forged header is ignored":                   {plain, "127.0.0.3", "127.0.0.2", http.StatusUnauthorized},
		"no proxies: the real address counts":                      {plain, "127.0.0.2", "127.0.0.3", http.StatusOK},
		"untrusted peer: its header is ignored":                    {proxied, "127.0.0.3", "127.0.0.2", http.StatusUnauthorized},
		"trusted proxy: the client it names counts":                {proxied, "127.0.0.4", "127.0.0.2", http.StatusOK},
		"two trusted proxies: the client left of them counts":      {proxied, "127.0.0.4", "127.0.0.2, 127.0.0.5", http.StatusOK},
		"trusted proxy: a forged left-most entry is ignored":       {proxied, "127.0.0.4", "127.0.0.2, 127.0.0.3", http.StatusUnauthorized},
		"trusted proxy: a client naming a proxy cannot pass as it": {proxied, "127.0.0.4", "127.0.0.3, 127.0.0.2", http.StatusOK},
	}
	keys := map[*anNode]string{}
	for _, n := range []*anNode{plain, proxied} {
		keys[n] = n.load(t, restrictedPolicy)["acme:host:pinned"]
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hc := tc.node.from(t, tc.from)
			hdr := map[string]string{"X-Forwarded-For": tc.xff}
			code, body, _ := callFrom(t, hc, http.MethodPost, tc.node.url+"/authn/acme/host%2Fpinned/authenticate", keys[tc.node], hdr)
			if code != tc.want {
				t.Fatalf("Conjur path: %d %q, want %d", code, body, tc.want)
			}
			v1 := `{"login":"host/pinned","api_key":"` + keys[tc.node] + `"}`
			hdr["Content-Type"] = "application/json"
			code, body, _ = callFrom(t, hc, http.MethodPost, tc.node.url+"/v1/authn/acme/authenticate", v1, hdr)
			if code != tc.want {
				t.Fatalf("/v1 path: %d %q, want %d", code, body, tc.want)
			}
		})
	}
}

// TestStrangerCannotLockOutTheOwner: a stranger on 127.0.0.3 hammering the
// admin's name with wrong keys is answered 429 with Retry-After once
// limited, while the admin from 127.0.0.2 still logs in at once.
func TestStrangerCannotLockOutTheOwner(t *testing.T) {
	n := startAuthnNode(t)
	stranger, owner := n.from(t, "127.0.0.3"), n.from(t, "127.0.0.2")
	authnURL := n.url + "/authn/acme/admin/authenticate"
	limited := false
	for i := range 2 * authn.DefaultLimiterSourceBurst {
		code, body, hdr := callFrom(t, stranger, http.MethodPost, authnURL, "wrong-key-"+strconv.Itoa(i), nil)
		if code == http.StatusUnauthorized {
			continue
		}
		if code != http.StatusTooManyRequests {
			t.Fatalf("attempt %d: %d %q, want 401 or 429", i, code, body)
		}
		secs, err := strconv.Atoi(hdr.Get("Retry-After"))
		if err != nil || secs < 1 {
			t.Fatalf("429 without a Retry-After in seconds: %q", hdr.Get("Retry-After"))
		}
		limited = true
		break
	}
	if !limited {
		t.Fatal("the stranger was never rate limited")
	}
	for i := range 3 {
		if code, body, _ := callFrom(t, owner, http.MethodPost, authnURL, n.adminKey, nil); code != http.StatusOK {
			t.Fatalf("admin login %d from 127.0.0.2 while a stranger is limited: %d %q", i, code, body)
		}
	}
	// The stranger is still refused with the right key, from its address.
	if code, _, _ := callFrom(t, stranger, http.MethodPost, authnURL, n.adminKey, nil); code != http.StatusTooManyRequests {
		t.Fatalf("stranger with the right key: %d, want 429 (its address is limited)", code)
	}
}

// TestRestrictedToIsEnforcedForJWT: a Kubernetes workload's host restricted
// to 127.0.0.2 gets a token from 127.0.0.2 and 401 from 127.0.0.3.
func TestRestrictedToIsEnforcedForJWT(t *testing.T) {
	key := rsaKey("kube-1", 0)
	n, _ := k8sNode(t, key)
	n.load(t, `
- !policy
  id: conjur/authn-k8s/prod
  body:
  - !host
    id: pinned-web
    restricted_to: 127.0.0.2/32
    annotations:
      authn-k8s/namespace: shop
      authn-k8s/deployment: web
  - !grant
    role: !group consumers
    member: !host pinned-web
`)
	u := n.url + "/authn-jwt/prod/acme/" + url.PathEscape("conjur/authn-k8s/prod/pinned-web") + "/authenticate"
	for _, tc := range []struct {
		from string
		want int
	}{{"127.0.0.2", http.StatusOK}, {"127.0.0.3", http.StatusUnauthorized}} {
		form := url.Values{"jwt": {key.sign(t, saClaims(webPod, time.Now()))}}.Encode()
		code, body, _ := callFrom(t, n.from(t, tc.from), http.MethodPost, u, form, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		if code != tc.want {
			t.Fatalf("JWT login from %s: %d %q, want %d\n%s", tc.from, code, body, tc.want, n.log)
		}
	}
}
