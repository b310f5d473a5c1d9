package clustertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var stepCABin = flag.String("stepca", "", "BenchmarkSeedStorm: a step-ca binary (v0.30.2: GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN=/tmp/stepca go install github.com/smallstep/certificates/cmd/step-ca@v0.30.2); each variant then also runs against its /1.0/sign, right after sower's, and reports the ratios")

// stepCAName is the name step-ca's own TLS certificate carries.
const stepCAName = "stepca.bench"

// stepCA is a step-ca process with a root and an intermediate made here,
// one JWK provisioner, and a certificate request like a fetcher's.
type stepCA struct {
	url, rootFile string
	cmd           *exec.Cmd
	prov          *ecdsa.PrivateKey
	kid           string
	csrPEM        string
}

func writePEM(b *testing.B, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
}

// startStepCA writes a CA (root, intermediate, ca.json) into a new
// directory, starts step-ca on 127.0.0.3 and waits for /health.
func startStepCA(b *testing.B, bin string) *stepCA {
	dir := b.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		return k
	}
	rootKey, intKey := key(), key()
	now := time.Now()
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		b.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	intTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bench intermediate"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	intDER, err := x509.CreateCertificate(rand.Reader, intTmpl, root, &intKey.PublicKey, rootKey)
	if err != nil {
		b.Fatal(err)
	}
	intKeyDER, _ := x509.MarshalECPrivateKey(intKey)
	s := &stepCA{rootFile: filepath.Join(dir, "root.pem"), prov: key()}
	writePEM(b, s.rootFile, "CERTIFICATE", rootDER)
	writePEM(b, filepath.Join(dir, "intermediate.pem"), "CERTIFICATE", intDER)
	writePEM(b, filepath.Join(dir, "intermediate-key.pem"), "EC PRIVATE KEY", intKeyDER)

	pub := jose.JSONWebKey{Key: &s.prov.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		b.Fatal(err)
	}
	s.kid = base64.RawURLEncoding.EncodeToString(tp)
	pub.KeyID = s.kid
	addr := freePorts(b, "127.0.0.3", 1)[0]
	s.url = "https://" + addr
	cfg := map[string]any{
		"root": filepath.Join(dir, "root.pem"), "crt": filepath.Join(dir, "intermediate.pem"), "key": filepath.Join(dir, "intermediate-key.pem"),
		"address": addr, "dnsNames": []string{stepCAName}, "logger": map[string]any{"format": "text"},
		"authority": map[string]any{"provisioners": []any{map[string]any{"type": "JWK", "name": "bench", "key": pub}}},
		"tls":       map[string]any{"minVersion": 1.2, "maxVersion": 1.3},
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "ca.json")
	if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "step-ca.log"))
	if err != nil {
		b.Fatal(err)
	}
	s.cmd = exec.Command(bin, cfgFile)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait(); logf.Close() })
	pool := x509.NewCertPool()
	pool.AddCert(root)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: stepCAName}}}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := hc.Get(s.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "step-ca.log"))
			b.Fatalf("step-ca not healthy after 2 minutes: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	csrKey := key()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "f-0." + followerDomain}, DNSNames: []string{"f-0." + followerDomain}}, csrKey)
	if err != nil {
		b.Fatal(err)
	}
	s.csrPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
	return s
}

// signBodies are n /1.0/sign requests, each with its own one-time token
// (step-ca refuses a token twice), as `step ca token` makes them.
func (s *stepCA) signBodies(b *testing.B, n int) []string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: s.prov, KeyID: s.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	out := make([]string, n)
	for i := range out {
		jti := make([]byte, 16)
		rand.Read(jti)
		claims := struct {
			jwt.Claims
			SANs []string `json:"sans"`
		}{jwt.Claims{Issuer: "bench", Subject: "f-0." + followerDomain, Audience: jwt.Audience{"https://" + stepCAName + "/1.0/sign"},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute)),
			ID: base64.RawURLEncoding.EncodeToString(jti)}, []string{"f-0." + followerDomain}}
		tok, err := jwt.Signed(sig).Claims(claims).Serialize()
		if err != nil {
			b.Fatal(err)
		}
		body, _ := json.Marshal(map[string]string{"csr": s.csrPEM, "ott": tok})
		out[i] = string(body)
	}
	return out
}

// run is the same storm as seedStorm.run against step-ca's /1.0/sign (201
// Created), with /health as the probe.
func (s *stepCA) run(b *testing.B, clients int, rate float64) stormFigures {
	target := loadTarget{Name: "sign", Method: http.MethodPost, URL: s.url + "/1.0/sign", ServerName: stepCAName, Status: http.StatusCreated,
		Headers: map[string]string{"Content-Type": "application/json"}, Bodies: s.signBodies(b, b.N)}
	probe := loadProbe{loadTarget: loadTarget{Name: "status", URL: s.url + "/health", ServerName: stepCAName}, Every: "10ms"}
	plan := loadPlan{CAFile: s.rootFile, Clients: clients, Requests: b.N, Rate: rate, Timeout: "60s", Targets: []loadTarget{target}, Probes: []loadProbe{probe}}
	return measureStorm(b, s.cmd.Process.Pid, plan)
}
