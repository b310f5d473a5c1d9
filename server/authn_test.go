package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/sowerproject/sower/internal/testutil"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

func post(t *testing.T, c *http.Client, url, body string, header map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func get(t *testing.T, c *http.Client, url string, header map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestAdminAuthenticatesThroughREST walks the admin credential from
// admin.key to an access token to a protected call, through the gateway.
func TestAdminAuthenticatesThroughREST(t *testing.T) {
	dir := t.TempDir()
	s, _ := startNode(t, testConfig(t, dir))
	_, h := s.Addrs()
	base := "https://" + h.String()
	hc := testutil.HTTPClient(t, dir)
	raw, _ := os.ReadFile(filepath.Join(dir, "admin.key"))
	key := strings.TrimSpace(string(raw))

	if st, err := os.Stat(filepath.Join(dir, "data.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("data.key: %v %v, want a 0600 file", st, err)
	}

	code, body := post(t, hc, base+"/v1/authn/acme/authenticate", `{"login":"admin","apiKey":"`+key+`"}`, nil)
	if code != 200 {
		t.Fatalf("authenticate = %d %s", code, body)
	}
	var ar struct{ Token string }
	json.Unmarshal(body, &ar)
	tokJSON, err := base64.StdEncoding.DecodeString(ar.Token)
	if err != nil || !bytes.Contains(tokJSON, []byte(`"protected"`)) {
		t.Fatalf("token is not Conjur's JSON JWS: %s", tokJSON)
	}
	authz := map[string]string{"Authorization": `Token token="` + base64.StdEncoding.EncodeToString(tokJSON) + `"`}

	code, body = get(t, hc, base+"/v1/whoami", authz)
	if code != 200 || !strings.Contains(string(body), `"roleId":"acme:user:admin"`) {
		t.Fatalf("whoami = %d %s", code, body)
	}

	tests := map[string]struct {
		header map[string]string
	}{
		"no token":     {nil},
		"wrong scheme": {map[string]string{"Authorization": "Bearer " + ar.Token}},
		"garbage":      {map[string]string{"Authorization": `Token token="bm90IGEgdG9rZW4="`}},
		"tampered": {map[string]string{"Authorization": `Token token="` +
			base64.StdEncoding.EncodeToString(bytes.Replace(tokJSON, []byte(`"signature":"`), []byte(`"signature":"A`), 1)) + `"`}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if code, body := get(t, hc, base+"/v1/whoami", tc.header); code != 401 {
				t.Fatalf("whoami = %d %s, want 401", code, body)
			}
		})
	}

	if code, _ := post(t, hc, base+"/v1/authn/acme/authenticate", `{"login":"admin","apiKey":"wrong"}`, nil); code != 401 {
		t.Fatalf("wrong key: %d, want 401", code)
	}
	if code, _ := post(t, hc, base+"/v1/authn/acme/authenticate", `{"login":"nobody","apiKey":"`+key+`"}`, nil); code != 401 {
		t.Fatalf("unknown login: %d, want 401", code)
	}

	// Rotation: the old key stops working, the new one works.
	code, body = post(t, hc, base+"/v1/authn/acme/api-key:rotate", `{}`, authz)
	if code != 200 {
		t.Fatalf("rotate = %d %s", code, body)
	}
	var rr struct{ ApiKey string }
	json.Unmarshal(body, &rr)
	if code, _ := post(t, hc, base+"/v1/authn/acme/authenticate", `{"login":"admin","apiKey":"`+key+`"}`, nil); code != 401 {
		t.Fatalf("old key after rotation: %d, want 401", code)
	}
	if code, _ := post(t, hc, base+"/v1/authn/acme/authenticate", `{"login":"admin","apiKey":"`+rr.ApiKey+`"}`, nil); code != 200 {
		t.Fatalf("new key after rotation: %d, want 200", code)
	}
}

// TestFailedLoginsAreRateLimitedPerIdentity: hammering one login gets it
// throttled, while another identity still authenticates.
func TestFailedLoginsAreRateLimitedPerIdentity(t *testing.T) {
	dir := t.TempDir()
	s, _ := startNode(t, testConfig(t, dir))
	_, h := s.Addrs()
	base := "https://" + h.String()
	hc := testutil.HTTPClient(t, dir)
	raw, _ := os.ReadFile(filepath.Join(dir, "admin.key"))
	key := strings.TrimSpace(string(raw))

	limited := false
	for range 50 {
		code, _ := post(t, hc, base+"/v1/authn/acme/authenticate", `{"login":"host/attacked","apiKey":"wrong"}`, nil)
		if code == 429 {
			limited = true
			break
		}
		if code != 401 {
			t.Fatalf("failed login = %d, want 401 or 429", code)
		}
	}
	if !limited {
		t.Fatal("50 failed logins for one identity were never rate limited")
	}
	if code, body := post(t, hc, base+"/v1/authn/acme/authenticate", `{"login":"admin","apiKey":"`+key+`"}`, nil); code != 200 {
		t.Fatalf("another identity while one is limited: %d %s", code, body)
	}
}

// TestForwardedForIsTrustedOnlyFromNodes: the audit trail's source address
// can't be forged by a caller that writes x-forwarded-for itself; only the
// node's own gateway (a verified node certificate) may relay it.
func TestForwardedForIsTrustedOnlyFromNodes(t *testing.T) {
	dir := t.TempDir()
	s, _ := startNode(t, testConfig(t, dir))
	g, h := s.Addrs()
	hc := testutil.HTTPClient(t, dir)
	raw, _ := os.ReadFile(filepath.Join(dir, "admin.key"))
	code, body := post(t, hc, "https://"+h.String()+"/v1/authn/acme/authenticate", `{"login":"admin","apiKey":"`+strings.TrimSpace(string(raw))+`"}`, nil)
	if code != 200 {
		t.Fatalf("authenticate: %d", code)
	}
	var ar struct{ Token string }
	json.Unmarshal(body, &ar)

	conn, err := grpc.NewClient(g.String(), grpc.WithTransportCredentials(credentials.NewTLS(testutil.TLSConfig(t, dir))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"authorization", `Token token="`+ar.Token+`"`, "x-forwarded-for", "203.0.113.9")
	who, err := sowerv1.NewAuthnServiceClient(conn).WhoAmI(ctx, &sowerv1.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if who.ClientIp != "127.0.0.1" {
		t.Fatalf("client_ip = %q: a direct caller forged its address", who.ClientIp)
	}
}
