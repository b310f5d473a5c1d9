package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/internal/testnode"
	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
)

const consumerPolicy = `
- !policy
  id: conjur/seed-generation
  body:
  - !webservice
    annotations:
      sower/follower-hostnames: "*.followers.example"
  - !group consumers
  - !permit
    role: !group consumers
    privilege: execute
    resource: !webservice
- !host follower
- !grant
  role: !group conjur/seed-generation/consumers
  member: !host follower
`

type client struct {
	t   *testing.T
	n   *testnode.Node
	hc  *http.Client
	tok string
}

func (c *client) do(method, path, contentType string, body []byte) (int, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.n.URL+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.tok != "" {
		req.Header.Set("Authorization", `Token token="`+c.tok+`"`)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func login(t *testing.T, n *testnode.Node, hc *http.Client, who, key string) *client {
	t.Helper()
	c := &client{t: t, n: n, hc: hc}
	req, _ := http.NewRequest(http.MethodPost, n.URL+"/authn/acme/"+url.PathEscape(who)+"/authenticate", strings.NewReader(key))
	req.Header.Set("Accept-Encoding", "base64")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("authenticate %s: %s", who, resp.Status)
	}
	c.tok = string(tok)
	return c
}

// TestRevokedCertificateIsRefused: a Follower's replication certificate
// from a seed works over mTLS until `ca revoke`, then every handshake with
// it is refused.
func TestRevokedCertificateIsRefused(t *testing.T) {
	n := testnode.Start(t)
	hc := testutil.HTTPClient(t, n.DataDir)
	admin := login(t, n, hc, "admin", n.AdminKey)
	code, body := admin.do(http.MethodPost, "/policies/acme/policy/root", "", []byte(consumerPolicy))
	if code != 201 {
		t.Fatalf("load policy: %d %s", code, body)
	}
	var loaded struct {
		CreatedRoles map[string]struct {
			APIKey string `json:"api_key"`
		} `json:"created_roles"`
	}
	json.Unmarshal(body, &loaded)
	follower := login(t, n, hc, "host/follower", loaded.CreatedRoles["acme:host:follower"].APIKey)

	id, _ := age.GenerateX25519Identity()
	form := url.Values{"follower_hostnames": {"f-0.followers.example"}, "recipient": {id.Recipient().String()}}
	code, sealed := follower.do(http.MethodPost, "/configuration/acme/seed/follower", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if code != 200 {
		t.Fatalf("seed: %d %s", code, sealed)
	}
	s, err := archive.Open(bytes.NewReader(sealed), n.Pin, id)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _ := s.ReadFile("tls/replication.pem")
	keyPEM, _ := s.ReadFile("tls/replication-key.pem")
	issued, err := pki.ParseIssued(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tc, _ := issued.TLSCertificate()
	cfg := testutil.TLSConfig(t, n.DataDir)
	cfg.Certificates = []tls.Certificate{*tc}
	handshake := func() error {
		cfg := cfg.Clone()
		cfg.ClientSessionCache = nil
		conn, err := tls.Dial("tcp", strings.TrimPrefix(n.URL, "https://"), cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3 reports a refused client certificate on the first read.
		conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		_, err = io.ReadAll(conn)
		return err
	}
	if err := handshake(); err != nil {
		t.Fatalf("mTLS with the seed's certificate before revocation: %v", err)
	}

	serial := issued.Leaf().SerialNumber.Text(16)
	code, body = admin.do(http.MethodPost, "/v1/ca/revocations", "application/json", []byte(`{"serial":"`+serial+`","reason":"test"}`))
	if code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _ := follower.do(http.MethodPost, "/v1/ca/revocations", "application/json", []byte(`{"serial":"`+serial+`"}`)); code != 403 {
		t.Fatalf("a non-admin revoked: %d", code)
	}
	// Every node applies revocations from an etcd watch; wait, bounded, for
	// this one to see it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for handshake() == nil {
		select {
		case <-ctx.Done():
			t.Fatal("the revoked certificate is still accepted")
		case <-time.After(20 * time.Millisecond):
		}
	}
	// etcd's client and peer listeners read the CRL file the node keeps.
	inCRL := func() bool {
		der, err := os.ReadFile(filepath.Join(n.DataDir, "tls", "crl.der"))
		if err != nil {
			return false
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return false
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(issued.Leaf().SerialNumber) == 0 {
				return true
			}
		}
		return false
	}
	for !inCRL() {
		select {
		case <-ctx.Done():
			t.Fatal("the revoked serial never reached the CRL etcd reads")
		case <-time.After(20 * time.Millisecond):
		}
	}
	code, body = admin.do(http.MethodGet, "/v1/ca/revocations", "", nil)
	if code != 200 || !strings.Contains(string(body), serial) {
		t.Fatalf("revocations: %d %s", code, body)
	}
}
