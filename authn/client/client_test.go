package client_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sowerproject/sower/authn/client"
	"github.com/sowerproject/sower/pki"
)

func TestMain(m *testing.M) {
	// pki links smallstep, whose glog starts a flush goroutine at init.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"))
}

// conjurToken is an access token in Conjur's JSON form; the client does
// not verify signatures, the server does.
func conjurToken(sub string, iat time.Time, life time.Duration) []byte {
	payload, _ := json.Marshal(map[string]any{"sub": sub, "iat": iat.Unix(), "exp": iat.Add(life).Unix()})
	b, _ := json.Marshal(map[string]string{
		"protected": base64.StdEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":"k","typ":"JWT"}`)),
		"payload":   base64.StdEncoding.EncodeToString(payload), "signature": "c2ln",
	})
	return b
}

// authnServer is a Conjur authn-jwt endpoint whose answers the test
// scripts: a status per request, then 200 with a fresh token.
type authnServer struct {
	*httptest.Server
	mu       sync.Mutex
	script   []int
	requests []*http.Request
	forms    []url.Values
	issued   [][]byte
	now      func() time.Time
}

func newAuthnServer(t *testing.T, script ...int) *authnServer {
	s := &authnServer{script: script, now: time.Now}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests = append(s.requests, r)
		s.forms = append(s.forms, form)
		if len(s.script) > 0 {
			code := s.script[0]
			s.script = s.script[1:]
			w.WriteHeader(code)
			if code >= 500 {
				_, _ = w.Write([]byte(`{"error":{"code":"service_unavailable","message":"etcd is electing a leader"}}`))
			}
			return
		}
		tok := conjurToken("host/conjur/authn-k8s/prod/apps/shop/*/*", s.now(), 8*time.Minute)
		s.issued = append(s.issued, tok)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(tok)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authnServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// fakeSleep records the waits and returns at once; after stopAfter waits
// of at least refreshAbove it cancels the run.
type fakeSleep struct {
	mu     sync.Mutex
	waits  []time.Duration
	cancel context.CancelFunc
	// refreshes counts waits of at least a minute (refreshes, not retries).
	refreshes, stopAfter int
}

func (f *fakeSleep) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits = append(f.waits, d)
	if d >= time.Minute {
		f.refreshes++
		if f.stopAfter > 0 && f.refreshes >= f.stopAfter {
			f.cancel()
		}
	}
	return ctx.Err()
}

func baseConfig(t *testing.T, s *authnServer) client.Config {
	dir := t.TempDir()
	jwtPath := filepath.Join(dir, "sa-token")
	if err := os.WriteFile(jwtPath, []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hc := s.Client()
	t.Cleanup(hc.CloseIdleConnections)
	return client.Config{AuthnURL: s.URL + "/authn-jwt/prod", Account: "acme", JWTPath: jwtPath,
		TokenFile: filepath.Join(dir, "conjur", "access-token"), HTTPClient: hc, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
}

func TestInitWritesTheTokenOnce(t *testing.T) {
	s := newAuthnServer(t)
	c := baseConfig(t, s)
	c.Host = "host/conjur/authn-k8s/prod/apps/shop/*/*"
	if err := os.MkdirAll(filepath.Dir(c.TokenFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := client.Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(c.TokenFile)
	if err != nil || string(got) != string(s.issued[0]) {
		t.Fatalf("token file %q, %v; want the issued token", got, err)
	}
	if fi, _ := os.Stat(c.TokenFile); fi.Mode().Perm() != 0o644 {
		t.Errorf("token file mode %v", fi.Mode())
	}
	r := s.requests[0]
	if r.Method != http.MethodPost || r.URL.EscapedPath() != "/authn-jwt/prod/acme/host%2Fconjur%2Fauthn-k8s%2Fprod%2Fapps%2Fshop%2F%2A%2F%2A/authenticate" {
		t.Errorf("request %s %s", r.Method, r.URL.EscapedPath())
	}
	if s.forms[0].Get("jwt") != "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("form %v, content type %q", s.forms[0], r.Header.Get("Content-Type"))
	}
	entries, _ := os.ReadDir(filepath.Dir(c.TokenFile))
	if len(entries) != 1 {
		t.Errorf("the token directory holds %d entries; temporary files were left behind", len(entries))
	}
}

// TestRetriesWithGrowingJitteredBackoff: failures (an unavailable server,
// a refusal) are retried, each wait within [d/2, d] of a delay that doubles
// up to MaxBackoff.
func TestRetriesWithGrowingJitteredBackoff(t *testing.T) {
	s := newAuthnServer(t, 503, 401, 502, 401, 401, 503)
	c := baseConfig(t, s)
	if err := os.MkdirAll(filepath.Dir(c.TokenFile), 0o755); err != nil {
		t.Fatal(err)
	}
	fs := &fakeSleep{}
	c.Sleep = fs.Sleep
	if err := client.Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if s.count() != 7 || len(fs.waits) != 6 {
		t.Fatalf("%d requests, %d waits; want 7 and 6", s.count(), len(fs.waits))
	}
	delay := c.Backoff
	for i, w := range fs.waits {
		if w < delay/2 || w > delay {
			t.Errorf("wait %d = %s, want within [%s, %s]", i, w, delay/2, delay)
		}
		delay = min(delay*2, c.MaxBackoff)
	}
}

func TestInitGivesUpAndSaysWhy(t *testing.T) {
	tests := map[string]struct {
		script  []int
		noJWT   bool
		wantErr error
		wantMsg string
	}{
		"refused":          {script: repeat(401, 100), wantErr: client.ErrRefused, wantMsg: "holds authenticate"},
		"unavailable":      {script: repeat(503, 100), wantMsg: "etcd is electing a leader"},
		"no token mounted": {noJWT: true, wantMsg: "is the projected token volume mounted"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newAuthnServer(t, tc.script...)
			c := baseConfig(t, s)
			if tc.noJWT {
				c.JWTPath = filepath.Join(t.TempDir(), "missing")
			}
			ctx, cancel := context.WithCancel(context.Background())
			fs := &fakeSleep{cancel: cancel}
			c.Sleep = func(ctx context.Context, d time.Duration) error {
				if len(fs.waits) == 4 {
					cancel() // the init deadline, without waiting for it
				}
				return fs.Sleep(ctx, d)
			}
			err := client.Run(ctx, c)
			if err == nil || !strings.Contains(err.Error(), "gave up after 5 attempts") || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Run: %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Run: %v, want %v", err, tc.wantErr)
			}
			if _, err := os.Stat(c.TokenFile); !os.IsNotExist(err) {
				t.Fatal("a token file was written")
			}
		})
	}
}

func repeat(code, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = code
	}
	return out
}

// TestSidecarRefreshesWellBeforeExpiry: the sidecar replaces an 8-minute
// token after about 4 minutes, rides out failures meanwhile, and writes
// each new token.
func TestSidecarRefreshesWellBeforeExpiry(t *testing.T) {
	s := newAuthnServer(t)
	c := baseConfig(t, s)
	c.Mode = client.ModeSidecar
	if err := os.MkdirAll(filepath.Dir(c.TokenFile), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs := &fakeSleep{cancel: cancel, stopAfter: 3}
	// A failure after the first token: the sidecar retries, then refreshes.
	var once sync.Once
	c.Sleep = func(ctx context.Context, d time.Duration) error {
		once.Do(func() {
			s.mu.Lock()
			s.script = []int{503}
			s.mu.Unlock()
		})
		return fs.Sleep(ctx, d)
	}
	if err := client.Run(ctx, c); err != nil {
		t.Fatal(err)
	}
	if len(s.issued) != 3 {
		t.Fatalf("%d tokens issued, want 3", len(s.issued))
	}
	got, _ := os.ReadFile(c.TokenFile)
	if string(got) != string(s.issued[2]) {
		t.Fatal("the file does not hold the latest token")
	}
	var refreshes []time.Duration
	for _, w := range fs.waits {
		if w >= time.Minute {
			refreshes = append(refreshes, w)
		}
	}
	for _, w := range refreshes {
		if w < 3*time.Minute+30*time.Second || w > 4*time.Minute {
			t.Errorf("refresh after %s; want about half of the 8-minute life, never near expiry", w)
		}
	}
	if len(fs.waits) != 4 { // refresh, retry, refresh, refresh
		t.Errorf("waits %v", fs.waits)
	}
}

func TestRefreshIntervalIsCappedByTheTokenLife(t *testing.T) {
	s := newAuthnServer(t)
	c := baseConfig(t, s)
	c.Mode = client.ModeSidecar
	c.RefreshInterval = time.Hour // longer than the token lives
	if err := os.MkdirAll(filepath.Dir(c.TokenFile), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs := &fakeSleep{cancel: cancel, stopAfter: 1}
	c.Sleep = fs.Sleep
	if err := client.Run(ctx, c); err != nil {
		t.Fatal(err)
	}
	if w := fs.waits[0]; w > 8*time.Minute*85/100 {
		t.Fatalf("refresh after %s with an 8-minute token", w)
	}
}

func TestFromEnv(t *testing.T) {
	pin := pki.PinOf(newAuthnServer(t).Certificate())
	base := map[string]string{"CONJUR_AUTHN_URL": "https://conjur.example.com/authn-jwt/prod", "CONJUR_ACCOUNT": "acme", "SOWER_CA_PIN": pin.String()}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := map[string]struct {
		env     map[string]string
		check   func(client.Config) error
		wantErr string
	}{
		"defaults": {env: base, check: func(c client.Config) error {
			if c.Mode != client.ModeInit || c.TokenFile != client.DefaultTokenFile || c.JWTPath != client.DefaultJWTPath || c.Pin != pin {
				return fmt.Errorf("%+v", c)
			}
			return nil
		}},
		"sidecar with Conjur's names": {env: with("CONTAINER_MODE", "sidecar", "CONJUR_AUTHN_TOKEN_FILE", "/shared/token", "JWT_TOKEN_PATH", "/var/run/secrets/tokens/jwt",
			"CONJUR_AUTHN_LOGIN", "host/app", "CONJUR_TOKEN_TIMEOUT", "6m"), check: func(c client.Config) error {
			if c.Mode != client.ModeSidecar || c.TokenFile != "/shared/token" || c.JWTPath != "/var/run/secrets/tokens/jwt" || c.Host != "host/app" || c.RefreshInterval != 6*time.Minute {
				return fmt.Errorf("%+v", c)
			}
			return nil
		}},
		"URL from the appliance URL and service id": {env: with("CONJUR_AUTHN_URL", "", "CONJUR_APPLIANCE_URL", "https://follower.conjur.svc/", "CONJUR_AUTHN_JWT_SERVICE_ID", "prod"),
			check: func(c client.Config) error {
				if c.AuthnURL != "https://follower.conjur.svc/authn-jwt/prod" {
					return fmt.Errorf("%q", c.AuthnURL)
				}
				return nil
			}},
		"no URL":           {env: with("CONJUR_AUTHN_URL", ""), wantErr: "set CONJUR_AUTHN_URL"},
		"plain http":       {env: with("CONJUR_AUTHN_URL", "http://conjur/authn-jwt/prod"), wantErr: "must be an https:// URL"},
		"no account":       {env: with("CONJUR_ACCOUNT", ""), wantErr: "set CONJUR_ACCOUNT"},
		"nothing to trust": {env: with("SOWER_CA_PIN", ""), wantErr: "set SOWER_CA_PIN"},
		"bad pin":          {env: with("SOWER_CA_PIN", "sha256:zz"), wantErr: "SOWER_CA_PIN"},
		"bad mode":         {env: with("CONTAINER_MODE", "daemon"), wantErr: "neither init nor sidecar"},
		"bad timeout":      {env: with("CONJUR_TOKEN_TIMEOUT", "6"), wantErr: "CONJUR_TOKEN_TIMEOUT"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := client.FromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if !errors.Is(err, client.ErrConfig) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FromEnv: %v, want ErrConfig saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.check(c); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseTokenRefusesWhatIsNoToken(t *testing.T) {
	tests := map[string]string{
		"html":           "<html>proxy error</html>",
		"no payload":     `{"protected":"e30=","signature":"c2ln"}`,
		"bad payload":    `{"protected":"e30=","payload":"!!!","signature":"c2ln"}`,
		"exp before iat": string(conjurToken("x", time.Now(), -time.Minute)),
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := client.ParseToken([]byte(body)); err == nil {
				t.Fatal("ParseToken accepted it")
			}
		})
	}
	tok, err := client.ParseToken(conjurToken("host/app", time.Unix(1_800_000_000, 0), 8*time.Minute))
	if err != nil || tok.Subject != "host/app" || tok.ExpiresAt.Sub(tok.IssuedAt) != 8*time.Minute {
		t.Fatalf("ParseToken = %+v, %v", tok, err)
	}
}
