package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyberark/conjur-api-go/conjurapi"
	conjurauthn "github.com/cyberark/conjur-api-go/conjurapi/authn"

	"github.com/sowerproject/sower/internal/testutil"
)

const auditCLIPolicy = `
- !policy
  id: sower
  body:
  - !webservice audit
- !policy
  id: conjur/seed-generation
  body:
  - !webservice
    annotations:
      sower/follower-hostnames: "*.followers.example"
- !host auditor
- !host app
- !host other
- !host follower-0
- !variable db/password
- !permit
  role: !host auditor
  privilege: read
  resource: !webservice sower/audit
- !permit
  role: !host app
  privilege: [read, execute]
  resource: !variable db/password
- !permit
  role: !host other
  privilege: [read, execute]
  resource: !variable db/password
- !permit
  role: !host follower-0
  privilege: execute
  resource: !webservice conjur/seed-generation
`

// TestAuditAnswersWhoReadAndWhichSeeds is the acceptance check of the
// audit query: against a real Leader, `sower audit` answers "who read
// variable X since T" and "which seeds did host H fetch" from the trail the
// reads and seed requests wrote; a login without read on
// webservice:sower/audit is refused.
func TestAuditAnswersWhoReadAndWhichSeeds(t *testing.T) {
	flags, url, dir := policyNode(t)
	cfg := conjurapi.Config{Account: "acme", ApplianceURL: url, SSLCertPath: testutil.CAFile(dir)}
	admin, err := conjurapi.NewClientFromKey(cfg, conjurauthn.LoginPair{Login: "admin", APIKey: readKey(t, dir)})
	must(t, err)
	loaded, err := admin.LoadPolicy(conjurapi.PolicyModePost, "root", strings.NewReader(auditCLIPolicy))
	must(t, err)
	key := func(h string) string { return loaded.CreatedRoles["acme:host:"+h].APIKey }
	must(t, admin.AddSecret("acme:variable:db/password", "s3cret"))
	as := func(login string) []string {
		return []string{"SOWER_API_KEY=" + key(login)}
	}
	withLogin := func(login string, args ...string) []string {
		return append(append(args, flags...), "--login", "host/"+login)
	}
	// The recorder writes the trail in the background: poll, bounded.
	query := func(min int, args ...string) []auditEvent {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, out := runSower(t, as("auditor"), withLogin("auditor", append([]string{"audit", "--json"}, args...)...)...)
			if code != 0 {
				t.Fatalf("audit %v: exit %d\n%s", args, code, out)
			}
			var evs []auditEvent
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if line == "" {
					continue
				}
				var e auditEvent
				if err := json.Unmarshal([]byte(line), &e); err != nil {
					t.Fatalf("audit --json line %q: %v", line, err)
				}
				evs = append(evs, e)
			}
			if len(evs) >= min || time.Now().After(deadline) {
				return evs
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Reads before T do not count.
	other, err := conjurapi.NewClientFromKey(cfg, conjurauthn.LoginPair{Login: "host/other", APIKey: key("other")})
	must(t, err)
	_, err = other.RetrieveSecret("acme:variable:db/password")
	must(t, err)
	// T is just after other's read, in the trail's own clock.
	first := query(1, "--kind", "secret-read", "--identity", "acme:host:other")
	if len(first) != 1 {
		t.Fatalf("other's read: %+v", first)
	}
	at, err := time.Parse(time.RFC3339Nano, first[0].At)
	must(t, err)
	since := at.Add(time.Nanosecond).Format(time.RFC3339Nano)
	app, err := conjurapi.NewClientFromKey(cfg, conjurauthn.LoginPair{Login: "host/app", APIKey: key("app")})
	must(t, err)
	for range 2 {
		_, err = app.RetrieveSecret("acme:variable:db/password")
		must(t, err)
	}
	code, out := runSower(t, as("follower-0"), withLogin("follower-0", "seed", "follower", "--hostname", "f-0.followers.example",
		"--identity-out", filepath.Join(t.TempDir(), "f.key"), "--out", filepath.Join(t.TempDir(), "f.seed"))...)
	if code != 0 {
		t.Fatalf("seed follower: exit %d\n%s", code, out)
	}
	seedID := strings.Fields(strings.TrimPrefix(out, "seed "))[0]

	code, out = runSower(t, as("app"), withLogin("app", "audit")...)
	if code == 0 || !strings.Contains(out, "read on acme:webservice:sower/audit") {
		t.Fatalf("app without the privilege: exit %d\n%s", code, out)
	}

	// Who read variable db/password since T: app, twice; not other.
	reads := query(2, "--kind", "secret-read", "--resource", "acme:variable:db/password", "--since", since)
	if len(reads) != 2 {
		t.Fatalf("reads since %s: %+v", since, reads)
	}
	for _, e := range reads {
		if e.Identity != "acme:host:app" || e.Action != "read" || e.Version != 1 {
			t.Errorf("read: %+v", e)
		}
	}
	// A duration works as "that long ago" and includes the earlier read.
	if all := query(3, "--kind", "secret-read", "--resource", "acme:variable:db/password", "--since", "1h"); len(all) != 3 {
		t.Errorf("reads in the last hour: %+v", all)
	}
	// --limit bounds the answer.
	if one := query(1, "--kind", "secret-read", "--limit", "1"); len(one) != 1 {
		t.Errorf("--limit 1: %+v", one)
	}

	// Which seeds did host follower-0 fetch: the one it was issued.
	seeds := query(1, "--kind", "seed", "--identity", "acme:host:follower-0")
	if len(seeds) != 1 || seeds[0].Resource != seedID || seeds[0].Action != "issue" || seeds[0].Outcome != "success" {
		t.Fatalf("seeds of follower-0 (want %s): %+v", seedID, seeds)
	}

	// The table names its columns and shows the row.
	code, out = runSower(t, as("auditor"), withLogin("auditor", "audit", "--kind", "seed", "--identity", "acme:host:follower-0")...)
	if code != 0 || !strings.Contains(out, "TIME") || !strings.Contains(out, "RESOURCE") || !strings.Contains(out, seedID) {
		t.Fatalf("table: exit %d\n%s", code, out)
	}

	// --follow prints new events as they are stored. The stream starts
	// at the current end of the trail, so app reads until a line arrives
	// (bounded).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fcmd := exec.CommandContext(ctx, testutil.BuildSower(t), withLogin("auditor", "audit", "--follow", "--json", "--kind", "secret-read", "--identity", "acme:host:app")...)
	fcmd.Env = append(os.Environ(), as("auditor")...)
	stdout, err := fcmd.StdoutPipe()
	must(t, err)
	must(t, fcmd.Start())
	defer func() { _ = fcmd.Process.Kill(); _ = fcmd.Wait() }()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var followed auditEvent
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("audit --follow ended before printing an event")
			}
			must(t, json.Unmarshal([]byte(line), &followed))
			break wait
		case <-tick.C:
			_, err := app.RetrieveSecret("acme:variable:db/password")
			must(t, err)
		case <-ctx.Done():
			t.Fatal("audit --follow printed no event in 30s")
		}
	}
	if followed.Identity != "acme:host:app" || followed.Kind != "secret-read" || followed.At <= reads[0].At {
		t.Fatalf("followed: %+v (the newest listed read is at %s)", followed, reads[0].At)
	}

	// A bad --since is a usage error (exit 2) saying what to give.
	code, out = runSower(t, as("auditor"), withLogin("auditor", "audit", "--since", "yesterday")...)
	if code != 2 || !strings.Contains(out, "RFC 3339") {
		t.Fatalf("--since yesterday: exit %d\n%s", code, out)
	}
}
