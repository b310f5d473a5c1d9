// Package jwttest mints JWTs shaped like Kubernetes service-account tokens
// (projected, bound) and serves their JWKS over real TLS, for the tests of
// authn/jwt and authn/k8s.
package jwttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer is the test cluster's token issuer.
const Issuer = "https://kubernetes.default.svc.cluster.local"

// Audience is the audience the tests configure for conjur.
const Audience = "https://conjur.example.com"

var (
	rsaOnce sync.Once
	rsaKeys []*rsa.PrivateKey
)

// RSAKey returns one of a few shared 2048-bit test keys (generating them is slow).
func RSAKey(i int) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys = append(rsaKeys, k)
		}
	})
	return rsaKeys[i]
}

// Key is a signing key with its id and algorithm.
type Key struct {
	KID  string
	Alg  jose.SignatureAlgorithm
	Priv crypto.Signer
}

// RSA returns an RS256 key with the given kid, backed by shared key i.
func RSA(kid string, i int) Key { return Key{KID: kid, Alg: jose.RS256, Priv: RSAKey(i)} }

// EC returns a fresh ES256 key.
func EC(kid string) Key {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return Key{KID: kid, Alg: jose.ES256, Priv: k}
}

// JWK returns the public JWK of k.
func (k Key) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Priv.Public(), KeyID: k.KID, Algorithm: string(k.Alg), Use: "sig"}
}

// JWKS returns the JWK Set of keys as JSON.
func JWKS(keys ...Key) []byte {
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.JWK())
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

// PublicKeys returns keys in Conjur's public-keys variable form.
func PublicKeys(keys ...Key) string {
	return `{"type":"jwks","value":` + string(JWKS(keys...)) + `}`
}

// Sign signs claims with k, putting k.KID in the header (unless empty).
func (k Key) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.KID != "" {
		opts = opts.WithHeader("kid", k.KID)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Alg, Key: k.Priv}, opts)
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

func seg(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Unsigned returns a token with alg "none".
func Unsigned(kid string, claims map[string]any) string {
	return seg(map[string]any{"alg": "none", "kid": kid, "typ": "JWT"}) + "." + seg(claims) + "."
}

// HMAC returns an HS256 token keyed with secret: the classic attack passes the
// issuer's public key (which anyone has) as the HMAC secret.
func HMAC(kid string, secret []byte, claims map[string]any) string {
	in := seg(map[string]any{"alg": "HS256", "kid": kid, "typ": "JWT"}) + "." + seg(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Pod describes the workload a service-account token is bound to.
type Pod struct {
	Namespace, Name, UID, ServiceAccount, ServiceAccountUID string
}

// SAClaims returns the claims of a projected service-account token for pod,
// issued at now for an hour, as the kube-apiserver writes them.
func SAClaims(p Pod, now time.Time) map[string]any {
	return map[string]any{
		"aud": []string{Audience},
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"iss": Issuer,
		"jti": "6c1b7a40-3c0e-4b8e-9b0e-2b8f1e0c4d11",
		"kubernetes.io": map[string]any{
			"namespace": p.Namespace,
			"node":      map[string]any{"name": "node-1", "uid": "0b1f4c1e-7a51-4b9b-8c3c-5d6f9e2a1b00"},
			"pod":       map[string]any{"name": p.Name, "uid": p.UID},
			"serviceaccount": map[string]any{
				"name": p.ServiceAccount, "uid": p.ServiceAccountUID,
			},
		},
		"sub": "system:serviceaccount:" + p.Namespace + ":" + p.ServiceAccount,
	}
}

// JWKSServer serves a JWKS over TLS and counts fetches.
type JWKSServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	status int
	hits   atomic.Int64
}

// NewJWKSServer starts a TLS server at /openid/v1/jwks serving keys; it is
// closed when the test ends.
func NewJWKSServer(t testing.TB, keys ...Key) *JWKSServer {
	s := &JWKSServer{body: JWKS(keys...), status: http.StatusOK}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/openid/v1/jwks" {
			http.NotFound(w, r)
			return
		}
		s.hits.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	// Handshakes that the tests make fail on purpose are not news.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// URI is the JWKS URL.
func (s *JWKSServer) URI() string { return s.URL + "/openid/v1/jwks" }

// CACert is the PEM of the server's certificate, for the ca-cert setting.
func (s *JWKSServer) CACert() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}))
}

// SetKeys replaces the served keys.
func (s *JWKSServer) SetKeys(keys ...Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.status = JWKS(keys...), http.StatusOK
}

// SetBody makes the server answer 200 with body.
func (s *JWKSServer) SetBody(body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = http.StatusOK, []byte(body)
}

// Fail makes the server answer with status until SetKeys.
func (s *JWKSServer) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, []byte(`{"error":"down"}`)
}

// Hits returns how many times the JWKS was fetched.
func (s *JWKSServer) Hits() int { return int(s.hits.Load()) }

// UnrelatedCACert returns the PEM of a fresh self-signed CA that signed
// nothing: httptest servers all share one certificate, so "another CA" has to
// be made.
func UnrelatedCACert() string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "unrelated test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
