package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cyberark/conjur-api-go/conjurapi"
	conjurauthn "github.com/cyberark/conjur-api-go/conjurapi/authn"

	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/server"
)

// policyNode runs a Leader in the test process and returns the client flags
// that reach it, its URL and its data dir.
func policyNode(t *testing.T) (flags []string, url, dir string) {
	t.Helper()
	dir = t.TempDir()
	a := testutil.FreeAddrs(t, 4)
	s, err := server.New(server.Config{
		Name: "leader-1", Account: "acme", DataDir: dir,
		GRPCAddr: a[0], HTTPAddr: a[1], EtcdClientAddr: a[2], EtcdPeerAddr: a[3],
		Logger: slog.New(slog.DiscardHandler),
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
	_, h := s.Addrs()
	url = "https://" + h.String()
	return []string{"--server", url, "--ca-file", testutil.CAFile(dir), "--account", "acme",
		"--api-key-file", filepath.Join(dir, "admin.key")}, url, dir
}

// copyTree copies the example repository so a test may change it.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

var keyLine = regexp.MustCompile(`(?m)^\s+(acme:(?:host|user):\S+)\s+([0-9a-z]{56})$`)

// TestPolicySyncAndLoad runs `sower policy sync` and `sower policy load` as
// a user does, against a running Leader, on the example repository.
func TestPolicySyncAndLoad(t *testing.T) {
	flags, url, dir := policyNode(t)
	tree := copyTree(t, "../../examples/policy-repo")
	// The example restricts the follower to its data centre's network;
	// restricted_to is enforced, so add the test's own address.
	hosts := filepath.Join(tree, "hosts.yml")
	raw, err := os.ReadFile(hosts)
	must(t, err)
	must(t, os.WriteFile(hosts, bytes.Replace(raw, []byte("[10.20.0.0/16]"), []byte("[10.20.0.0/16, 127.0.0.1]"), 1), 0o644))
	run := func(args ...string) (int, string) {
		return runSower(t, nil, append(append([]string{"policy"}, args...), flags...)...)
	}

	code, out := run("sync", "--dry-run", tree)
	if code != 0 || !strings.Contains(out, "Dry run: syncing") || !strings.Contains(out, "+ role acme:host:follower-dc1-01") ||
		!strings.Contains(out, "would be created") || keyLine.MatchString(out) {
		t.Fatalf("sync --dry-run: exit %d\n%s", code, out)
	}
	code, out = run("sync", "--dry-run", tree)
	if code != 0 || !strings.Contains(out, "Dry run") {
		t.Fatalf("a dry run applied something: the second dry run says\n%s", out)
	}

	code, out = run("sync", tree)
	if code != 0 || !strings.Contains(out, "Synced") || !strings.Contains(out, "acme:policy:conjur/seed-generation") {
		t.Fatalf("sync: exit %d\n%s", code, out)
	}
	keys := map[string]string{}
	for _, m := range keyLine.FindAllStringSubmatch(out, -1) {
		keys[m[1]] = m[2]
	}
	follower := keys["acme:host:follower-dc1-01"]
	if follower == "" {
		t.Fatalf("sync printed no API key for follower-dc1-01:\n%s", out)
	}

	code, out = run("sync", tree)
	if code != 0 || !strings.Contains(out, "No changes") {
		t.Fatalf("second sync: exit %d\n%s", code, out)
	}

	// The acceptance check, through a real Conjur client: the follower the
	// repository grants conjur/seed-generation/consumers may execute the
	// seed service, and authenticates with the key the sync printed; an
	// application host may not.
	cfg := conjurapi.Config{Account: "acme", ApplianceURL: url, SSLCertPath: testutil.CAFile(dir)}
	admin, err := conjurapi.NewClientFromKey(cfg, conjurauthn.LoginPair{Login: "admin", APIKey: readKey(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	for role, want := range map[string]bool{
		"acme:host:follower-dc1-01": true,
		"acme:host:conjur/authn-k8s/production-cluster/apps/conjur-followers/service_account/conjur-follower": true,
		"acme:host:production/application-code/app-01":                                                        false,
	} {
		got, err := admin.CheckPermissionForRole("acme:webservice:conjur/seed-generation", role, "execute")
		if err != nil || got != want {
			t.Errorf("%s execute on conjur/seed-generation = %v, %v; want %v", role, got, err, want)
		}
	}
	host, err := conjurapi.NewClientFromKey(cfg, conjurauthn.LoginPair{Login: "host/follower-dc1-01", APIKey: follower})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := host.CheckPermission("acme:webservice:conjur/seed-generation", "execute"); err != nil || !ok {
		t.Fatalf("the follower checks its own execute: %v, %v", ok, err)
	}

	// A change in the tree: the follower is dropped from hosts.yml and from
	// the grant; the sync deletes it, with its key.
	must(t, os.WriteFile(filepath.Join(tree, "hosts.yml"), []byte("[]\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(tree, "conjur", "grants.yml"), []byte(`- !grant
  role: !group seed-generation/consumers
  member: !host authn-k8s/production-cluster/apps/conjur-followers/service_account/conjur-follower
`), 0o644))
	code, out = run("sync", "--dry-run", tree)
	if code != 0 || !strings.Contains(out, "Would delete") || !strings.Contains(out, "- role acme:host:follower-dc1-01") {
		t.Fatalf("sync --dry-run after removing a host does not list the deletion by id: exit %d\n%s", code, out)
	}
	code, out = run("sync", tree)
	if code != 0 || !strings.Contains(out, "Deleted (") || !strings.Contains(out, "- role acme:host:follower-dc1-01") {
		t.Fatalf("sync after removing a host: exit %d\n%s", code, out)
	}
	if ok, _ := admin.ResourceExists("acme:host:follower-dc1-01"); ok {
		t.Fatal("the removed follower still exists")
	}
	gone, err := conjurapi.NewClientFromKey(cfg, conjurauthn.LoginPair{Login: "host/follower-dc1-01", APIKey: follower})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gone.WhoAmI(); err == nil {
		t.Fatal("the removed follower still authenticates with its key")
	}

	// policy load, in its modes.
	file := filepath.Join(t.TempDir(), "extra.yml")
	must(t, os.WriteFile(file, []byte("- !host extra\n- !variable extra-secret\n"), 0o644))
	code, out = run("load", "--dry-run", "production", file)
	if code != 0 || !strings.Contains(out, "would change") || !strings.Contains(out, "+ role acme:host:production/extra") {
		t.Fatalf("load --dry-run: exit %d\n%s", code, out)
	}
	code, out = run("load", "production", file)
	if code != 0 || !strings.Contains(out, "Loaded extra.yml into policy production (append): version") ||
		!keyLine.MatchString(out) {
		t.Fatalf("load: exit %d\n%s", code, out)
	}
	must(t, os.WriteFile(file, []byte("- !delete\n  record: !variable extra-secret\n"), 0o644))
	if code, out = run("load", "production", file); code != 1 || !strings.Contains(out, "deletion statements") {
		t.Fatalf("append with !delete: exit %d\n%s", code, out)
	}
	if code, out = run("load", "--update", "production", file); code != 0 || !strings.Contains(out, "- resource acme:variable:production/extra-secret") {
		t.Fatalf("load --update with !delete: exit %d\n%s", code, out)
	}
	must(t, os.WriteFile(file, []byte("- !grant\n  role: !layer nowhere\n  member: !host extra\n"), 0o644))
	if code, out = run("load", "production", file); code != 1 || !strings.Contains(out, "extra.yml:2:9") || !strings.Contains(out, "400") {
		t.Fatalf("load with an unknown reference: exit %d\n%s", code, out)
	}
	if code, out = run("load", "--replace", "--update", "production", file); code != 2 {
		t.Fatalf("--replace with --update: exit %d\n%s", code, out)
	}
	if code, out = run("sync", filepath.Join(tree, "no-such-dir")); code != 2 {
		t.Fatalf("sync of a missing folder: exit %d\n%s", code, out)
	}
}

func readKey(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
