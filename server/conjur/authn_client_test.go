package conjur_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyberark/conjur-api-go/conjurapi"

	"github.com/sowerproject/sower/authn/client"
)

// TestPodAuthnClientFeedsAConjurApplication: sower-authn-client's logic,
// trusting the node by its CA pin alone, writes the access token of a
// deployment's host; an application using conjur-api-go's token-file
// client reads a secret with it.
func TestPodAuthnClientFeedsAConjurApplication(t *testing.T) {
	key := rsaKey("kube-1", 0)
	n, _ := k8sNode(t, key)
	n.load(t, `
- !variable shop/db-password
- !permit
  role: !host conjur/authn-k8s/prod/apps/shop/deployment/web
  privileges: [ read, execute ]
  resource: !variable shop/db-password
`)
	n.setVariables(t, map[string]string{"shop/db-password": "hunter2"})
	dir := t.TempDir()
	jwtPath := filepath.Join(dir, "token")
	if err := os.WriteFile(jwtPath, []byte(key.sign(t, saClaims(webPod, time.Now()))), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "conjur", "access-token")
	if err := os.MkdirAll(filepath.Dir(tokenFile), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := client.FromEnv(func(k string) string {
		return map[string]string{
			"CONJUR_APPLIANCE_URL": n.url, "CONJUR_AUTHN_JWT_SERVICE_ID": "prod", "CONJUR_ACCOUNT": "acme",
			"CONJUR_AUTHN_LOGIN": "host/" + apps + "shop/deployment/web", "JWT_TOKEN_PATH": jwtPath,
			"CONJUR_AUTHN_TOKEN_FILE": tokenFile, "SOWER_CA_PIN": n.pin.String(),
		}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Deadline = 20 * time.Second
	if err := client.Run(context.Background(), c); err != nil {
		t.Fatalf("authn client: %v\n%s", err, n.log)
	}
	app, err := conjurapi.NewClientFromTokenFile(conjurapi.Config{Account: "acme", ApplianceURL: n.url, SSLCertPath: n.caFile}, tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := app.RetrieveSecret("shop/db-password")
	if err != nil || string(v) != "hunter2" {
		t.Fatalf("the application's RetrieveSecret: %q, %v", v, err)
	}

	// A pod the host does not stand for is refused, and the client says so.
	other := filepath.Join(dir, "other-token")
	if err := os.WriteFile(other, []byte(key.sign(t, saClaims(dbPod, time.Now()))), 0o600); err != nil {
		t.Fatal(err)
	}
	c.JWTPath, c.Deadline, c.Backoff = other, time.Second, 100*time.Millisecond
	if err := client.Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("authn client for another pod: %v, want a refusal", err)
	}
}
