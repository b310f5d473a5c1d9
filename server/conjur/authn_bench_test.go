package conjur_test

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
)

// BenchmarkAuthnREST measures logins per second on one node over TLS
// through Conjur's REST endpoints, with 32 concurrent clients in another
// process, each on its own kept-alive HTTP/1.1 connection unless the case
// says otherwise. Every login is a whole request: TLS, HTTP, the node's
// gRPC hop, the check, the token, the audit record.
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
			// Warm up: the JWKS, the verifier cache.
			tr := &http.Transport{TLSClientConfig: testutil.TLSConfig(b, n.dataDir)}
			defer tr.CloseIdleConnections()
			if code := post(b, &http.Client{Transport: tr}, tc.url, tc.body); code != http.StatusOK {
				b.Fatalf("warm-up login: %d\n%s", code, n.log)
			}
			// The clients run in a child process, so that this process's
			// CPU time is the node's alone.
			cmd := exec.Command(os.Args[0], "-test.run=^TestAuthnLoadClient$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SOWER_LOAD_URL="+tc.url, "SOWER_LOAD_BODY="+tc.body, "SOWER_LOAD_DATADIR="+n.dataDir,
				"SOWER_LOAD_N="+strconv.Itoa(b.N), "SOWER_LOAD_CLIENTS=32", "SOWER_LOAD_FRESH="+strconv.FormatBool(tc.newConnection))
			cpu0 := processCPU()
			b.ResetTimer()
			out, err := cmd.CombinedOutput()
			b.StopTimer()
			if err != nil {
				b.Fatalf("load client: %v\n%s", err, out)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
			// On a machine shared with other work the wall-clock rate
			// understates what two idle cores do; the node's CPU per
			// login does not depend on the others.
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "node-cpu-µs/login")
		})
	}
}

// TestAuthnLoadClient is BenchmarkAuthnREST's client process: it does
// nothing unless the benchmark runs it.
func TestAuthnLoadClient(t *testing.T) {
	u := os.Getenv("SOWER_LOAD_URL")
	if u == "" {
		t.Skip("run by BenchmarkAuthnREST only")
	}
	total, _ := strconv.Atoi(os.Getenv("SOWER_LOAD_N"))
	clients, _ := strconv.Atoi(os.Getenv("SOWER_LOAD_CLIENTS"))
	fresh, _ := strconv.ParseBool(os.Getenv("SOWER_LOAD_FRESH"))
	body := os.Getenv("SOWER_LOAD_BODY")
	tr := &http.Transport{TLSClientConfig: testutil.TLSConfig(t, os.Getenv("SOWER_LOAD_DATADIR")), MaxIdleConnsPerHost: 256, DisableKeepAlives: fresh}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(total) {
				if code := post(t, hc, u, body); code != http.StatusOK {
					t.Errorf("login: %d", code)
					return
				}
			}
		})
	}
	wg.Wait()
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func post(b testing.TB, hc *http.Client, u, body string) int {
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
