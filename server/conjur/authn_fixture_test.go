package conjur_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyberark/conjur-api-go/conjurapi"
	conjurauthn "github.com/cyberark/conjur-api-go/conjurapi/authn"
	jose "github.com/go-jose/go-jose/v4"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/server"
	"github.com/sowerproject/sower/server/etcdstore"
)

// anNode is a running Leader for the authentication tests, with what they
// need besides the REST URL: its etcd (to read the audit trail) and its log.
type anNode struct {
	url, adminKey, caFile, dataDir string
	pin                            pki.Pin
	http                           *http.Client
	etcd                           *clientv3.Client
	log                            *syncBuffer
}

// syncBuffer is a log sink the test reads while the node writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAuthnNode runs a real single-node Leader over TLS.
func startAuthnNode(t testing.TB, opts ...func(*server.Config)) *anNode {
	t.Helper()
	dir := t.TempDir()
	a := testutil.FreeAddrs(t, 4)
	logs := &syncBuffer{}
	level := slog.LevelInfo
	if _, bench := t.(*testing.B); bench {
		level = slog.LevelWarn
	}
	c := server.Config{
		Name: "leader-1", Account: "acme", DataDir: dir,
		GRPCAddr: a[0], HTTPAddr: a[1], EtcdClientAddr: a[2], EtcdPeerAddr: a[3],
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})),
	}
	for _, o := range opts {
		o(&c)
	}
	s, err := server.New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v\n%s", err, logs)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	pin, err := pki.ParsePin(s.CAPin())
	if err != nil {
		t.Fatal(err)
	}
	// The node's own certificate is an etcd client certificate too.
	tlsc := testutil.TLSConfig(t, dir)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls", "node.pem"), filepath.Join(dir, "tls", "node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tlsc.Certificates = []tls.Certificate{cert}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + a[2]}, TLS: tlsc, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	_, h := s.Addrs()
	tr := &http.Transport{TLSClientConfig: testutil.TLSConfig(t, dir), MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &anNode{url: "https://" + h.String(), adminKey: strings.TrimSpace(string(raw)), caFile: testutil.CAFile(dir), dataDir: dir,
		pin: pin, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, etcd: cli, log: logs}
}

// admin is a conjur-api-go client logged in as admin.
func (n *anNode) admin(t testing.TB) *conjurapi.Client {
	t.Helper()
	c, err := conjurapi.NewClientFromKey(conjurapi.Config{Account: "acme", ApplianceURL: n.url, SSLCertPath: n.caFile},
		conjurauthn.LoginPair{Login: "admin", APIKey: n.adminKey})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// load appends policy text to root as admin and returns the API keys of
// the roles it created.
func (n *anNode) load(t testing.TB, text string) map[string]string {
	t.Helper()
	resp, err := n.admin(t).LoadPolicy(conjurapi.PolicyModePost, "root", strings.NewReader(text))
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	keys := map[string]string{}
	for id, r := range resp.CreatedRoles {
		keys[id] = r.APIKey
	}
	return keys
}

// setVariables stores values as admin through conjur-api-go.
func (n *anNode) setVariables(t testing.TB, values map[string]string) {
	t.Helper()
	c := n.admin(t)
	for id, v := range values {
		if err := c.AddSecret(id, v); err != nil {
			t.Fatalf("AddSecret(%s): %v", id, err)
		}
	}
}

// jwtLogin posts jwt= to the authn-jwt endpoint, asking for base64.
func (n *anNode) jwtLogin(t testing.TB, serviceID, host, token string) (int, []byte) {
	t.Helper()
	u := n.url + "/authn-jwt/" + url.PathEscape(serviceID) + "/acme"
	if host != "" {
		u += "/" + url.PathEscape(host)
	}
	req, err := http.NewRequest(http.MethodPost, u+"/authenticate", strings.NewReader(url.Values{"jwt": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Encoding", "base64")
	resp, err := n.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// whoami calls GET /whoami with a base64 access token.
func (n *anNode) whoami(t testing.TB, b64 string) map[string]string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.url+"/whoami", nil)
	req.Header.Set("Authorization", `Token token="`+b64+`"`)
	resp, err := n.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var who map[string]string
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&who) != nil {
		t.Fatalf("whoami: %s", resp.Status)
	}
	return who
}

// auditRecord is an authentication event of the audit trail
// (/sower/audit/events/), its reason split into reason and detail.
type auditRecord struct {
	Type  string `json:"type"`
	Event struct {
		Outcome       string `json:"outcome"`
		Authenticator string `json:"authenticator"`
		Identity      string `json:"identity"`
		Source        string `json:"source"`
		Reason        string `json:"reason"`
		Detail        string `json:"detail"`
		Method        string `json:"method"`
		Count         int64  `json:"count"`
	} `json:"event"`
}

// waitAudit watches the audit trail from revision rev until match holds
// for the records written since, and returns them. The audit writer
// flushes every second; the watch sees each flush as it lands.
func (n *anNode) waitAudit(t testing.TB, rev int64, match func([]auditRecord) bool) []auditRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []auditRecord
	wch := n.etcd.Watch(ctx, etcdstore.AuditEventsPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for wr := range wch {
		for _, ev := range wr.Events {
			var e audit.Event
			if ev.Type != clientv3.EventTypePut || json.Unmarshal(ev.Kv.Value, &e) != nil || e.Kind != audit.KindAuthn {
				continue
			}
			r := auditRecord{Type: "authn-" + e.Outcome}
			if e.Action == "summary" {
				r.Type = "authn-summary"
			}
			r.Event.Outcome, r.Event.Authenticator, r.Event.Identity, r.Event.Source, r.Event.Method, r.Event.Count =
				e.Outcome, e.Authenticator, e.Identity, e.Source, e.Resource, e.Count
			r.Event.Reason, r.Event.Detail, _ = strings.Cut(e.Reason, ": ")
			got = append(got, r)
		}
		if match(got) {
			return got
		}
	}
	t.Fatalf("the audit trail never held what the test waited for; it holds %+v", got)
	return nil
}

// revision returns etcd's current revision.
func (n *anNode) revision(t testing.TB) int64 {
	t.Helper()
	resp, err := n.etcd.Get(context.Background(), "/sower/meta/cluster")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// --- a Kubernetes API server, as far as the authenticator asks it ---

// kubeAPI serves, over TLS and only to a bearer token, what a
// kube-apiserver serves the Kubernetes authenticator: the service-account
// issuer's JWKS at /openid/v1/jwks and the objects of authn/k8s's testdata
// (real Pod, ReplicaSet, Deployment, StatefulSet and ReplicationController
// JSON) at their API paths.
type kubeAPI struct {
	*httptest.Server
	token    string
	mu       sync.Mutex
	jwks     []byte
	requests atomic.Int64
	jwksHits atomic.Int64
}

var kubePath = regexp.MustCompile(`^/(?:api/v1|apis/apps/v1|apis/apps\.openshift\.io/v1)/namespaces/([a-z0-9-]+)/([a-z]+)/([a-z0-9-]+)$`)

func newKubeAPI(t testing.TB, keys ...signingKey) *kubeAPI {
	t.Helper()
	k := &kubeAPI{token: "sa-token-" + rand.Text()}
	k.setKeys(keys...)
	k.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+k.token {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(kubeStatus(401, "Unauthorized", "Unauthorized"))
			return
		}
		if r.URL.Path == "/openid/v1/jwks" {
			k.jwksHits.Add(1)
			k.mu.Lock()
			defer k.mu.Unlock()
			_, _ = w.Write(k.jwks)
			return
		}
		m := kubePath.FindStringSubmatch(r.URL.Path)
		if r.Method == http.MethodGet && m != nil {
			if body, err := os.ReadFile(filepath.Join("..", "..", "authn", "k8s", "testdata", "kube", m[1], m[2], m[3]+".json")); err == nil {
				_, _ = w.Write(body)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(kubeStatus(404, "NotFound", "not found"))
	}))
	k.Config.ErrorLog = log.New(io.Discard, "", 0)
	k.StartTLS()
	t.Cleanup(k.Close)
	return k
}

func kubeStatus(code int, reason, msg string) map[string]any {
	return map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure", "message": msg, "reason": reason, "code": code}
}

func (k *kubeAPI) setKeys(keys ...signingKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.jwks = jwksOf(keys...)
}

// caPEM is the API server's certificate, for kubernetes/ca-cert.
func (k *kubeAPI) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Certificate().Raw}))
}

// --- service-account tokens ---

const (
	kubeIssuer   = "https://kubernetes.default.svc.cluster.local"
	kubeAudience = "https://conjur.example.com"
)

// signingKey is a token signing key with its kid.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

var (
	rsaOnce sync.Once
	rsaKeys [2]*rsa.PrivateKey
)

// rsaKey returns one of two shared 2048-bit keys (generating is slow).
func rsaKey(kid string, i int) signingKey {
	rsaOnce.Do(func() {
		for j := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[j] = k
		}
	})
	return signingKey{kid: kid, alg: jose.RS256, priv: rsaKeys[i]}
}

func ecKey(kid string) signingKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return signingKey{kid: kid, alg: jose.ES256, priv: k}
}

func jwksOf(keys ...signingKey) []byte {
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

// publicKeys is the public-keys variable's value for keys.
func publicKeys(keys ...signingKey) string {
	return `{"type":"jwks","value":` + string(jwksOf(keys...)) + `}`
}

func (k signingKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func segment(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// unsignedToken has alg none.
func unsignedToken(kid string, claims map[string]any) string {
	return segment(map[string]any{"alg": "none", "kid": kid, "typ": "JWT"}) + "." + segment(claims) + "."
}

// hmacToken is HS256 keyed with the issuer's public key: the classic
// algorithm-confusion forgery.
func hmacToken(k signingKey, claims map[string]any) string {
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		panic(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	in := segment(map[string]any{"alg": "HS256", "kid": k.kid, "typ": "JWT"}) + "." + segment(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// pod is the workload a token is bound to.
type pod struct{ namespace, name, uid, serviceAccount, serviceAccountUID string }

func uid(n int) string { return fmt.Sprintf("5f0c7a3e-0000-4000-8000-%012d", n) }

// The pods of authn/k8s/testdata/kube.
var (
	webPod    = pod{"shop", "web-7d9c8b-x2x4z", uid(1), "web", uid(101)}
	dbPod     = pod{"shop", "db-0", uid(4), "db", uid(102)}
	legacyPod = pod{"ops", "legacy-3-k2v9p", uid(11), "default", uid(103)}
)

// saClaims are the claims of a projected service-account token for p,
// issued at now for an hour, as the kube-apiserver writes them.
func saClaims(p pod, now time.Time) map[string]any {
	return map[string]any{
		"aud": []string{kubeAudience},
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"iss": kubeIssuer,
		"jti": rand.Text(),
		"kubernetes.io": map[string]any{
			"namespace": p.namespace,
			"node":      map[string]any{"name": "node-1", "uid": uid(900)},
			"pod":       map[string]any{"name": p.name, "uid": p.uid},
			"serviceaccount": map[string]any{
				"name": p.serviceAccount, "uid": p.serviceAccountUID,
			},
		},
		"sub": "system:serviceaccount:" + p.namespace + ":" + p.serviceAccount,
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
