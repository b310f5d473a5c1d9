package podtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// followerHost is the Followers' host in the example repository's
// authenticator, named by its token's sub (the chart's form).
const followerHost = "system:serviceaccount:conjur-followers:conjur-follower"

// examplePolicy syncs the example repository (examples/policy-repo) and
// appends what the chart's Followers need that it lacks: the JWT settings
// of its production-cluster authenticator, the Followers' host (with seed
// rights) and 18,000 annotated variables, readable by a group.
func examplePolicy(l *leader) {
	l.sower("policy", "sync", filepath.Join(repoRoot(l.t), "examples", "policy-repo"))
	loads := []struct{ id, text string }{
		{authnPolicy, "- !variable public-keys\n- !variable issuer\n- !variable audience\n- !variable token-app-property\n- !variable identity-path\n"},
		{authnPolicy + "/apps", "- !host\n  id: " + followerHost + "\n  annotations:\n    authn-k8s/namespace: conjur-followers\n    authn-k8s/service-account: conjur-follower\n" +
			"- !grant\n  role: !layer\n  member: !host " + followerHost + "\n"},
		{"conjur/seed-generation", "- !grant\n  role: !group consumers\n  member: !host /" + authnPolicy + "/apps/" + followerHost + "\n"},
		{"root", "- !policy\n  id: bench\n  body:\n" + indent(variablesPolicy(18000), "  ")},
	}
	for _, p := range loads {
		code, _, body := l.do(http.MethodPost, "/policies/"+account+"/policy/"+p.id, l.token, []byte(p.text))
		if code != http.StatusCreated {
			l.t.Fatalf("load policy %s: %d %s", p.id, code, body)
		}
	}
}

// variablesPolicy declares n annotated variables and a group that may read
// them all (the shape of policy's BenchmarkLoad18000Variables).
func variablesPolicy(n int) string {
	var b strings.Builder
	b.WriteString("- !group consumers\n")
	for i := range n {
		fmt.Fprintf(&b, "- &v%d !variable\n  id: secrets/v%05d\n  annotations: {owner-team: payments}\n", i, i)
	}
	b.WriteString("- !permit\n  role: !group consumers\n  privileges: [read, execute]\n  resources:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - *v%d\n", i)
	}
	return b.String()
}

func indent(s, by string) string {
	return by + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+by) + "\n"
}

// BenchmarkFollowerPodReady measures, per Follower pod, the time from
// `podman kube play` of the chart's rendered pod to its first 200 on
// /readyz: the seed fetcher's login and seed fetch, then the Follower's
// start and first sync, against a Leader holding the example repository
// plus 18,000 variables. s/ready is that time; s/seed-fetch the init
// container's run (podman's start and finish times). Slow (one pod per
// iteration): run it with -benchtime=3x.
func BenchmarkFollowerPodReady(b *testing.B) {
	requirePodman(b)
	buildImages(b)
	c := newCluster(b, examplePolicy)
	// The example's seed service allows *.conjur-followers.svc.cluster.local,
	// not the chart's second default name (….svc).
	c.hostnames = []string{serviceName}
	hc := c.followerClient(b)
	var ready, played, fetch, follower time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		name := fmt.Sprintf("conjur-follower-bench-%d", i)
		ports := freePorts(b, 2)
		pod := c.followerPod(b, name, ports[0], ports[1])
		b.StartTimer()
		start := time.Now()
		down := play(b, c.dir, pod)
		played += time.Since(start)
		waitReady(b, hc, name, ports[0], 5*time.Minute)
		ready += time.Since(start)
		b.StopTimer()
		fetch += initRun(b, name+"-seed-fetcher")
		follower += followerStart(b, name+"-follower")
		down()
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(ready.Seconds()/n, "s/ready")
	b.ReportMetric(played.Seconds()/n, "s/kube-play")
	b.ReportMetric(fetch.Seconds()/n, "s/seed-fetch")
	b.ReportMetric(follower.Seconds()/n, "s/follower-start")
}

// followerStart is the time from the Follower container's start to its
// "sower follower ready" log line (start-up and first sync).
func followerStart(t testing.TB, ctr string) time.Duration {
	t.Helper()
	out, err := podmanOut("inspect", "--format", "{{.State.StartedAt.Format \"2006-01-02T15:04:05.999999999Z07:00\"}}", ctr)
	if err != nil {
		t.Fatalf("podman inspect %s: %q, %v", ctr, out, err)
	}
	started, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(logs(ctr), "\n") {
		var line struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "sower follower ready" {
			return line.Time.Sub(started)
		}
	}
	t.Fatalf("%s logged no \"sower follower ready\":\n%s", ctr, logs(ctr))
	return 0
}

// initRun is how long a finished container ran, by podman's record.
func initRun(t testing.TB, ctr string) time.Duration {
	t.Helper()
	out, err := podmanOut("inspect", "--format", "{{.State.StartedAt.Format \"2006-01-02T15:04:05.999999999Z07:00\"}} {{.State.FinishedAt.Format \"2006-01-02T15:04:05.999999999Z07:00\"}}", ctr)
	f := strings.Fields(out)
	if err != nil || len(f) != 2 {
		t.Fatalf("podman inspect %s: %q, %v", ctr, out, err)
	}
	start, err1 := time.Parse(time.RFC3339Nano, f[0])
	end, err2 := time.Parse(time.RFC3339Nano, f[1])
	if err1 != nil || err2 != nil || end.Before(start) {
		t.Fatalf("podman inspect %s: start %q end %q", ctr, f[0], f[1])
	}
	return end.Sub(start)
}
