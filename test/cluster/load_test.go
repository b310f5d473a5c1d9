package clustertest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// loadPlan and loadTarget are test/loadgen's Plan and Target (its input).
type loadPlan struct {
	CAFile   string       `json:"ca_file"`
	Clients  int          `json:"clients"`
	Requests int          `json:"requests,omitempty"`
	Duration string       `json:"duration,omitempty"`
	Rate     float64      `json:"rate,omitempty"`
	Timeout  string       `json:"timeout,omitempty"`
	Targets  []loadTarget `json:"targets"`
	Probes   []loadProbe  `json:"probes,omitempty"`
}

// loadProbe is a request loadgen sends every Every alongside the load.
type loadProbe struct {
	loadTarget
	Every string `json:"every"`
}

type loadTarget struct {
	Name       string            `json:"name"`
	Method     string            `json:"method"`
	URL        string            `json:"url"`
	ServerName string            `json:"server_name,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body,omitempty"`
	Bodies     []string          `json:"bodies,omitempty"`
	Status     int               `json:"status,omitempty"`
	Expect     string            `json:"expect,omitempty"`
}

type loadFigures struct {
	Requests int     `json:"requests"`
	Failed   int     `json:"failed"`
	PerSec   float64 `json:"per_second"`
	P50ms    float64 `json:"p50_ms"`
	P90ms    float64 `json:"p90_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

// loadReport is test/loadgen's Report (its output).
type loadReport struct {
	loadFigures
	Seconds float64                `json:"seconds"`
	Targets map[string]loadFigures `json:"targets"`
	Probes  map[string]loadFigures `json:"probes"`
	Errors  []string               `json:"errors"`
	Start   string                 `json:"start"`
	End     string                 `json:"end"`

	// ClientCPU is the load generator's own CPU time (user and system)
	// over its whole run: it shares the machine's cores with the servers
	// it measures, so a benchmark reports it per request beside theirs.
	ClientCPU time.Duration `json:"-"`
}

// clientCPUPerRequest is the load generator's CPU per request, in µs.
func (r loadReport) clientCPUPerRequest() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.ClientCPU.Microseconds()) / float64(r.Requests)
}

var (
	loadgenOnce sync.Once
	loadgenBin  string
	loadgenErr  error
	loadgenOut  []byte
)

// buildLoadgen builds test/loadgen once per test process.
func buildLoadgen(tb testing.TB) string {
	tb.Helper()
	loadgenOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sower-loadgen-")
		if err != nil {
			loadgenErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "loadgen"), "./test/loadgen")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		loadgenOut, loadgenErr = cmd.CombinedOutput()
		loadgenBin = filepath.Join(dir, "loadgen")
	})
	if loadgenErr != nil {
		tb.Fatalf("build loadgen: %v\n%s", loadgenErr, loadgenOut)
	}
	return loadgenBin
}

// startLoad starts the load generator on plan; wait returns its report.
func startLoad(tb testing.TB, plan loadPlan) (wait func() loadReport) {
	tb.Helper()
	in, err := json.Marshal(plan)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(buildLoadgen(tb))
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &errOut
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	return func() loadReport {
		tb.Helper()
		if err := cmd.Wait(); err != nil {
			tb.Fatalf("loadgen: %v: %s", err, errOut.String())
		}
		var r loadReport
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			tb.Fatalf("loadgen's report: %v: %s", err, out.String())
		}
		r.ClientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return r
	}
}

// runLoad runs the load generator on plan and returns its report.
func runLoad(tb testing.TB, plan loadPlan) loadReport {
	tb.Helper()
	return startLoad(tb, plan)()
}
