package clustertest

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sowerproject/sower/server"
)

var (
	benchFollowers  = flag.Int("followers", 3, "BenchmarkReplicationLag: Followers attached")
	auditOff        = flag.Bool("follower-audit-off", false, "BenchmarkFollowerReads: also run the load on a second Follower started with --audit=false, for the cost of recording reads")
	leaderProfile   = flag.String("leader-cpuprofile", "", "BenchmarkReplicationLag, BenchmarkFollowerReads, BenchmarkFollowerColdStart (its first Follower): write a CPU profile of the Leader (through its --pprof listener) over the run's first -storm-profile-seconds to this file")
	followerProfile = flag.String("follower-cpuprofile", "", "BenchmarkReplicationLag: start the first Follower with --pprof and write its CPU profile over the run's first -storm-profile-seconds to this file (and over the idle window to this file + .idle); BenchmarkFollowerColdStart: the first Follower process's profile from its start")
	idleSeconds     = flag.Int("idle-seconds", 2, "BenchmarkReplicationLag: how long the idle CPU of the Leader and the Followers is measured before the writes (0: not measured)")
	inProcess       = flag.Bool("follower-in-process", false, "BenchmarkFollowerReads, BenchmarkReplicationLag: run the (first) Follower inside the test process (after its first start as a process unpacked its seed), so that go test -cpuprofile profiles it; the load still comes from its own process")
)

// inProcessFollower stops the Follower process p and runs the same
// Follower (its data dir, its unpacked seed, its addresses) inside the
// test process until the benchmark ends. It returns the pid to measure.
func inProcessFollower(b *testing.B, p *proc) int {
	p.stop()
	f, err := server.NewFollower(server.FollowerConfig{SeedDir: filepath.Join(p.dir, "seed"), DataDir: p.dir, HTTPAddr: p.http, GRPCAddr: p.grpc})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			b.Errorf("in-process Follower: %v", err)
		}
	})
	select {
	case <-f.Ready():
	case err := <-errc:
		b.Fatalf("in-process Follower: %v", err)
	case <-time.After(2 * time.Minute):
		b.Fatal("in-process Follower not ready after 2 minutes")
	}
	return os.Getpid()
}

// followerBench is a Leader and n Followers from seeds, with a host that
// may read one variable.
type followerBench struct {
	h         *harness
	leader    *proc
	standbys  []*proc
	followers []*proc
	admin     string
	appKey    string
	// pprof is the Leader's --pprof listener, with -leader-cpuprofile;
	// followerPprof the first Follower's, with -follower-cpuprofile.
	pprof, followerPprof string
}

func newFollowerBench(b *testing.B, n int) *followerBench {
	return newFollowerCluster(b, n, 0, 0)
}

// newFollowerCluster is a Leader, standbys Standbys (the cluster's ttl
// ttl seconds; 0 keeps the default) and n Followers.
func newFollowerCluster(b *testing.B, n, standbys, ttl int) *followerBench {
	h := newHarness(b, "bench", ttl)
	l1 := h.node("leader-1", "127.0.0.2")
	args := []string{"--cluster", "bench"}
	var pprofAddr string
	if *leaderProfile != "" {
		pprofAddr = freePorts(b, "127.0.0.2", 1)[0]
		args = append(args, "--pprof", pprofAddr)
	}
	if err := l1.start(args...); err != nil {
		b.Fatal(err)
	}
	admin, err := h.authenticate(l1.url())
	if err != nil {
		b.Fatal(err)
	}
	quorum := []string{"leader-1"}
	for i := range standbys {
		quorum = append(quorum, fmt.Sprintf("standby-%d", i+1))
	}
	pol := strings.Replace(h.clusterPolicy(quorum...), "    - !webservice\n",
		"    - !webservice\n      annotations:\n        sower/follower-hostnames: \"*."+followerDomain+"\"\n", 1) +
		"- !host app\n- !variable db/password\n- !permit\n  role: !host app\n  privileges: [read, execute]\n  resource: !variable db/password\n"
	code, body, err := h.loadPolicy(l1.url(), admin, pol)
	if err != nil || code != http.StatusCreated {
		b.Fatalf("load policy: %d %s %v", code, body, err)
	}
	i := strings.Index(body, `"api_key":"`)
	key := body[i+len(`"api_key":"`):]
	key = key[:strings.IndexByte(key, '"')]
	if _, err := setSecret(l1, admin, "bench-secret"); err != nil {
		b.Fatal(err)
	}
	fb := &followerBench{h: h, leader: l1, admin: admin, appKey: key, pprof: pprofAddr}
	for i := range standbys {
		p := h.node(quorum[i+1], fmt.Sprintf("127.0.0.%d", i+3))
		if err := h.join(l1.url(), p); err != nil {
			b.Fatal(err)
		}
		fb.standbys = append(fb.standbys, p)
	}
	if standbys > 0 {
		h.waitVoters(l1.url(), quorum...)
	}
	for i := range n {
		p, _ := h.followerNode(l1.url(), fmt.Sprintf("follower-%d", i+1), fmt.Sprintf("127.0.1.%d", i+1))
		var extra []string
		if i == 0 && *followerProfile != "" {
			fb.followerPprof = freePorts(b, p.ip, 1)[0]
			extra = append(extra, "--pprof", fb.followerPprof)
		}
		if err := p.start(extra...); err != nil {
			b.Fatal(err)
		}
		fb.followers = append(fb.followers, p)
	}
	return fb
}

// cpuTicks is the process's user+system CPU time in clock ticks (1/100 s).
func cpuTicks(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkFollowerReads measures secret reads and API-key logins per
// second on one Follower process over TLS (REST, Conjur's paths), the load
// from a separate process (test/loadgen) with 64 concurrent clients on
// kept-alive connections, and the Follower's CPU per request. With
// -follower-audit-off it also runs the same load on a second Follower
// started with --audit=false, in the same run, for the cost of recording:
//
//	go test ./test/cluster -run '^$' -bench FollowerReads -benchtime 20000x
//	go test ./test/cluster -run '^$' -bench 'FollowerReads/.*secret-read' -benchtime 20000x -follower-audit-off
func BenchmarkFollowerReads(b *testing.B) {
	fb := newFollowerBench(b, 1)
	f := fb.followers[0]
	pid := f.cmd.Process.Pid
	if *inProcess {
		pid = inProcessFollower(b, f)
	}
	type follower struct {
		name string
		p    *proc
		pid  int
	}
	runs := []follower{{"audit=on", f, pid}}
	if *auditOff {
		p, _ := fb.h.followerNode(fb.leader.url(), "follower-noaudit", "127.0.1.99")
		p.follower = append(p.follower, "--audit=false")
		if err := p.start(); err != nil {
			b.Fatal(err)
		}
		runs = append(runs, follower{"audit=off", p, p.cmd.Process.Pid})
	}
	for _, run := range runs {
		f, pid := run.p, run.pid
		tok, err := f.login("host/app", fb.appKey)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range []loadTarget{
			{Name: "secret-read", Method: http.MethodGet, URL: f.url() + secretPath, Headers: map[string]string{"Authorization": tok}, Expect: "bench-secret"},
			{Name: "api-key-login", Method: http.MethodPost, URL: f.url() + "/authn/" + account + "/host%2Fapp/authenticate", Body: fb.appKey,
				Headers: map[string]string{"Accept-Encoding": "base64"}},
		} {
			name := t.Name
			if *auditOff {
				name = run.name + "/" + t.Name
			}
			benchFollowerTarget(b, fb, f, pid, name, t)
		}
	}
}

func benchFollowerTarget(b *testing.B, fb *followerBench, f *proc, pid int, name string, t loadTarget) {
	b.Run(name, func(b *testing.B) {
		t.ServerName = f.serverName
		plan := loadPlan{CAFile: fb.h.caFile(), Clients: 64, Requests: b.N, Targets: []loadTarget{t}}
		cpu0, lcpu0 := cpuTicks(pid), cpuTicks(fb.leader.cmd.Process.Pid)
		b.ResetTimer()
		wait := startLoad(b, plan)
		if *leaderProfile != "" {
			// The Leader stores every audited read the Follower ships.
			cpuProfile(b, fb.pprof, *leaderProfile+"-"+strings.ReplaceAll(b.Name(), "/", "-"), *stormProfileSeconds)()
		}
		r := wait()
		b.StopTimer()
		cpu := cpuTicks(pid) - cpu0
		lcpu := cpuTicks(fb.leader.cmd.Process.Pid) - lcpu0
		b.ReportMetric(float64(lcpu)*10/float64(r.Requests)*1000, "leader-cpu-µs/req")
		if r.Failed > 0 {
			b.Fatalf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
		}
		b.ReportMetric(r.PerSec, "req/s")
		b.ReportMetric(r.P50ms, "p50-ms")
		b.ReportMetric(r.P99ms, "p99-ms")
		b.ReportMetric(float64(cpu)*10/float64(r.Requests)*1000, "follower-cpu-µs/req")
		b.ReportMetric(r.clientCPUPerRequest(), "loadgen-cpu-µs/req")
	})
}

// BenchmarkReplicationLag measures the time from a write acknowledged by
// the Leader to the moment it is readable on a Follower (a read with
// X-Sower-Min-Revision, which waits for it), at about 100 writes/s with
// -followers Followers attached, and the Leader's CPU per Follower:
//
//	go test ./test/cluster -run '^$' -bench ReplicationLag -benchtime 300x -followers 20
func BenchmarkReplicationLag(b *testing.B) {
	fb := newFollowerBench(b, *benchFollowers)
	pids := make([]int, len(fb.followers))
	for i, f := range fb.followers {
		pids[i] = f.cmd.Process.Pid
	}
	if *inProcess {
		pids[0] = inProcessFollower(b, fb.followers[0])
	}
	followersCPU := func() (t int64) {
		for _, pid := range pids {
			t += cpuTicks(pid)
		}
		return t
	}
	var mu sync.Mutex
	var lags []time.Duration
	var wg sync.WaitGroup
	// What the cluster costs with nothing written (raft ticks, progress
	// marks, acknowledgements, timers): a measuring window, not a wait.
	var idleF, idleL float64
	if *idleSeconds > 0 {
		var wait func()
		if *followerProfile != "" {
			wait = cpuProfile(b, fb.followerPprof, *followerProfile+".idle", *idleSeconds)
		}
		f0, l0, t0 := followersCPU(), cpuTicks(fb.leader.cmd.Process.Pid), time.Now()
		time.Sleep(time.Duration(*idleSeconds) * time.Second)
		if wait != nil {
			wait()
		}
		el := time.Since(t0).Seconds()
		idleF = float64(followersCPU()-f0) * 10 / el / float64(len(pids))
		idleL = float64(cpuTicks(fb.leader.cmd.Process.Pid)-l0) * 10 / el
	}
	fcpu0 := followersCPU()
	cpu0 := cpuTicks(fb.leader.cmd.Process.Pid)
	start := time.Now()
	if *leaderProfile != "" {
		defer cpuProfile(b, fb.pprof, *leaderProfile, *stormProfileSeconds)()
	}
	if *followerProfile != "" {
		defer cpuProfile(b, fb.followerPprof, *followerProfile, *stormProfileSeconds)()
	}
	b.ResetTimer()
	// Open loop: a write is due every 10 ms whether or not the last one
	// was acknowledged (as independent writers do), so the rate is 100/s
	// even when one write takes longer than 10 ms.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		f := fb.followers[i%len(fb.followers)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rev, err := setSecret(fb.leader, fb.admin, fmt.Sprintf("v-%d", i))
			if err != nil {
				b.Error(err)
				return
			}
			acked := time.Now()
			code, _, body, err := f.req(http.MethodGet, secretPath, fb.admin, "", "X-Sower-Min-Revision", fmt.Sprint(rev))
			if err != nil || code != http.StatusOK {
				b.Errorf("%s: %d %s %v", f.name, code, body, err)
				return
			}
			mu.Lock()
			lags = append(lags, time.Since(acked))
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	el := time.Since(start)
	cpu := cpuTicks(fb.leader.cmd.Process.Pid) - cpu0
	fcpu := followersCPU() - fcpu0
	b.ReportMetric(float64(fcpu)*10*1000/float64(b.N*len(pids)), "follower-cpu-µs/write")
	b.ReportMetric(float64(cpu)*10*1000/float64(b.N), "leader-cpu-µs/write")
	b.ReportMetric(float64(percentile(lags, 0.5).Microseconds())/1000, "lag-p50-ms")
	b.ReportMetric(float64(percentile(lags, 0.99).Microseconds())/1000, "lag-p99-ms")
	b.ReportMetric(float64(b.N)/el.Seconds(), "writes/s")
	b.ReportMetric(float64(cpu)*10/el.Seconds()/float64(len(fb.followers))*1000/1000, "leader-cpu-ms/s-per-follower")
	if *idleSeconds > 0 {
		b.ReportMetric(idleF, "follower-idle-cpu-ms/s")
		b.ReportMetric(idleL, "leader-idle-cpu-ms/s")
	}
}

// vmHWM is a process's peak resident memory in MiB (VmHWM).
func vmHWM(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// fleetPolicy is hosts annotated hosts in layers of 100 (each granted its
// layer) and variables annotated variables readable by one group: the
// scale issue 12 names for a Follower's cold start.
func fleetPolicy(hosts, variables int) (hostsText, variablesText string) {
	var b strings.Builder
	for l := range (hosts + 99) / 100 {
		fmt.Fprintf(&b, "- !layer l%04d\n", l)
		for h := range min(100, hosts-100*l) {
			fmt.Fprintf(&b, "- !host\n  id: l%04d/h%03d\n  annotations: {kubernetes/namespace: ns%d}\n", l, h, l%50)
		}
		fmt.Fprintf(&b, "- !grant\n  role: !layer l%04d\n  members:\n", l)
		for h := range min(100, hosts-100*l) {
			fmt.Fprintf(&b, "  - !host l%04d/h%03d\n", l, h)
		}
	}
	hostsText = b.String()
	b.Reset()
	b.WriteString("- !group consumers\n")
	for i := range variables {
		fmt.Fprintf(&b, "- &v%d !variable\n  id: secrets/v%05d\n  annotations: {owner-team: payments}\n", i, i)
	}
	b.WriteString("- !permit\n  role: !group consumers\n  privileges: [read, execute]\n  resources:\n")
	for i := range variables {
		fmt.Fprintf(&b, "  - *v%d\n", i)
	}
	return hostsText, b.String()
}

// loadLarge loads text into policy id on the Leader, with a client that
// waits as long as a large load takes.
func (fb *followerBench) loadLarge(b *testing.B, method, id, text string) {
	tr := fb.h.client().Transport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(method, fb.leader.url()+"/policies/"+account+"/policy/"+id, strings.NewReader(text))
	req.Header.Set("Authorization", fb.admin)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("load %s: %d %.300s", id, resp.StatusCode, body)
	}
}

// BenchmarkFollowerColdStart measures a Follower from its seed to ready
// (/readyz answers 200: the whole copy applied, the stores open) with
// 100,000 hosts (and their API keys) and 18,000 variables in the policy,
// and its peak resident memory. Each iteration is a new Follower:
//
//	go test ./test/cluster -run '^$' -bench FollowerColdStart -benchtime 2x
func BenchmarkFollowerColdStart(b *testing.B) {
	fb := newFollowerBench(b, 0)
	hosts, vars := fleetPolicy(100_000, 18_000)
	code, body, err := fb.h.loadPolicy(fb.leader.url(), fb.admin, "- !policy fleet\n- !policy vault\n")
	if err != nil || code != http.StatusCreated {
		b.Fatalf("load policy: %d %s %v", code, body, err)
	}
	t0 := time.Now()
	fb.loadLarge(b, http.MethodPut, "fleet", hosts)
	fb.loadLarge(b, http.MethodPost, "vault", vars)
	b.Logf("policy loaded on the Leader in %s", time.Since(t0).Round(time.Millisecond))
	var total time.Duration
	var hwm float64
	var leaderCPU, followerCPU int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		p, _ := fb.h.followerNode(fb.leader.url(), fmt.Sprintf("cold-%d", i+1), fmt.Sprintf("127.0.1.%d", i+1))
		cpu0 := cpuTicks(fb.leader.cmd.Process.Pid)
		waitProfile := func() {}
		if *leaderProfile != "" && i == 0 {
			waitProfile = cpuProfile(b, fb.pprof, *leaderProfile, *stormProfileSeconds)
		}
		if *inProcess {
			self0 := cpuTicks(os.Getpid())
			d := coldStartInProcess(b, fb, p)
			total += d
			leaderCPU += cpuTicks(fb.leader.cmd.Process.Pid) - cpu0
			followerCPU += cpuTicks(os.Getpid()) - self0
			waitProfile()
			continue
		}
		var extra []string
		if *followerProfile != "" && i == 0 {
			addr := freePorts(b, p.ip, 1)[0]
			extra = []string{"--pprof", addr}
			leaderWait, followerWait := waitProfile, startupProfile(b, addr, *followerProfile, *stormProfileSeconds)
			waitProfile = func() { leaderWait(); followerWait() }
		}
		b.StartTimer()
		start := time.Now()
		if err := p.start(extra...); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		leaderCPU += cpuTicks(fb.leader.cmd.Process.Pid) - cpu0
		hwm = max(hwm, vmHWM(p.cmd.Process.Pid))
		followerCPU += cpuTicks(p.cmd.Process.Pid)
		waitProfile() // the Leader's, or the Follower's: before it stops
		p.stop()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(total.Seconds()/float64(b.N), "s-to-ready")
	b.ReportMetric(float64(leaderCPU)/100/float64(b.N), "leader-cpu-s")
	b.ReportMetric(float64(followerCPU)/100/float64(b.N), "follower-cpu-s")
	if !*inProcess {
		b.ReportMetric(hwm, "peak-rss-MiB")
	}
}

// startupProfile is cpuProfile for a process about to start: it asks
// until the listener at addr answers.
func startupProfile(b *testing.B, addr, path string, seconds int) (wait func()) {
	done := make(chan func())
	go func() {
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		done <- cpuProfile(b, addr, path, seconds)
	}()
	return func() { (<-done)() }
}

// coldStartInProcess unpacks p's seed and runs the Follower inside the
// test process from it to ready (so that go test -cpuprofile and
// -memprofile see it), then stops it; it returns the time to ready.
func coldStartInProcess(b *testing.B, fb *followerBench, p *proc) time.Duration {
	seedDir := filepath.Join(p.dir, "seed")
	if _, err := fb.h.sower(fb.leader.url(), "seed", "unpack", p.follower[2], "--identity", p.follower[4], "--ca-pin", p.follower[6], "--dir", seedDir); err != nil {
		b.Fatal(err)
	}
	lg := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f, err := server.NewFollower(server.FollowerConfig{SeedDir: seedDir, DataDir: p.dir, HTTPAddr: p.http, GRPCAddr: p.grpc, Logger: lg})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() { errc <- f.Run(ctx) }()
	select {
	case <-f.Ready():
	case err := <-errc:
		b.Fatalf("in-process Follower: %v", err)
	case <-time.After(5 * time.Minute):
		b.Fatal("in-process Follower not ready after 5 minutes")
	}
	d := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-errc; err != nil {
		b.Errorf("in-process Follower: %v", err)
	}
	return d
}

var failoverFollowers = flag.Int("failover-followers", 3, "BenchmarkFollowerFailover: Followers under read load")

// BenchmarkFollowerFailover measures, on a Leader, two Standbys (ttl 2 s)
// and -failover-followers Followers under a read load from a separate
// process: the time from kill -9 of the Leader until a write acknowledged
// by the new Leader is readable on every Follower, and how many reads
// failed meanwhile. One failover per iteration would need a new cluster;
// run it once:
//
//	go test ./test/cluster -run '^$' -bench FollowerFailover -benchtime 1x
func BenchmarkFollowerFailover(b *testing.B) {
	if b.N > 1 {
		b.Skip("one failover per run: -benchtime 1x")
	}
	fb := newFollowerCluster(b, *failoverFollowers, 2, 2)
	var targets []loadTarget
	for _, f := range fb.followers {
		tok, err := f.login("host/app", fb.appKey)
		if err != nil {
			b.Fatal(err)
		}
		targets = append(targets, loadTarget{Name: f.name, URL: f.url() + secretPath, ServerName: f.serverName,
			Headers: map[string]string{"Authorization": tok}, Expect: "bench-secret"})
	}
	// A closed-loop read load on every Follower for the whole failover.
	wait := startLoad(b, loadPlan{CAFile: fb.h.caFile(), Clients: 4 * len(targets), Duration: "25s", Timeout: "10s", Targets: targets})
	time.Sleep(3 * time.Second) // the load runs before the kill (a measurement, not readiness)
	b.ResetTimer()
	killed := time.Now()
	fb.leader.kill9()
	// Write on whichever node takes over, until one write is acknowledged.
	var rev int64
	for rev == 0 {
		if time.Since(killed) > 2*time.Minute {
			b.Fatal("no new Leader accepted a write within 2 minutes")
		}
		l := fb.h.leader()
		var target *proc
		for _, p := range fb.standbys {
			if l.Known && p.url() == l.URL {
				target = p
			}
		}
		if target == nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		tok, err := fb.h.authenticate(l.URL)
		if err == nil {
			rev, err = setSecret(target, tok, "bench-secret") // the same value: the load's answers stay right
		}
		if err != nil {
			rev = 0
			time.Sleep(20 * time.Millisecond)
		}
	}
	acked := time.Since(killed)
	// Then until every Follower has it.
	var wg sync.WaitGroup
	for _, f := range fb.followers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(killed) < 2*time.Minute {
				code, _, _, err := f.req(http.MethodGet, secretPath, fb.admin, "", "X-Sower-Min-Revision", fmt.Sprint(rev))
				if err == nil && code == http.StatusOK {
					return
				}
			}
			b.Errorf("%s never reached revision %d", f.name, rev)
		}()
	}
	wg.Wait()
	visible := time.Since(killed)
	b.StopTimer()
	r := wait()
	b.ReportMetric(acked.Seconds(), "s-to-write-acked")
	b.ReportMetric(visible.Seconds(), "s-to-visible-everywhere")
	b.ReportMetric(float64(r.Failed), "failed-reads")
	b.ReportMetric(float64(r.Requests), "reads")
	b.ReportMetric(r.P99ms, "read-p99-ms")
	b.ReportMetric(r.MaxMs, "read-max-ms")
	if r.Failed > 0 {
		b.Logf("failed reads: %v", r.Errors)
	}
}
