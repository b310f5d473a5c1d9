package fetch_test

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/internal/testnode"
	"github.com/sowerproject/sower/internal/testutil"
)

// BenchmarkStartupStorm is a Follower fleet starting at once: 200 concurrent
// fetchers, each with its own TLS connection, authenticate with an API key
// and request a Follower seed sealed to its own age key, over REST. b.N is
// the number of seeds. While the storm runs, a probe asks /v1/status every
// 10 ms to show whether the Leader stays responsive. Reported: seeds/s,
// p50/p99 latency of a seed request, p99 of the probe.
//
//	go test -run '^$' -bench StartupStorm -benchtime 2000x ./seed/fetch
func BenchmarkStartupStorm(b *testing.B) {
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

	jobs := make(chan int)
	lat := make([]time.Duration, 0, b.N)
	var mu sync.Mutex
	var wg sync.WaitGroup
	stopProbe := make(chan struct{})
	var probe []time.Duration
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		hc := newClient()
		for {
			select {
			case <-stopProbe:
				return
			case <-time.After(10 * time.Millisecond):
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
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := newClient()
			tok := ""
			for range jobs {
				if tok == "" {
					tok = authenticate(hc)
				}
				id, _ := age.GenerateX25519Identity()
				form := url.Values{"follower_hostnames": {"f.conjur-followers.svc.cluster.local"}, "recipient": {id.Recipient().String()}}
				req, _ := http.NewRequest(http.MethodPost, seedURL, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", `Token token="`+tok+`"`)
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != 200 {
					b.Errorf("seed: %s %s", resp.Status, body)
					continue
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	for i := range b.N {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(stopProbe)
	<-probeDone

	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "seeds/s")
	b.ReportMetric(pct(lat, 50).Seconds()*1000, "p50-ms")
	b.ReportMetric(pct(lat, 99).Seconds()*1000, "p99-ms")
	b.ReportMetric(pct(probe, 99).Seconds()*1000, "status-p99-ms")
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}
