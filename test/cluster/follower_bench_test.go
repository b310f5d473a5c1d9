package clustertest

import (
	"context"
	"flag"
	"fmt"
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
	benchFollowers = flag.Int("followers", 3, "BenchmarkReplicationLag: Followers attached")
	inProcess      = flag.Bool("follower-in-process", false, "BenchmarkFollowerReads: run the Follower inside the test process (after its first start as a process unpacked its seed), so that go test -cpuprofile profiles it; the load still comes from its own process")
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
	followers []*proc
	admin     string
	appKey    string
}

func newFollowerBench(b *testing.B, n int) *followerBench {
	h := newHarness(b, "bench", 0)
	l1 := h.node("leader-1", "127.0.0.2")
	if err := l1.start("--cluster", "bench"); err != nil {
		b.Fatal(err)
	}
	admin, err := h.authenticate(l1.url())
	if err != nil {
		b.Fatal(err)
	}
	pol := strings.Replace(h.clusterPolicy("leader-1"), "    - !webservice\n",
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
	fb := &followerBench{h: h, leader: l1, admin: admin, appKey: key}
	for i := range n {
		p, _ := h.followerNode(l1.url(), fmt.Sprintf("follower-%d", i+1), fmt.Sprintf("127.0.1.%d", i+1))
		if err := p.start(); err != nil {
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
// kept-alive connections, and the Follower's CPU per request:
//
//	go test ./test/cluster -run '^$' -bench FollowerReads -benchtime 20000x
func BenchmarkFollowerReads(b *testing.B) {
	fb := newFollowerBench(b, 1)
	f := fb.followers[0]
	pid := f.cmd.Process.Pid
	if *inProcess {
		pid = inProcessFollower(b, f)
	}
	tok, err := f.login("host/app", fb.appKey)
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range []loadTarget{
		{Name: "secret-read", Method: http.MethodGet, URL: f.url() + secretPath, Headers: map[string]string{"Authorization": tok}, Expect: "bench-secret"},
		{Name: "api-key-login", Method: http.MethodPost, URL: f.url() + "/authn/" + account + "/host%2Fapp/authenticate", Body: fb.appKey,
			Headers: map[string]string{"Accept-Encoding": "base64"}},
	} {
		b.Run(t.Name, func(b *testing.B) {
			t.ServerName = f.serverName
			plan := loadPlan{CAFile: fb.h.caFile(), Clients: 64, Requests: b.N, Targets: []loadTarget{t}}
			cpu0 := cpuTicks(pid)
			b.ResetTimer()
			r := runLoad(b, plan)
			b.StopTimer()
			cpu := cpuTicks(pid) - cpu0
			if r.Failed > 0 {
				b.Fatalf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
			}
			b.ReportMetric(r.PerSec, "req/s")
			b.ReportMetric(r.P50ms, "p50-ms")
			b.ReportMetric(r.P99ms, "p99-ms")
			b.ReportMetric(float64(cpu)*10/float64(r.Requests)*1000, "follower-cpu-µs/req")
		})
	}
}

// BenchmarkReplicationLag measures the time from a write acknowledged by
// the Leader to the moment it is readable on a Follower (a read with
// X-Sower-Min-Revision, which waits for it), at about 100 writes/s with
// -followers Followers attached, and the Leader's CPU per Follower:
//
//	go test ./test/cluster -run '^$' -bench ReplicationLag -benchtime 300x -followers 20
func BenchmarkReplicationLag(b *testing.B) {
	fb := newFollowerBench(b, *benchFollowers)
	var mu sync.Mutex
	var lags []time.Duration
	var wg sync.WaitGroup
	cpu0 := cpuTicks(fb.leader.cmd.Process.Pid)
	start := time.Now()
	b.ResetTimer()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		rev, err := setSecret(fb.leader, fb.admin, fmt.Sprintf("v-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		f := fb.followers[i%len(fb.followers)]
		wg.Add(1)
		go func() {
			defer wg.Done()
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
	b.ReportMetric(float64(percentile(lags, 0.5).Microseconds())/1000, "lag-p50-ms")
	b.ReportMetric(float64(percentile(lags, 0.99).Microseconds())/1000, "lag-p99-ms")
	b.ReportMetric(float64(b.N)/el.Seconds(), "writes/s")
	b.ReportMetric(float64(cpu)*10/el.Seconds()/float64(len(fb.followers))*1000/1000, "leader-cpu-ms/s-per-follower")
}
