// Command loadgen drives HTTPS load at sower nodes from a process of its
// own, as real clients do, and prints what it measured as JSON. The
// benchmarks in test/cluster build and start it; it is not shipped.
//
// It reads one Plan (JSON) on standard input, so that the access tokens
// and API keys of the requests never appear on a command line, and writes
// one Report (JSON) on standard output:
//
//	loadgen < plan.json > report.json
//
// Two modes:
//
//   - closed loop (Rate 0): Clients goroutines each send a request, wait
//     for its answer, and send the next, until Requests answers or
//     Duration has passed; latency is from send to answer.
//   - open loop (Rate > 0): requests are due every 1/Rate seconds
//     whatever the answers do, sent by up to Clients goroutines at once;
//     latency is from each request's due time, so a server that falls
//     behind shows it (no coordinated omission).
//
// Targets are taken in turn (request i goes to Targets[i % len]); each
// keeps its connections alive, one HTTP/1.1 connection per client, as
// Conjur's API clients do.
//
// Probes run alongside the load, whatever its mode: each sends its request
// every Every on a connection of its own, from the load's start to its
// end, and its figures (latency from send to answer) are reported apart
// under Probes, so a plan can ask "how fast does /v1/status answer while
// the node is busy with seeds" in one run.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Plan is what to send.
type Plan struct {
	// CAFile is the PEM bundle the servers' certificates chain to.
	CAFile string `json:"ca_file"`
	// Clients is how many requests may be in flight (default 1).
	Clients int `json:"clients"`
	// Requests ends the run after this many answers; Duration after this
	// long (a Go duration). At least one is required.
	Requests int    `json:"requests"`
	Duration string `json:"duration"`
	// Rate, when > 0, makes the run open loop at this many requests per
	// second.
	Rate float64 `json:"rate"`
	// Timeout bounds one request (default 30s).
	Timeout string `json:"timeout"`
	// Targets are the requests, taken in turn.
	Targets []Target `json:"targets"`
	// KeepErrors is how many distinct failures the report quotes
	// (default 5).
	KeepErrors int `json:"keep_errors"`
	// Probes are sent at a fixed interval alongside the load.
	Probes []Probe `json:"probes"`
}

// Probe is a request sent every Every (a Go duration) during the run.
type Probe struct {
	Target
	Every string `json:"every"`
}

// Target is one request.
type Target struct {
	// Name groups the target's figures in the report (default its URL).
	Name   string `json:"name"`
	Method string `json:"method"`
	URL    string `json:"url"`
	// ServerName is the name the server's certificate must carry when
	// the URL names an IP address.
	ServerName string            `json:"server_name"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
	// Bodies, when set, replace Body: the target's k-th request sends
	// Bodies[k % len], for servers that refuse the same body twice (a
	// one-time token inside it, as step-ca's /1.0/sign has).
	Bodies []string `json:"bodies"`
	// sent counts the target's requests (for Bodies).
	sent atomic.Int64
	// Prepared once (prepare): where to connect and the request's head.
	addr string
	head []byte
	// Status is the answer expected (default 200); Expect, when set, is
	// the whole body expected. Anything else counts as a failure.
	Status int    `json:"status"`
	Expect string `json:"expect"`
}

// Figures are one group's measurements.
type Figures struct {
	Requests int     `json:"requests"`
	Failed   int     `json:"failed"`
	PerSec   float64 `json:"per_second"`
	P50ms    float64 `json:"p50_ms"`
	P90ms    float64 `json:"p90_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

// Report is what loadgen prints.
type Report struct {
	Figures
	Seconds float64 `json:"seconds"`
	// Targets are the figures per target name.
	Targets map[string]Figures `json:"targets"`
	// Probes are the probes' figures, by name.
	Probes map[string]Figures `json:"probes,omitempty"`
	// Errors quotes a few distinct failures (the probes' too).
	Errors []string `json:"errors,omitempty"`
	// Start and End bound the run (RFC 3339 with nanoseconds): a caller
	// can line events of its own up with them.
	Start string `json:"start"`
	End   string `json:"end"`
}

func main() {
	if os.Getenv("GOGC") == "" {
		// The load shares the machine's cores with the server it measures:
		// a lazier collector leaves more of them to the server. The load
		// generator's heap is small (samples and one body buffer per client).
		debug.SetGCPercent(400)
	}
	var p Plan
	dec := json.NewDecoder(io.LimitReader(os.Stdin, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		fail(fmt.Errorf("read the plan on standard input: %w", err))
	}
	r, err := run(context.Background(), p)
	if err != nil {
		fail(err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(2)
}

type sample struct {
	target int
	lat    time.Duration
	err    error
}

func run(ctx context.Context, p Plan) (*Report, error) {
	if len(p.Targets) == 0 {
		return nil, errors.New("the plan names no targets")
	}
	if p.Requests <= 0 && p.Duration == "" {
		return nil, errors.New("the plan needs requests or duration (or both)")
	}
	if p.Clients <= 0 {
		p.Clients = 1
	}
	if p.KeepErrors <= 0 {
		p.KeepErrors = 5
	}
	timeout := 30 * time.Second
	if p.Timeout != "" {
		d, err := time.ParseDuration(p.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout %q: %w", p.Timeout, err)
		}
		timeout = d
	}
	if p.Duration != "" {
		d, err := time.ParseDuration(p.Duration)
		if err != nil {
			return nil, fmt.Errorf("duration %q: %w", p.Duration, err)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	pool := x509.NewCertPool()
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", p.CAFile)
		}
	}
	for i := range p.Targets {
		if err := p.Targets[i].prepare(); err != nil {
			return nil, err
		}
	}
	dialer := &dialer{pool: pool, timeout: timeout}
	do := func(ctx context.Context, i int, cl *client) error {
		return cl.do(ctx, &p.Targets[i])
	}

	// The probes: one goroutine and one connection each, until the load
	// is over.
	probeCtx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	probeSamples := make([][]sample, len(p.Probes))
	var probes sync.WaitGroup
	for k := range p.Probes {
		pr := &p.Probes[k]
		pr.defaults()
		every, err := time.ParseDuration(pr.Every)
		if err != nil || every <= 0 {
			return nil, fmt.Errorf("probe %s: every %q: give a positive duration such as 10ms", pr.Name, pr.Every)
		}
		if err := pr.prepare(); err != nil {
			return nil, err
		}
		probes.Add(1)
		go func() {
			defer probes.Done()
			cl := dialer.client(probeCtx)
			defer cl.close()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-probeCtx.Done():
					return
				case <-tick.C:
				}
				t0 := time.Now()
				err := cl.do(probeCtx, &pr.Target)
				if probeCtx.Err() != nil {
					return // the load's end cut it
				}
				probeSamples[k] = append(probeSamples[k], sample{target: k, lat: time.Since(t0), err: err})
			}
		}()
	}

	var (
		next    atomic.Int64 // the next request's number
		mu      sync.Mutex
		samples []sample
	)
	record := func(s sample) {
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	}
	take := func() (int64, bool) {
		n := next.Add(1) - 1
		return n, (p.Requests <= 0 || n < int64(p.Requests)) && ctx.Err() == nil
	}
	start := time.Now()
	var wg sync.WaitGroup
	if p.Rate <= 0 {
		for range p.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := dialer.client(ctx)
				defer cl.close()
				for {
					n, ok := take()
					if !ok {
						return
					}
					i := int(n % int64(len(p.Targets)))
					t0 := time.Now()
					err := do(ctx, i, cl)
					if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
						return // the run's end cut it; not the server's failure
					}
					record(sample{target: i, lat: time.Since(t0), err: err})
				}
			}()
		}
	} else {
		// Open loop: a request is due every interval; a free client takes
		// it, and its latency counts from when it was due.
		interval := time.Duration(float64(time.Second) / p.Rate)
		due := make(chan time.Time, p.Clients)
		for range p.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := dialer.client(ctx)
				defer cl.close()
				for at := range due {
					n := next.Add(1) - 1
					i := int(n % int64(len(p.Targets)))
					err := do(ctx, i, cl)
					if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
						continue
					}
					record(sample{target: i, lat: time.Since(at), err: err})
				}
			}()
		}
		for k := int64(0); p.Requests <= 0 || k < int64(p.Requests); k++ {
			at := start.Add(time.Duration(k) * interval)
			if d := time.Until(at); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
			if ctx.Err() != nil {
				break
			}
			select {
			case due <- at:
			case <-ctx.Done():
			}
		}
		close(due)
	}
	wg.Wait()
	end := time.Now()
	stopProbes()
	probes.Wait()
	r := report(p, samples, start, end)
	for k, ss := range probeSamples {
		if r.Probes == nil {
			r.Probes = map[string]Figures{}
		}
		r.Probes[p.Probes[k].Name] = figures(ss, end.Sub(start))
		for _, s := range ss {
			if s.err != nil && len(r.Errors) < p.KeepErrors && !slices.Contains(r.Errors, s.err.Error()) {
				r.Errors = append(r.Errors, s.err.Error())
			}
		}
	}
	return r, nil
}

func (t *Target) defaults() {
	if t.Name == "" {
		t.Name = t.URL
	}
	if t.Method == "" {
		t.Method = http.MethodGet
	}
	if t.Status == 0 {
		t.Status = http.StatusOK
	}
}

func report(p Plan, samples []sample, start, end time.Time) *Report {
	el := end.Sub(start)
	r := &Report{Seconds: el.Seconds(), Targets: map[string]Figures{},
		Start: start.UTC().Format(time.RFC3339Nano), End: end.UTC().Format(time.RFC3339Nano)}
	byName := map[string][]sample{}
	seen := map[string]bool{}
	for _, s := range samples {
		byName[p.Targets[s.target].Name] = append(byName[p.Targets[s.target].Name], s)
		if s.err != nil && len(r.Errors) < p.KeepErrors && !seen[s.err.Error()] {
			seen[s.err.Error()] = true
			r.Errors = append(r.Errors, s.err.Error())
		}
	}
	r.Figures = figures(samples, el)
	for name, ss := range byName {
		r.Targets[name] = figures(ss, el)
	}
	return r
}

func figures(ss []sample, el time.Duration) Figures {
	f := Figures{Requests: len(ss)}
	lat := make([]time.Duration, 0, len(ss))
	for _, s := range ss {
		if s.err != nil {
			f.Failed++
			continue
		}
		lat = append(lat, s.lat)
	}
	if el > 0 {
		f.PerSec = float64(len(lat)) / el.Seconds()
	}
	if len(lat) == 0 {
		return f
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*q))].Microseconds()) / 1000
	}
	f.P50ms, f.P90ms, f.P99ms = at(0.50), at(0.90), at(0.99)
	f.MaxMs = float64(lat[len(lat)-1].Microseconds()) / 1000
	return f
}
