package clustertest

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var benchFollowers = flag.Int("followers", 3, "BenchmarkReplicationLag: Followers attached")

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
// second on one Follower process over TLS (REST, Conjur's paths), from
// this test process as the separate load generator with 64 concurrent
// clients, and the Follower's CPU per request:
//
//	go test ./test/cluster -run '^$' -bench FollowerReads -benchtime 20000x
func BenchmarkFollowerReads(b *testing.B) {
	fb := newFollowerBench(b, 1)
	f := fb.followers[0]
	tok, err := f.login("host/app", fb.appKey)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"secret-read", func() error {
			code, _, body, err := f.req(http.MethodGet, secretPath, tok, "")
			if err == nil && (code != http.StatusOK || body != "bench-secret") {
				err = fmt.Errorf("%d %s", code, body)
			}
			return err
		}},
		{"api-key-login", func() error { _, err := f.login("host/app", fb.appKey); return err }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const clients = 64
			lat := make([][]time.Duration, clients)
			var wg sync.WaitGroup
			var failed sync.Map
			next := make(chan struct{}, b.N)
			for range b.N {
				next <- struct{}{}
			}
			close(next)
			cpu0 := cpuTicks(f.cmd.Process.Pid)
			start := time.Now()
			b.ResetTimer()
			for c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						t := time.Now()
						if err := tc.do(); err != nil {
							failed.Store(c, err)
						}
						lat[c] = append(lat[c], time.Since(t))
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			el := time.Since(start)
			cpu := cpuTicks(f.cmd.Process.Pid) - cpu0
			failed.Range(func(_, v any) bool { b.Fatalf("request failed: %v", v); return false })
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
			b.ReportMetric(float64(percentile(all, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(cpu)*10/float64(b.N)*1000, "follower-cpu-µs/req")
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
