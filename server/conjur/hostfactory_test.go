package conjur_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cyberark/conjur-api-go/conjurapi"
)

// hostFactoryPolicy: a host factory enrolling hosts into apps/nodes, whose
// members may read apps/db-password; alice may create tokens (execute),
// bob only see the factory (read), carol nothing.
const hostFactoryPolicy = `
- !user alice
- !user bob
- !user carol
- !group not-a-factory
- !host pre-existing
- !policy
  id: apps
  body:
  - !layer nodes
  - !variable db-password
  - !host-factory
    id: factory
    layers: [ !layer nodes ]
  - !permit
    role: !layer nodes
    privileges: [read, execute]
    resource: !variable db-password
- !permit
  role: !user alice
  privileges: [read, execute]
  resource: !host-factory apps/factory
- !permit
  role: !user bob
  privileges: [read]
  resource: !host-factory apps/factory
- !permit
  role: !user alice
  privileges: [read]
  resource: !group not-a-factory
`

const factoryID = "acme:host_factory:apps/factory"

// plainClient is an HTTP client trusting l's CA, without a Conjur login,
// whose connections leave from the local address ip (127.0.0.x).
func plainClient(t *testing.T, l leader, ip string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(l.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// enrol posts id to /host_factories/hosts with token from ip.
func enrol(t *testing.T, l leader, ip, token, id string) int {
	t.Helper()
	req, err := http.NewRequest("POST", l.url+"/host_factories/hosts", strings.NewReader(url.Values{"id": {id}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", `Token token="`+token+`"`)
	resp, err := plainClient(t, l, ip).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// form posts form parameters with c's access token.
func form(t *testing.T, c *conjurapi.Client, method, u string, v url.Values, hdr ...string) (int, []byte) {
	t.Helper()
	return call(t, c, method, u, v.Encode(), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)...)
}

// conjur hostfactory tokens create / hosts create / tokens revoke, end to
// end with conjur-api-go (cucumber/api host_factory_*.feature): tokens are
// made with execute, enrol a host into the factory's layers (it then reads
// what the layer may), a second enrolment rotates the host's key, and the
// host factory shows its layers and live tokens.
func TestCLIHostFactoryEnrolsHosts(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	resp := load(t, admin, conjurapi.PolicyModePost, "root", hostFactoryPolicy)
	if err := admin.AddSecret("acme:variable:apps/db-password", "s3cret"); err != nil {
		t.Fatal(err)
	}
	alice := newClient(t, l, "alice", resp.CreatedRoles["acme:user:alice"].APIKey)

	toks, err := alice.CreateToken("1h", factoryID, nil, 2)
	if err != nil || len(toks) != 2 || toks[0].Token == "" || toks[0].Token == toks[1].Token {
		t.Fatalf("CreateToken = %+v, %v; want two distinct tokens", toks, err)
	}
	exp, err := time.Parse(time.RFC3339, toks[0].Expiration)
	if err != nil || exp.Before(time.Now().Add(50*time.Minute)) || len(toks[0].Cidr) != 0 {
		t.Fatalf("token %+v: want an RFC 3339 expiration an hour ahead and no cidr", toks[0])
	}

	host, err := alice.CreateHostWithAnnotations("app-01", toks[0].Token, map[string]string{"purpose": "web"})
	if err != nil {
		t.Fatalf("CreateHost: %v", err)
	}
	if host.Id != "acme:host:app-01" || host.Owner != factoryID || host.ApiKey == "" ||
		len(host.Annotations) != 1 || host.Annotations[0].Name != "purpose" || host.Annotations[0].Value != "web" {
		t.Fatalf("CreateHost = %+v", host)
	}
	// The host logs in and reads what its layer may read.
	h := newClient(t, l, "host/app-01", host.ApiKey)
	if v, err := h.RetrieveSecret("apps/db-password"); err != nil || string(v) != "s3cret" {
		t.Fatalf("the enrolled host reads apps/db-password: %q, %v", v, err)
	}
	// Enrolling it again rotates its key, as Conjur's HostBuilder does.
	again, err := alice.CreateHost("app-01", toks[1].Token)
	if err != nil || again.ApiKey == "" || again.ApiKey == host.ApiKey {
		t.Fatalf("second CreateHost = %+v, %v; want a new API key", again, err)
	}
	if _, err := admin.Login("host/app-01", host.ApiKey); err == nil {
		t.Fatal("the old API key still logs in after the factory rotated it")
	}

	// The host factory's resource lists its layers and its live tokens,
	// without the tokens themselves.
	code, body := call(t, alice, "GET", l.url+"/resources/acme/host_factory/apps%2Ffactory", "")
	var res struct {
		Layers []string                     `json:"layers"`
		Tokens []map[string]json.RawMessage `json:"tokens"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &res) != nil || len(res.Layers) != 1 || res.Layers[0] != "acme:layer:apps/nodes" || len(res.Tokens) != 2 {
		t.Fatalf("show the factory: %d %s", code, body)
	}
	if _, shown := res.Tokens[0]["token"]; shown || string(res.Tokens[0]["expiration"]) != `"`+toks[0].Expiration+`"` {
		t.Fatalf("token in the factory's resource: %s; want expiration and cidr, never the token", body)
	}

	// Revoking takes update on the factory: alice has execute only.
	code, body = call(t, alice, "DELETE", l.url+"/host_factory_tokens/"+toks[0].Token, "")
	if code != http.StatusForbidden {
		t.Fatalf("revoke with execute only: %d %s, want 403", code, body)
	}
	if err := admin.DeleteToken(toks[0].Token); err != nil {
		t.Fatalf("DeleteToken: %v", err)
	}
	code, body = call(t, admin, "DELETE", l.url+"/host_factory_tokens/"+toks[0].Token, "")
	if code != http.StatusNotFound || strings.Contains(string(body), toks[0].Token) {
		t.Fatalf("revoke twice: %d %s, want 404 without the token in it", code, body)
	}
	if _, err := alice.CreateHost("app-02", toks[0].Token); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("CreateHost with a revoked token: %v, want 401", err)
	}

	// Deleting the factory deletes its tokens with it, as Conjur's foreign
	// key does.
	load(t, admin, conjurapi.PolicyModePatch, "root", "- !delete\n  record: !host-factory apps/factory\n")
	if _, err := alice.CreateHost("app-03", toks[1].Token); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("CreateHost with a deleted factory's token: %v, want 401", err)
	}
	// Declared again, the factory starts without tokens: the old ones
	// went with the old factory.
	load(t, admin, conjurapi.PolicyModePost, "apps", "- !host-factory\n  id: factory\n  layers: [ !layer nodes ]\n")
	if _, err := alice.CreateHost("app-03", toks[1].Token); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("CreateHost with the token of a factory deleted and declared again: %v, want 401", err)
	}
	code, body = call(t, admin, "GET", l.url+"/resources/acme/host_factory/apps%2Ffactory", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"tokens":[]`) {
		t.Fatalf("the factory declared again: %d %s, want no tokens", code, body)
	}
}

// The refusals of POST /host_factory_tokens, with Conjur's codes and
// messages (host_factory_create_token.feature).
func TestCLIHostFactoryTokenRefusals(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	resp := load(t, admin, conjurapi.PolicyModePost, "root", hostFactoryPolicy)
	users := map[string]*conjurapi.Client{"admin": admin}
	for _, u := range []string{"alice", "bob", "carol"} {
		users[u] = newClient(t, l, u, resp.CreatedRoles["acme:user:"+u].APIKey)
	}
	future := "2050-12-31T00:00:00Z"
	tests := map[string]struct {
		as       string
		params   url.Values
		wantCode int
		wantErr  string // Conjur's error code
		wantMsg  string
	}{
		"unseen factory": {as: "carol", params: url.Values{"host_factory": {factoryID}, "expiration": {future}}, wantCode: 404, wantErr: "not_found"},
		"read only":      {as: "bob", params: url.Values{"host_factory": {factoryID}, "expiration": {future}}, wantCode: 403, wantErr: "forbidden"},
		"not a factory": {as: "alice", params: url.Values{"host_factory": {"acme:group:not-a-factory"}, "expiration": {future}},
			wantCode: 422, wantErr: "argument_error", wantMsg: "Invalid resource kind: group"},
		"bad cidr": {as: "alice", params: url.Values{"host_factory": {factoryID}, "expiration": {future}, "cidr[]": {"123.234.0.0/16", "1.895.abc.0/32"}},
			wantCode: 422, wantErr: "unprocessable_entity", wantMsg: "Invalid IP address or CIDR range '1.895.abc.0/32'"},
		"no expiration": {as: "alice", params: url.Values{"host_factory": {factoryID}}, wantCode: 422, wantErr: "argument_error", wantMsg: "expiration"},
		"bad expiration": {as: "alice", params: url.Values{"host_factory": {factoryID}, "expiration": {"tomorrow"}},
			wantCode: 422, wantErr: "argument_error", wantMsg: "Input is invalid ISO8601 datetime string: tomorrow"},
		"past expiration": {as: "alice", params: url.Values{"host_factory": {factoryID}, "expiration": {"2001-01-01T00:00:00Z"}},
			wantCode: 422, wantErr: "argument_error", wantMsg: "Value for parameter expiration must be in the future: 2001-01-01T00:00:00Z"},
		"bad count": {as: "alice", params: url.Values{"host_factory": {factoryID}, "expiration": {future}, "count": {"0"}},
			wantCode: 422, wantErr: "argument_error", wantMsg: "Invalid value for parameter 'count': 0"},
		"count over the limit": {as: "alice", params: url.Values{"host_factory": {factoryID}, "expiration": {future}, "count": {"101"}},
			wantCode: 422, wantErr: "argument_error", wantMsg: "Invalid value for parameter 'count': 101 (at most 100 tokens per request)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, body := form(t, users[tc.as], "POST", l.url+"/host_factory_tokens", tc.params)
			e := decodeError(t, code, body)
			if code != tc.wantCode || e.Error.Code != tc.wantErr || (tc.wantMsg != "" && e.Error.Message != tc.wantMsg) {
				t.Fatalf("%d %s; want %d %s %q", code, body, tc.wantCode, tc.wantErr, tc.wantMsg)
			}
		})
	}

	// Conjur's answer, byte for byte but the token.
	code, body := form(t, admin, "POST", l.url+"/host_factory_tokens",
		url.Values{"host_factory": {factoryID}, "expiration": {future}, "cidr[]": {"123.234.0.0/16", "222.222.222.7"}})
	var toks []struct {
		Expiration string   `json:"expiration"`
		CIDR       []string `json:"cidr"`
		Token      string   `json:"token"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &toks) != nil || len(toks) != 1 || toks[0].Expiration != future ||
		strings.Join(toks[0].CIDR, ",") != "123.234.0.0/16,222.222.222.7/32" || toks[0].Token == "" {
		t.Fatalf("create a token with cidr: %d %s", code, body)
	}
}

// The refusals of POST /host_factories/hosts: every bad token is the same
// 401 (host_factory_create_host.feature); ids Conjur refuses are 422; a
// host the factory does not own is 403 (host_factory_rotate_host.feature).
func TestCLIHostFactoryHostRefusals(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	load(t, admin, conjurapi.PolicyModePost, "root", hostFactoryPolicy)

	// The test's client connects from 127.0.0.1.
	elsewhere, err := admin.CreateToken("1h", factoryID, []string{"127.0.0.2"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateHost("app-01", elsewhere[0].Token); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a token used outside its cidr: %v, want 401", err)
	}
	here, err := admin.CreateToken("1h", factoryID, []string{"127.0.0.0/8"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateHost("app-01", here[0].Token); err != nil {
		t.Fatalf("a token used inside its cidr: %v", err)
	}
	// From 127.0.0.2 the first token works, and the second not from .3.
	if code := enrol(t, l, "127.0.0.2", elsewhere[0].Token, "app-01b"); code != http.StatusCreated {
		t.Fatalf("a token used from its cidr 127.0.0.2: %d, want 201", code)
	}
	only1, err := admin.CreateToken("1h", factoryID, []string{"127.0.0.1/32", "10.0.0.0/8"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if code := enrol(t, l, "127.0.0.3", only1[0].Token, "app-01c"); code != http.StatusUnauthorized {
		t.Fatalf("a token used from 127.0.0.3, outside 127.0.0.1/32 and 10.0.0.0/8: %d, want 401", code)
	}
	if _, err := admin.CreateHost("app-02", "not-a-token"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("an unknown token: %v, want 401", err)
	}
	code, _ := form(t, admin, "POST", l.url+"/host_factories/hosts", url.Values{"id": {"app-03"}})
	if code != http.StatusUnauthorized {
		t.Fatalf("an access token instead of a host factory token: %d, want 401", code)
	}

	tok := here[0].Token
	auth := []string{"Authorization", `Token token="` + tok + `"`}
	post := func(v url.Values) (int, conjurError) {
		t.Helper()
		req, err := http.NewRequest("POST", l.url+"/host_factories/hosts", strings.NewReader(v.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(auth[0], auth[1])
		resp, err := plainClient(t, l, "127.0.0.1").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e conjurError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	tests := map[string]struct {
		params   url.Values
		wantCode int
		wantErr  string
		wantMsg  string
	}{
		"no id":             {url.Values{}, 422, "parameter_missing", "param is missing or the value is empty: id"},
		"conjur/ id":        {url.Values{"id": {"conjur/factories/malicious"}}, 422, "argument_error", "Invalid id: conjur/factories/malicious"},
		"/conjur/ id":       {url.Values{"id": {"/conjur/factories/malicious"}}, 422, "argument_error", "Invalid id: /conjur/factories/malicious"},
		"id too long":       {url.Values{"id": {strings.Repeat("a", 513)}}, 422, "argument_error", "Invalid id: a host id is at most 512 bytes"},
		"not the factory's": {url.Values{"id": {"pre-existing"}}, 403, "forbidden", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, e := post(tc.params)
			if code != tc.wantCode || e.Error.Code != tc.wantErr || (tc.wantMsg != "" && e.Error.Message != tc.wantMsg) {
				t.Fatalf("%d %+v; want %d %s %q", code, e, tc.wantCode, tc.wantErr, tc.wantMsg)
			}
		})
	}
	many := url.Values{"id": {"app-04"}}
	for i := range 65 {
		many.Set("annotations[a"+strings.Repeat("x", i)+"]", "v")
	}
	if code, e := post(many); code != 422 || !strings.Contains(e.Error.Message, "at most 64 annotations") {
		t.Fatalf("65 annotations: %d %+v, want 422 naming the limit", code, e)
	}
	// "conjur" as a prefix of a root id is allowed.
	if code, e := post(url.Values{"id": {"conjur-in-root"}}); code != http.StatusCreated {
		t.Fatalf("conjur-in-root: %d %+v", code, e)
	}

	// An expired token is refused like the others: poll until the token
	// made to expire in a second is past its expiration.
	short, err := admin.CreateToken("3s", factoryID, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := time.Parse(time.RFC3339, short[0].Expiration)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := admin.CreateHost("app-05", short[0].Token)
		if err != nil && strings.Contains(err.Error(), "401") {
			if time.Now().Before(exp) {
				t.Fatalf("refused before its expiration %s: %v", exp, err)
			}
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("a token past its expiration %s: %v, want 401", exp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The same host factory through sower's /v1 API: the tokens RPC with an
// access token, the host RPC with the host factory token alone.
func TestV1HostFactory(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	load(t, admin, conjurapi.PolicyModePost, "root", hostFactoryPolicy)
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	code, body := call(t, admin, "POST", l.url+"/v1/host-factory-tokens", `{"hostFactory":"`+factoryID+`","expiration":"`+exp+`","count":1}`,
		"Content-Type", "application/json")
	var toks struct {
		Tokens []struct{ Token, Expiration string }
	}
	if code != http.StatusOK || json.Unmarshal(body, &toks) != nil || len(toks.Tokens) != 1 || toks.Tokens[0].Expiration != exp {
		t.Fatalf("POST /v1/host-factory-tokens: %d %s", code, body)
	}
	req, err := http.NewRequest("POST", l.url+"/v1/host-factory-hosts", strings.NewReader(`{"token":"`+toks.Tokens[0].Token+`","id":"v1-host"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := plainClient(t, l, "127.0.0.1").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var host struct {
		Host   struct{ ID, Owner string }
		APIKey string `json:"apiKey"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&host); err != nil || resp.StatusCode != http.StatusOK ||
		host.Host.ID != "acme:host:v1-host" || host.Host.Owner != factoryID || host.APIKey == "" {
		t.Fatalf("POST /v1/host-factory-hosts: %d %+v %v", resp.StatusCode, host, err)
	}
	if _, err := admin.Login("host/v1-host", host.APIKey); err != nil {
		t.Fatalf("the /v1 host logs in: %v", err)
	}
}
