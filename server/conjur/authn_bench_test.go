package conjur_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
)

// BenchmarkAuthnREST measures logins per second on one node over TLS
// through Conjur's REST endpoints, with concurrent clients (b.RunParallel
// with 16 goroutines per core), each on its own kept-alive HTTP/1.1
// connection, unless the case says otherwise. Every login is a whole
// request: TLS, HTTP, the node's gRPC hop, the check, the token, the audit.
func BenchmarkAuthnREST(b *testing.B) {
	key := rsaKey("kube-1", 0)
	n, _ := k8sNode(b, key)
	keys := n.load(b, `
- !host bench/api-key-host
- !policy
  id: conjur/authn-k8s/nokube
  body:
  - !webservice
  - !variable public-keys
  - !variable issuer
  - !variable audience
  - !host apps/shop/*/*
  - !permit
    role: !host apps/shop/*/*
    privilege: [ authenticate ]
    resource: !webservice
- !policy
  id: conjur/authn-jwt/ci
  body:
  - !webservice
  - !variable public-keys
  - !variable issuer
  - !variable token-app-property
  - !variable identity-path
- !host ci-apps/build-42
- !permit
  role: !host ci-apps/build-42
  privilege: [ authenticate ]
  resource: !webservice conjur/authn-jwt/ci
`)
	n.setVariables(b, map[string]string{
		"conjur/authn-k8s/nokube/public-keys": publicKeys(key), "conjur/authn-k8s/nokube/issuer": kubeIssuer,
		"conjur/authn-k8s/nokube/audience": kubeAudience,
		"conjur/authn-jwt/ci/public-keys":  publicKeys(key), "conjur/authn-jwt/ci/issuer": "https://ci.example.com",
		"conjur/authn-jwt/ci/token-app-property": "workload", "conjur/authn-jwt/ci/identity-path": "ci-apps",
	})
	now := time.Now()
	saToken := key.sign(b, saClaims(webPod, now))
	ciToken := key.sign(b, map[string]any{"iss": "https://ci.example.com", "sub": "x", "workload": "build-42", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	jwtReq := func(service, host, token string) (string, string) {
		u := n.url + "/authn-jwt/" + service + "/acme"
		if host != "" {
			u += "/" + url.PathEscape(host)
		}
		return u + "/authenticate", url.Values{"jwt": {token}}.Encode()
	}
	cases := []struct {
		name          string
		url, body     string
		newConnection bool
	}{
		{name: "API key", url: n.url + "/authn/acme/" + url.PathEscape("host/bench/api-key-host") + "/authenticate", body: keys["acme:host:bench/api-key-host"]},
	}
	add := func(name, service, host, token string, fresh bool) {
		u, body := jwtReq(service, host, token)
		cases = append(cases, struct {
			name          string
			url, body     string
			newConnection bool
		}{name, u, body, fresh})
	}
	add("JWT authn-jwt (public-keys, token-app-property)", "ci", "", ciToken, false)
	add("JWT authn-k8s namespace form, no Kubernetes API", "nokube", "conjur/authn-k8s/nokube/apps/shop/*/*", saToken, false)
	add("JWT authn-k8s namespace form, pod read from the API", "prod", apps+"shop/*/*", saToken, false)
	add("JWT authn-k8s deployment form, pod+RS+deployment read", "prod", apps+"shop/deployment/web", saToken, false)
	add("JWT authn-k8s namespace form, no API, new TLS connection each", "nokube", "conjur/authn-k8s/nokube/apps/shop/*/*", saToken, true)
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			tr := &http.Transport{TLSClientConfig: testutil.TLSConfig(b, n.dataDir), MaxIdleConnsPerHost: 256, DisableKeepAlives: tc.newConnection}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			// Warm up: the JWKS, the verifier cache, the connections.
			if code := post(b, hc, tc.url, tc.body); code != http.StatusOK {
				b.Fatalf("warm-up login: %d\n%s", code, n.log)
			}
			b.SetParallelism(16)
			cpu0 := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if code := post(b, hc, tc.url, tc.body); code != http.StatusOK {
						b.Errorf("login: %d", code)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
			// CPU per login, the node's and the clients' together (they
			// share the process): on a machine shared with other work the
			// wall-clock rate understates what two idle cores do.
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/login")
		})
	}
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func post(b *testing.B, hc *http.Client, u, body string) int {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Encoding", "base64")
	resp, err := hc.Do(req)
	if err != nil {
		b.Error(err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
