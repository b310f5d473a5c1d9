package conjur_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/fetch"
)

// followersPolicy lets the Follower pods' seed fetcher, a Kubernetes
// service account, authenticate with its service-account token through the
// Kubernetes authenticator "followers" (host named by token-app-property,
// constrained by annotations) and take Follower seeds.
const followersPolicy = `
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
  - !policy
    id: authn-k8s/followers
    body:
    - !webservice
    - !variable public-keys
    - !variable issuer
    - !variable audience
    - !variable token-app-property
    - !variable identity-path
    - !host
      id: apps/seed-fetcher
      annotations:
        authn-k8s/namespace: conjur-followers
        authn-k8s/service-account: seed-fetcher
    - !permit
      role: !host apps/seed-fetcher
      privilege: [ authenticate ]
      resource: !webservice
- !grant
  role: !group conjur/seed-generation/consumers
  member: !host conjur/authn-k8s/followers/apps/seed-fetcher
`

// TestSeedFetcherWithServiceAccountToken: the seed fetcher of a Follower
// pod (seed/fetch, as sower-seed-fetcher runs it) authenticates with its
// projected service-account token at CONJUR_AUTHN_URL and gets a verified
// Follower seed; a pod of another service account is refused.
func TestSeedFetcherWithServiceAccountToken(t *testing.T) {
	n := startAuthnNode(t)
	key := rsaKey("kube-1", 0)
	n.load(t, followersPolicy)
	n.setVariables(t, map[string]string{
		"conjur/authn-k8s/followers/public-keys":        publicKeys(key),
		"conjur/authn-k8s/followers/issuer":             kubeIssuer,
		"conjur/authn-k8s/followers/audience":           kubeAudience,
		"conjur/authn-k8s/followers/token-app-property": "kubernetes.io/serviceaccount/name",
		"conjur/authn-k8s/followers/identity-path":      "conjur/authn-k8s/followers/apps",
	})
	run := func(t *testing.T, p pod, deadline time.Duration) (string, *fetch.Result, error) {
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(key.sign(t, saClaims(p, time.Now()))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "seed")
		res, err := fetch.Run(context.Background(), fetch.Config{
			SeedURL: n.url + "/configuration/acme/seed/follower", Account: "acme",
			Hostnames: []string{"follower-0.conjur-followers.svc.cluster.local"}, Dir: dir, Pin: n.pin,
			AuthnURL: n.url + "/authn-jwt/followers", JWTPath: tokenFile,
			Deadline: deadline, Backoff: 50 * time.Millisecond,
		})
		return dir, res, err
	}
	follower := pod{"conjur-followers", "follower-0", uid(500), "seed-fetcher", uid(501)}
	dir, res, err := run(t, follower, 20*time.Second)
	if err != nil {
		t.Fatalf("fetch: %v\n%s", err, n.log)
	}
	if res.Manifest.Kind != "follower" || res.Manifest.CAPin != n.pin {
		t.Fatalf("manifest %+v", res.Manifest.Metadata)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "tls", "follower.pem"))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := pki.ParseCertificatesPEM(raw)
	if err != nil || !slices.Equal(chain[0].DNSNames, []string{"follower-0.conjur-followers.svc.cluster.local"}) {
		t.Fatalf("certificate: %v %v", err, chain)
	}
	if !strings.Contains(n.log.String(), "role=acme:host:conjur/authn-k8s/followers/apps/seed-fetcher") {
		t.Error("the log does not name the authenticated host")
	}

	intruder := pod{"conjur-followers", "follower-1", uid(502), "default", uid(503)}
	if _, _, err := run(t, intruder, 2*time.Second); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a pod of another service account: %v, want a 401", err)
	}
}

// TestSeedFetcherNamesTheHostInTheJWTPath: with an authenticator that has no
// token-app-property, the seed fetcher puts CONJUR_AUTHN_LOGIN in Conjur's
// authn-jwt path (/authn-jwt/<id>/<account>/<host>/authenticate), so a
// Follower whose host is declared in the seeds' id form gets its seed;
// without the login the same token is refused.
func TestSeedFetcherNamesTheHostInTheJWTPath(t *testing.T) {
	key := rsaKey("kube-1", 0)
	n, _ := k8sNode(t, key)
	n.load(t, `
- !policy
  id: conjur/seed-generation
  body:
  - !webservice
    annotations:
      sower/follower-hostnames: "*.conjur-followers.svc.cluster.local"
  - !permit
    role: !host /conjur/authn-k8s/prod/apps/shop/service_account/web
    privilege: execute
    resource: !webservice
`)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(key.sign(t, saClaims(webPod, time.Now()))), 0o600); err != nil {
		t.Fatal(err)
	}
	fetchAs := func(login string, deadline time.Duration) (*fetch.Result, error) {
		return fetch.Run(context.Background(), fetch.Config{
			SeedURL: n.url + "/configuration/acme/seed/follower", Account: "acme",
			Hostnames: []string{"follower-0.conjur-followers.svc.cluster.local"}, Dir: filepath.Join(t.TempDir(), "seed"),
			Pin: n.pin, AuthnURL: n.url + "/authn-jwt/prod", JWTPath: tokenFile, Login: login,
			Deadline: deadline, Backoff: 50 * time.Millisecond,
		})
	}
	res, err := fetchAs("host/"+apps+"shop/service_account/web", 20*time.Second)
	if err != nil {
		t.Fatalf("fetch as the id-form host: %v\n%s", err, n.log)
	}
	if res.Manifest.Kind != "follower" {
		t.Fatalf("manifest %+v", res.Manifest.Metadata)
	}
	if _, err := fetchAs("", 2*time.Second); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without a login and without token-app-property: %v, want a 401", err)
	}
}
