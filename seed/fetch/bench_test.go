package fetch_test

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/internal/testnode"
	"github.com/sowerproject/sower/internal/testutil"
)

// BenchmarkStartupStorm is a Follower fleet starting at once: 200 concurrent
// fetchers, each with its own TLS connection, authenticate with an API key
// and request Follower seeds sealed to their own new age key, over REST
// (Conjur's path), with the Leader recording every seed in etcd. b.N is the
// number of seeds. While the storm runs, a probe asks /v1/status every
// 10 ms to show whether the Leader stays responsive.
//
//   - closed: every fetcher asks again the moment it has its seed, so 200
//     requests are always outstanding: the Leader's throughput ceiling.
//     Latency there is queueing (Little's law: 200 / throughput).
//   - rate-1000: requests arrive at 1,000 per second (open loop), served by
//     up to 200 fetchers; latency counts from the moment a request was due,
//     so time spent waiting for a free fetcher is included.
//
// Reported: seeds/s, p50/p99 latency, the probe's p99, and cores-busy (the
// process's CPU time over wall time: fetchers and Leader share the two
// cores).
//
//	go test -run '^$' -bench StartupStorm -benchtime 4000x ./seed/fetch
func BenchmarkStartupStorm(b *testing.B) {
	b.Run("closed", func(b *testing.B) { storm(b, 0) })
	b.Run("rate-1000", func(b *testing.B) { storm(b, 1000) })
}

func storm(b *testing.B, rate int) {
	const workers = 200
	n := testnode.Start(b)
	keys := loadPolicy(b, n)
	key := keys["acme:host:follower"]
	tlsCfg := testutil.TLSConfig(b, n.DataDir)
	seedURL := n.URL + "/configuration/acme/seed/follower"

	newClient := func() *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg.Clone(), MaxIdleConnsPerHost: 1}, Timeout: time.Minute}
	}
	authenticate := func(hc *http.Client) string {
		req, _ := http.NewRequest(http.MethodPost, n.URL+"/authn/acme/"+url.PathEscape("host/follower")+"/authenticate", strings.NewReader(key))
		req.Header.Set("Accept-Encoding", "base64")
		resp, err := hc.Do(req)
		if err != nil {
			b.Error(err)
			return ""
		}
		defer resp.Body.Close()
		tok, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			b.Errorf("authenticate: %s", resp.Status)
		}
		return string(tok)
	}
	fetchOne := func(hc *http.Client, tok string) bool {
		id, _ := age.GenerateX25519Identity()
		form := url.Values{"follower_hostnames": {"f.conjur-followers.svc.cluster.local"}, "recipient": {id.Recipient().String()}}
		req, _ := http.NewRequest(http.MethodPost, seedURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", `Token token="`+tok+`"`)
		resp, err := hc.Do(req)
		if err != nil {
			b.Error(err)
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Errorf("seed: %s %s", resp.Status, body)
			return false
		}
		return true
	}

	// Every fetcher connects and authenticates before the clock starts,
	// and one seed is issued so that the Leader's key pools start filling
	// (as they would have long before a real storm).
	clients, tokens := make([]*http.Client, workers), make([]string, workers)
	for i := range workers {
		clients[i] = newClient()
		tokens[i] = authenticate(clients[i])
	}
	fetchOne(clients[0], tokens[0])

	// jobs carries each request's due time.
	jobs := make(chan time.Time, b.N)
	lat := make([]time.Duration, 0, b.N)
	var mu sync.Mutex
	var wg sync.WaitGroup
	stopProbe := make(chan struct{})
	var probe []time.Duration
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		hc := newClient()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopProbe:
				return
			case <-tick.C:
			}
			t0 := time.Now()
			resp, err := hc.Get(n.URL + "/v1/status")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				probe = append(probe, time.Since(t0))
			}
		}
	}()

	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for due := range jobs {
				if due.IsZero() {
					due = time.Now()
				}
				if fetchOne(clients[w], tokens[w]) {
					d := time.Since(due)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}
		}()
	}
	if rate == 0 {
		for range b.N {
			jobs <- time.Time{}
		}
	} else {
		interval := time.Second / time.Duration(rate)
		for i := range b.N {
			due := start.Add(time.Duration(i) * interval)
			if d := time.Until(due); d > 0 {
				time.Sleep(d) // the arrival schedule, not a wait for readiness
			}
			jobs <- due
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	close(stopProbe)
	<-probeDone

	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "seeds/s")
	b.ReportMetric(pct(lat, 50).Seconds()*1000, "p50-ms")
	b.ReportMetric(pct(lat, 99).Seconds()*1000, "p99-ms")
	b.ReportMetric(pct(probe, 99).Seconds()*1000, "status-p99-ms")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores-busy")
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}
