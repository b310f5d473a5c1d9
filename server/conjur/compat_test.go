package conjur_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cyberark/conjur-api-go/conjurapi"
	"github.com/cyberark/conjur-api-go/conjurapi/authn"

	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/server"
)

// leader is a running single-node Leader as a Conjur client sees it.
type leader struct {
	url, adminKey, caFile string
}

// startLeader runs a real single-node Leader over TLS.
func startLeader(t *testing.T) leader {
	t.Helper()
	dir := t.TempDir()
	a := testutil.FreeAddrs(t, 4)
	s, err := server.New(server.Config{
		Name: "leader-1", Account: "acme", DataDir: dir,
		GRPCAddr: a[0], HTTPAddr: a[1], EtcdClientAddr: a[2], EtcdPeerAddr: a[3],
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
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
		t.Fatalf("Run: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, h := s.Addrs()
	return leader{url: "https://" + h.String(), adminKey: strings.TrimSpace(string(raw)), caFile: testutil.CAFile(dir)}
}

func newClient(t *testing.T, l leader, login, key string) *conjurapi.Client {
	t.Helper()
	c, err := conjurapi.NewClientFromKey(conjurapi.Config{Account: "acme", ApplianceURL: l.url, SSLCertPath: l.caFile}, authn.LoginPair{Login: login, APIKey: key})
	if err != nil {
		t.Fatalf("conjur-api-go client: %v", err)
	}
	return c
}

// TestConjurClientAuthenticates uses the real Conjur client library: it logs
// in with the admin API key, receives a token it accepts and refreshes, and
// calls protected endpoints with it.
func TestConjurClientAuthenticates(t *testing.T) {
	l := startLeader(t)
	key := l.adminKey
	c := newClient(t, l, "admin", key)

	raw, err := c.WhoAmI()
	if err != nil {
		t.Fatalf("WhoAmI: %v", err)
	}
	var who map[string]string
	if err := json.Unmarshal(raw, &who); err != nil || who["username"] != "admin" || who["account"] != "acme" {
		t.Fatalf("WhoAmI = %s (%v)", raw, err)
	}

	got, err := c.Login("admin", key)
	if err != nil || string(got) != key {
		t.Fatalf("Login = %q, %v; want the API key back", got, err)
	}

	tok, err := c.Authenticate(authn.LoginPair{Login: "admin", APIKey: key})
	if err != nil || !strings.Contains(string(tok), `"payload"`) {
		t.Fatalf("Authenticate = %s, %v", tok, err)
	}

	if _, err := newClient(t, l, "admin", "not-the-key").WhoAmI(); err == nil {
		t.Fatal("WhoAmI with a wrong API key succeeded")
	}

	newKey, err := c.RotateAPIKey("acme:user:admin")
	if err != nil || len(newKey) < 50 || string(newKey) == key {
		t.Fatalf("RotateAPIKey = %q, %v", newKey, err)
	}
	if _, err := newClient(t, l, "admin", string(newKey)).WhoAmI(); err != nil {
		t.Fatalf("WhoAmI with the rotated key: %v", err)
	}
}
