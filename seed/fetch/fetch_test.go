package fetch_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyberark/conjur-api-go/conjurapi"
	"github.com/cyberark/conjur-api-go/conjurapi/authn"

	"github.com/sowerproject/sower/internal/testnode"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/fetch"
)

const seedPolicy = `
- !policy
  id: conjur
  body:
  - !policy
    id: seed-generation
    body:
    - !webservice
      annotations:
        sower/follower-hostnames: "*.conjur-followers.svc.cluster.local"
    - !group consumers
    - !permit
      role: !group consumers
      privilege: execute
      resource: !webservice
- !host follower
- !host stranger
- !grant
  role: !group conjur/seed-generation/consumers
  member: !host follower
`

// loadPolicy loads the seed policy with the real Conjur client and returns
// the API keys of the hosts it created.
func loadPolicy(t testing.TB, n *testnode.Node) map[string]string {
	t.Helper()
	c, err := conjurapi.NewClientFromKey(conjurapi.Config{Account: n.Account, ApplianceURL: n.URL, SSLCertPath: n.CAFile},
		authn.LoginPair{Login: "admin", APIKey: n.AdminKey})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.LoadPolicy(conjurapi.PolicyModePost, "root", strings.NewReader(seedPolicy))
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	keys := map[string]string{}
	for id, r := range resp.CreatedRoles {
		keys[id] = r.APIKey
	}
	return keys
}

func config(n *testnode.Node, dir, login, key string) fetch.Config {
	return fetch.Config{
		SeedURL: n.URL + "/configuration/" + n.Account + "/seed/follower", Account: n.Account,
		Hostnames: []string{"follower-0.conjur-followers.svc.cluster.local"}, Dir: dir, Pin: n.Pin,
		Login: login, APIKey: key, Deadline: 20 * time.Second, Backoff: 50 * time.Millisecond,
	}
}

// TestFetcherEndToEnd: a host granted conjur/seed-generation/consumers runs
// the fetcher and gets a verified, unpacked Follower seed whose certificate
// chains to the pin and carries exactly the requested name.
func TestFetcherEndToEnd(t *testing.T) {
	n := testnode.Start(t)
	keys := loadPolicy(t, n)
	dir := filepath.Join(t.TempDir(), "follower")
	res, err := fetch.Run(context.Background(), config(n, dir, "host/follower", keys["acme:host:follower"]))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if res.Manifest.Kind != "follower" || res.Manifest.CAPin != n.Pin {
		t.Fatalf("manifest %+v", res.Manifest.Metadata)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "tls", "follower.pem"))
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := pki.ParseCertificatesPEM(raw)
	if !slices.Equal(chain[0].DNSNames, []string{"follower-0.conjur-followers.svc.cluster.local"}) {
		t.Fatalf("certificate names %v", chain[0].DNSNames)
	}
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(n.CAFile)
	rootCerts, _ := pki.ParseCertificatesPEM(caPEM)
	for _, c := range rootCerts {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verified, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	if err != nil || !n.Pin.MatchesChain(verified[0]) {
		t.Fatalf("the Follower certificate does not chain to the pinned CA: %v", err)
	}
}

// TestFetcherWithoutExecuteGets403: a host without execute is refused, with
// nothing issued and nothing written.
func TestFetcherWithoutExecuteGets403(t *testing.T) {
	n := testnode.Start(t)
	keys := loadPolicy(t, n)
	dir := filepath.Join(t.TempDir(), "follower")
	c := config(n, dir, "host/stranger", keys["acme:host:stranger"])
	c.Deadline = 2 * time.Second
	_, err := fetch.Run(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "execute on acme:webservice:conjur/seed-generation") {
		t.Fatalf("fetch without execute: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("a refused fetch wrote the seed directory")
	}
}

// TestFetcherRefusesWrongPin: a fetcher holding another CA's pin never
// talks to the Leader.
func TestFetcherRefusesWrongPin(t *testing.T) {
	n := testnode.Start(t)
	keys := loadPolicy(t, n)
	c := config(n, filepath.Join(t.TempDir(), "f"), "host/follower", keys["acme:host:follower"])
	c.Pin[0] ^= 0xff
	c.Deadline = time.Second
	if _, err := fetch.Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "pin") {
		t.Fatalf("wrong pin: %v", err)
	}
}
