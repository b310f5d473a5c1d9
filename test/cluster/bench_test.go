package clustertest

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sowerproject/sower/cluster"
)

var joinMB = flag.Int("join-mb", 100, "BenchmarkJoin: megabytes of data in etcd before the Standby joins")

// BenchmarkFailover measures, on three real nodes, the time from kill -9
// of the Leader to the first write a new Leader accepts, while a client
// loads policy every 10ms. Each iteration waits for the steady state (raft
// leadership on a Standby, which the Leader arranges within 2s of taking
// over), kills the Leader of the moment, then restarts it with its data (it
// rejoins as a Standby) and waits for three healthy voters. Run it with a
// fixed count:
//
//	go test ./test/cluster -run '^$' -bench Failover -benchtime 5x
func BenchmarkFailover(b *testing.B) {
	for _, tc := range []struct {
		name string
		ttl  int // 0: no ttl annotation, the default
	}{{"ttl=2s(lowest)", 2}, {"ttl=default(10s)", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHarness(b, "bench", tc.ttl)
			nodes := formThree(b, h)
			var times []time.Duration
			writes, refused := 0, 0
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				l := h.waitLeader(func(leaderInfo) bool { return true })
				h.waitRaftPlaced(l.URL)
				w := h.startWriter(10 * time.Millisecond)
				w.waitAckedB(b, 20)
				victim := nodes[l.Name]
				b.StartTimer()
				killAt := time.Now()
				victim.kill9()
				first := w.waitAckAfter(b, killAt, l.Name)
				times = append(times, first.at.Sub(killAt))
				b.StopTimer()
				w.halt()
				writes, refused = writes+w.count(), refused+w.failures()
				// The killed node comes back with its data, as a Standby.
				// (Restarted while writes go on, it hangs in the policy
				// store's startup: see the report of issue 7.)
				if err := victim.start(); err != nil {
					b.Fatal(err)
				}
				h.waitVoters(first.leaderURL, names(nodes)...)
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(times)
			var sum time.Duration
			for _, d := range times {
				sum += d
			}
			b.ReportMetric(float64(sum.Milliseconds())/float64(len(times)), "ms/failover")
			b.ReportMetric(float64(times[0].Milliseconds()), "min-ms")
			b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
			b.Logf("failover times: %v (%d writes acknowledged, %d refused or failed)", times, writes, refused)
		})
	}
}

// BenchmarkJoin measures the time from starting `sower server --seed` to
// the node being a voting member, with -join-mb megabytes in etcd.
//
//	go test ./test/cluster -run '^$' -bench Join -benchtime 1x -join-mb 100
func BenchmarkJoin(b *testing.B) {
	h := newHarness(b, "bench", 2)
	l1 := h.node("leader-1", "127.0.0.2")
	if err := l1.start("--cluster", "bench"); err != nil {
		b.Fatal(err)
	}
	standbys := make([]string, b.N)
	for i := range b.N {
		standbys[i] = fmt.Sprintf("standby-%d", i+1)
	}
	tok, err := h.authenticate(l1.url())
	if err != nil {
		b.Fatal(err)
	}
	if code, body, err := h.loadPolicy(l1.url(), tok, h.clusterPolicy(append([]string{"leader-1"}, standbys...)...)); err != nil || code != http.StatusCreated {
		b.Fatalf("load the cluster policy: %d %s %v", code, body, err)
	}
	tlsDir := filepath.Join(l1.dir, "tls")
	cli, err := cluster.DialMembers([]string{"https://" + l1.etcdc}, &cluster.TLSFiles{
		CertFile: filepath.Join(tlsDir, "node.pem"), KeyFile: filepath.Join(tlsDir, "node-key.pem"), CAFile: filepath.Join(tlsDir, "ca.pem"),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	blob := make([]byte, 256<<10)
	for i := range *joinMB * 4 {
		rand.Read(blob)
		if _, err := cli.Put(ctx, fmt.Sprintf("/bench/blob/%06d", i), string(blob)); err != nil {
			b.Fatal(err)
		}
	}
	st, err := cli.Status(ctx, "https://"+l1.etcdc)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("etcd database: %.1f MB", float64(st.DbSize)/(1<<20))
	pin := h.pin()

	var times []time.Duration
	b.ResetTimer()
	for i := range b.N {
		p := h.node(standbys[i], fmt.Sprintf("127.0.0.%d", 3+i))
		b.StopTimer()
		seedFile, keyFile := h.standbySeed(l1.url(), p)
		b.StartTimer()
		start := time.Now()
		if err := p.launch("--seed", seedFile, "--seed-identity", keyFile, "--ca-pin", pin); err != nil {
			b.Fatal(err)
		}
		for voting := false; !voting; {
			select {
			case <-p.done:
				b.Fatalf("%s exited: %s", p.name, p.tail())
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := cli.MemberList(ctx)
			if err != nil {
				continue
			}
			for _, m := range resp.Members {
				if m.Name == p.name && !m.IsLearner {
					voting = true
				}
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("%s not a voter after 10 minutes", p.name)
			}
		}
		times = append(times, time.Since(start))
		if st, err := cli.Status(ctx, "https://"+p.etcdc); err == nil {
			b.Logf("%s voting after %s; its etcd database then: %.1f MB, applied index %d (Leader's %d)",
				p.name, times[len(times)-1].Round(time.Millisecond), float64(st.DbSize)/(1<<20), st.RaftAppliedIndex, st.RaftIndex)
		}
	}
	b.StopTimer()
	var sum time.Duration
	for _, d := range times {
		sum += d
	}
	b.ReportMetric(sum.Seconds()/float64(len(times)), "s/join")
	b.Logf("join times with %d MB in etcd: %v", *joinMB, times)
}

// formThree starts leader-1 and joins two Standbys.
func formThree(b *testing.B, h *harness) map[string]*proc {
	b.Helper()
	nodes := map[string]*proc{
		"leader-1":  h.node("leader-1", "127.0.0.2"),
		"standby-1": h.node("standby-1", "127.0.0.3"),
		"standby-2": h.node("standby-2", "127.0.0.4"),
	}
	if err := nodes["leader-1"].start("--cluster", h.cluster); err != nil {
		b.Fatal(err)
	}
	tok, err := h.authenticate(nodes["leader-1"].url())
	if err != nil {
		b.Fatal(err)
	}
	if code, body, err := h.loadPolicy(nodes["leader-1"].url(), tok, h.clusterPolicy(names(nodes)...)); err != nil || code != http.StatusCreated {
		b.Fatalf("load the cluster policy: %d %s %v", code, body, err)
	}
	for _, n := range []string{"standby-1", "standby-2"} {
		if err := h.join(nodes["leader-1"].url(), nodes[n]); err != nil {
			b.Fatal(err)
		}
	}
	h.waitVoters(nodes["leader-1"].url(), names(nodes)...)
	return nodes
}

func names(nodes map[string]*proc) []string {
	var out []string
	for n := range nodes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
