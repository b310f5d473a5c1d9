package clustertest

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"filippo.io/age"
)

var (
	stormProfile        = flag.String("storm-cpuprofile", "", "BenchmarkSeedStorm: write a CPU profile of the Leader during each storm (taken through its --pprof listener) to <this prefix>-<variant>.pprof")
	stormProfileSeconds = flag.Int("storm-profile-seconds", 5, "BenchmarkSeedStorm: how long each CPU profile or trace runs (from the storm's start)")
	stormTrace          = flag.String("storm-trace", "", "BenchmarkSeedStorm: write an execution trace of the Leader during each storm (taken through its --pprof listener) to <this prefix>-<variant>.trace, for go tool trace")
)

// stormPolicy lets host seed-fetcher ask for Follower seeds named
// *.<followerDomain>, as a fleet's fetchers are set up (docs/seeds.md).
const stormPolicy = `- !policy
  id: conjur/seed-generation
  body:
  - !webservice
    annotations:
      sower/follower-hostnames: "*.` + followerDomain + `"
  - !group consumers
  - !permit
    role: !group consumers
    privilege: execute
    resource: !webservice
- !host seed-fetcher
- !grant
  role: !group conjur/seed-generation/consumers
  member: !host seed-fetcher
`

// seedStorm is a Leader process (started with --pprof) and what a fetcher
// sends it.
type seedStorm struct {
	h      *harness
	leader *proc
	pprof  string
	seed   loadTarget
	status loadProbe
}

func newSeedStorm(b *testing.B) *seedStorm {
	h := newHarness(b, "storm", 0)
	l := h.node("leader-1", "127.0.0.2")
	pprofAddr := freePorts(b, "127.0.0.2", 1)[0]
	if err := l.start("--pprof", pprofAddr); err != nil {
		b.Fatal(err)
	}
	admin, err := h.authenticate(l.url())
	if err != nil {
		b.Fatal(err)
	}
	code, body, err := h.loadPolicy(l.url(), admin, stormPolicy)
	if err != nil || code != http.StatusCreated {
		b.Fatalf("load policy: %d %s %v", code, body, err)
	}
	i := strings.Index(body, `"api_key":"`)
	key := body[i+len(`"api_key":"`):]
	key = key[:strings.IndexByte(key, '"')]
	// The fetcher's login (sower-seed-fetcher's first call): its access
	// token is good for eight minutes, longer than any storm here.
	req, _ := http.NewRequest(http.MethodPost, l.url()+"/authn/"+account+"/"+url.PathEscape("host/seed-fetcher")+"/authenticate", strings.NewReader(key))
	req.Header.Set("Accept-Encoding", "base64")
	resp, err := h.client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("fetcher login: %s %s", resp.Status, tok)
	}
	// The seed call exactly as seed/fetch makes it. Nothing in it needs to
	// differ between requests: the Leader gives every seed its own id,
	// keys and serials, and seals it with its own ephemeral key; the
	// recipient (one fetcher's age key) only decides who can open it.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	form := url.Values{"follower_hostnames": {"f-0." + followerDomain}, "recipient": {id.Recipient().String()}}
	s := &seedStorm{h: h, leader: l, pprof: pprofAddr,
		seed: loadTarget{Name: "seed", Method: http.MethodPost, URL: l.url() + "/configuration/" + account + "/seed/follower",
			Headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": `Token token="` + string(tok) + `"`},
			Body:    form.Encode()},
		status: loadProbe{loadTarget: loadTarget{Name: "status", URL: l.url() + "/v1/status"}, Every: "10ms"},
	}
	// One seed before any storm: the Leader's key pools start filling with
	// the first seed, as they would have long before a real storm.
	r := runLoad(b, loadPlan{CAFile: h.caFile(), Clients: 1, Requests: 1, Targets: []loadTarget{s.seed}})
	if r.Failed > 0 {
		b.Fatalf("first seed: %v", r.Errors)
	}
	return s
}

// profile asks the Leader's --pprof listener for a CPU profile of the
// next seconds and writes it to path.
func (s *seedStorm) profile(b *testing.B, path string, seconds int) (wait func()) {
	return cpuProfile(b, s.pprof, path, seconds)
}

// trace asks the Leader's --pprof listener for an execution trace of the
// next seconds and writes it to path.
func (s *seedStorm) trace(b *testing.B, path string, seconds int) (wait func()) {
	return pprofGet(b, fmt.Sprintf("http://%s/debug/pprof/trace?seconds=%d", s.pprof, seconds), path)
}

// cpuProfile asks the --pprof listener at addr for a CPU profile of the
// next seconds and writes it to path; wait returns once it is written.
func cpuProfile(b *testing.B, addr, path string, seconds int) (wait func()) {
	return pprofGet(b, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), path)
}

// pprofGet fetches a profile or trace from a --pprof listener in the
// background and writes it to path; wait returns once it is written.
func pprofGet(b *testing.B, u, path string) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(u)
		if err != nil {
			b.Errorf("%s: %v", u, err)
			return
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Errorf("%s: %d %v", u, resp.StatusCode, err)
			return
		}
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			b.Error(err)
		}
	}()
	return func() { <-done }
}

// stormFigures are one storm's results.
type stormFigures struct {
	perSec, p50, p99, statusP99, cpuPerReq float64
}

// run is one storm of b.N sealed Follower seeds from loadgen's process:
// closed loop with clients always outstanding (rate 0), or open loop at
// rate requests/s served by up to clients connections.
func (s *seedStorm) run(b *testing.B, name string, clients int, rate float64) stormFigures {
	plan := loadPlan{CAFile: s.h.caFile(), Clients: clients, Requests: b.N, Rate: rate, Timeout: "60s",
		Targets: []loadTarget{s.seed}, Probes: []loadProbe{s.status}}
	if *stormProfile != "" {
		defer s.profile(b, *stormProfile+"-"+name+".pprof", *stormProfileSeconds)()
	}
	if *stormTrace != "" {
		defer s.trace(b, *stormTrace+"-"+name+".trace", *stormProfileSeconds)()
	}
	return measureStorm(b, s.leader.cmd.Process.Pid, plan)
}

// measureStorm runs plan (one target and a probe named status) against
// the server process pid and reports throughput, latency, the probe's p99,
// the server's CPU per request and the cores it kept busy.
func measureStorm(b *testing.B, pid int, plan loadPlan) stormFigures {
	load0 := loadAverage()
	cpu0 := cpuTicks(pid)
	b.ResetTimer()
	r := runLoad(b, plan)
	b.StopTimer()
	cpu := cpuTicks(pid) - cpu0
	if r.Failed > 0 {
		b.Fatalf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
	}
	st := r.Probes["status"]
	if st.Failed > 0 {
		b.Errorf("%d of %d status probes failed: %v", st.Failed, st.Requests, r.Errors)
	}
	f := stormFigures{perSec: r.PerSec, p50: r.P50ms, p99: r.P99ms, statusP99: st.P99ms, cpuPerReq: float64(cpu) * 10 * 1000 / float64(r.Requests)}
	b.ReportMetric(f.perSec, "req/s")
	b.ReportMetric(f.p50, "p50-ms")
	b.ReportMetric(f.p99, "p99-ms")
	b.ReportMetric(f.statusP99, "status-p99-ms")
	b.ReportMetric(f.cpuPerReq, "server-cpu-µs/req")
	b.ReportMetric(float64(cpu)/100/r.Seconds, "server-cores")
	b.ReportMetric(load0, "loadavg-1m")
	b.ReportMetric(r.clientCPUPerRequest(), "loadgen-cpu-µs/req")
	return f
}

// loadAverage is the machine's one-minute load average, to print next to
// latencies measured on a shared machine.
func loadAverage() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscanf(string(raw), "%f", &l)
	return l
}

// BenchmarkSeedStorm is a fleet of Followers starting at once, seen from
// outside the Leader: test/loadgen, a process of its own, sends sealed
// Follower seed requests over TLS (Conjur's REST path, form fields
// follower_hostnames and recipient, the fetcher's access token: what
// sower-seed-fetcher sends) to a Leader process that records every seed in
// etcd, while a probe asks /v1/status every 10 ms. b.N is the number of
// seeds per variant:
//
//   - closed-50, closed-200: that many requests always outstanding (the
//     Leader's throughput; latency is queueing, Little's law);
//   - rate-1000, rate-1500: requests due at that rate (open loop, up to
//     400 connections), latency counted from each request's due time.
//
// Reported: seeds/s (req/s), p50/p99, the status probe's p99, the Leader's
// CPU per seed (utime+stime from /proc, robust to a loaded machine), the
// cores it kept busy, and the load average when the variant started.
//
// With -stepca <step-ca binary>, every variant is followed by the same
// storm against step-ca's /1.0/sign (one certificate from a CSR and a
// one-time JWK token; /health probed), and the ratios sower/step-ca of
// throughput, p99 and CPU per request are reported with it.
//
//	go test ./test/cluster -run '^$' -bench SeedStorm -benchtime 3000x
//	go test ./test/cluster -run '^$' -bench 'SeedStorm/rate-1000' -benchtime 5000x -storm-cpuprofile /tmp/storm
//	go test ./test/cluster -run '^$' -bench 'SeedStorm/rate-1000' -benchtime 4000x -storm-trace /tmp/storm -storm-profile-seconds 2
//	go test ./test/cluster -run '^$' -bench SeedStorm -benchtime 3000x -stepca /tmp/stepca/step-ca
func BenchmarkSeedStorm(b *testing.B) {
	s := newSeedStorm(b)
	var ca *stepCA
	if *stepCABin != "" {
		ca = startStepCA(b, *stepCABin)
	}
	for _, v := range []struct {
		name    string
		clients int
		rate    float64
	}{
		{"closed-50", 50, 0},
		{"closed-200", 200, 0},
		{"rate-1000", 400, 1000},
		{"rate-1500", 400, 1500},
	} {
		var sower stormFigures
		b.Run(v.name, func(b *testing.B) { sower = s.run(b, v.name, v.clients, v.rate) })
		if ca == nil {
			continue
		}
		// step-ca right after, on the same machine in the same minute;
		// the ratios compare it with the sower run just before.
		b.Run("stepca-"+v.name, func(b *testing.B) {
			f := ca.run(b, v.clients, v.rate)
			b.ReportMetric(sower.perSec/f.perSec, "sower/stepca-throughput")
			b.ReportMetric(sower.p99/f.p99, "sower/stepca-p99")
			b.ReportMetric(sower.cpuPerReq/f.cpuPerReq, "sower/stepca-cpu")
		})
	}
}

// BenchmarkRESTStatus is GET /v1/status from test/loadgen's process, 16
// connections always busy, against an idle Leader: what one /v1 call
// costs the Leader (server-cpu-µs/req) through the REST gateway, without
// a storm around it. b.N is the number of requests.
//
//	go test ./test/cluster -run '^$' -bench RESTStatus -benchtime 20000x
func BenchmarkRESTStatus(b *testing.B) {
	s := newSeedStorm(b)
	plan := loadPlan{CAFile: s.h.caFile(), Clients: 16, Requests: b.N, Timeout: "60s", Targets: []loadTarget{s.status.loadTarget}}
	measureStorm(b, s.leader.cmd.Process.Pid, plan)
}
