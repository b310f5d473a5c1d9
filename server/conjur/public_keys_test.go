package conjur_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cyberark/conjur-api-go/conjurapi"
)

// TestCLIPublicKeys: `conjur pubkeys` (conjur-api-go's PublicKeys) answers
// the keys a user's public_keys declare, as Conjur's public_keys.feature:
// text/plain, one key a line, sorted, ending in a newline, with no access
// token needed. An append or an update adds keys and a replace states
// them (as Conjur's loader adds public_key records, and deletes them only
// in a replace), and a role with none, or none at all, is a lone newline.
func TestCLIPublicKeys(t *testing.T) {
	n := startAuthnNode(t)
	admin := n.admin(t)
	const (
		laptop      = "ssh-rsa AAAAB3NzagKagJ+JTg2LzKz3WzEe49HhIqxF laptop"
		workstation = "ssh-rsa AAAAB3NzagKagJ+JTg2LzKz3WzEe49HhIqxF workstation"
		tablet      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq tablet"
	)
	load(t, admin, conjurapi.PolicyModePost, "root", `
- !user
  id: alice
  public_keys:
  - `+workstation+`
  - `+laptop+`
- !user bob
- !host app
`)
	get := func(path string) string {
		t.Helper()
		resp, err := n.http.Get(n.url + path) // no token, as Conjur allows
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET %s: %d %s %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		return string(b)
	}
	if got, err := admin.PublicKeys("user", "alice"); err != nil || string(got) != laptop+"\n"+workstation+"\n" {
		t.Fatalf("PublicKeys(user, alice) = %q, %v", got, err)
	}
	for path, want := range map[string]string{
		"/public_keys/acme/user/alice":  laptop + "\n" + workstation + "\n",
		"/public_keys/acme/user/bob":    "\n",
		"/public_keys/acme/user/nobody": "\n",
		"/public_keys/acme/host/app":    "\n",
		"/public_keys/other/user/alice": "\n",
	} {
		if got := get(path); got != want {
			t.Errorf("GET %s = %q, want %q", path, got, want)
		}
	}

	// An append adds keys and keeps the others.
	load(t, admin, conjurapi.PolicyModePost, "root", "- !user\n  id: alice\n  public_key: "+tablet+"\n")
	if got := get("/public_keys/acme/user/alice"); got != tablet+"\n"+laptop+"\n"+workstation+"\n" {
		t.Fatalf("after an append: %q", got)
	}
	// An update deletes no key the text leaves out (Conjur deletes no
	// public_key record in a PATCH) ...
	load(t, admin, conjurapi.PolicyModePatch, "root", "- !user\n  id: alice\n  public_keys: [ "+tablet+" ]\n")
	if got := get("/public_keys/acme/user/alice"); got != tablet+"\n"+laptop+"\n"+workstation+"\n" {
		t.Fatalf("after an update: %q", got)
	}
	// ... a replace states them.
	load(t, admin, conjurapi.PolicyModePut, "root", "- !user\n  id: alice\n  public_keys: [ "+laptop+" ]\n- !user bob\n- !host app\n")
	if got := get("/public_keys/acme/user/alice"); got != laptop+"\n" {
		t.Fatalf("after a replace: %q", got)
	}
}
