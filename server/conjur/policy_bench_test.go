package conjur_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
)

// variablesPolicy declares n variables, each annotated, and a group
// permitted to read and execute all of them: the shape of cyberark/conjur#669
// (18,000 variables took Conjur minutes), the same as policy's benchmark.
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

// hostsPolicy declares layers of perLayer annotated hosts, each granted its
// layer.
func hostsPolicy(layers, perLayer, skip int) string {
	var b strings.Builder
	for l := range layers {
		if l == skip {
			continue
		}
		fmt.Fprintf(&b, "- !layer l%04d\n", l)
		for h := range perLayer {
			fmt.Fprintf(&b, "- !host\n  id: l%04d/h%03d\n  annotations: {kubernetes/namespace: ns%d}\n", l, h, l%50)
		}
		fmt.Fprintf(&b, "- !grant\n  role: !layer l%04d\n  members:\n", l)
		for h := range perLayer {
			fmt.Fprintf(&b, "  - !host l%04d/h%03d\n", l, h)
		}
	}
	return b.String()
}

// restNode is a Leader running as its own process, so that its memory is
// its own, reached over HTTPS as a Conjur client reaches it.
type restNode struct {
	url, dir string
	pid      int
	hc       *http.Client
	token    string
}

func startProcess(b *testing.B, env ...string) *restNode {
	b.Helper()
	dir := b.TempDir()
	a := testutil.FreeAddrs(b, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, testutil.BuildSower(b), "server", "--log-format", "json", "--data-dir", dir,
		"--account", "acme", "--name", "bench", "--grpc-addr", a[0], "--http-addr", a[1],
		"--etcd-client-addr", a[2], "--etcd-peer-addr", a[3])
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stderr)
	ready := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "sower node ready") {
			ready = true
			break
		}
	}
	if !ready {
		b.Fatal("the node did not start")
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	n := &restNode{url: "https://" + a[1], dir: dir, pid: cmd.Process.Pid, hc: testutil.HTTPClient(b, dir)}
	n.hc.Timeout = 10 * time.Minute
	key, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, n.url+"/authn/acme/admin/authenticate", strings.NewReader(strings.TrimSpace(string(key))))
	req.Header.Set("Accept-Encoding", "base64")
	resp, err := n.hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, err := base64.StdEncoding.DecodeString(string(tok)); err != nil {
		b.Fatalf("authenticate: %s", tok)
	}
	n.token = `Token token="` + string(tok) + `"`
	return n
}

// load sends a policy the way conjur-api-go does and fails unless it is
// answered 201.
func (n *restNode) load(b *testing.B, method, policyID, text string) int {
	b.Helper()
	req, _ := http.NewRequest(method, n.url+"/policies/acme/policy/"+strings.ReplaceAll(policyID, "/", "%2F"), strings.NewReader(text))
	req.Header.Set("Authorization", n.token)
	resp, err := n.hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("%s %s: %d %.300s", method, policyID, resp.StatusCode, body)
	}
	return len(body)
}

// memory reads the node's resident memory now and at its peak (VmRSS,
// VmHWM), and how much of it is file-backed (RssFile: etcd's bbolt file,
// mapped into memory), in MiB.
func (n *restNode) memory(b *testing.B) (rss, peak, file float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		case "RssFile:":
			file = kb / 1024
		}
	}
	return rss, peak, file
}

// heap reads the node's Go heap in use from its /metrics, in MiB.
func (n *restNode) heap(b *testing.B) float64 {
	resp, err := n.hc.Get(n.url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f / (1 << 20)
		}
	}
	return 0
}

// cpu returns the node's user+system CPU time so far, in seconds: on a
// shared machine it says more about the work done than wall time does.
func (n *restNode) cpu(b *testing.B) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command (which may hold spaces) start after ')'.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // clock ticks (USER_HZ = 100)
}

// BenchmarkLoad18000Variables: POST a policy of 18,000 annotated
// variables and one permit over all of them (≈ 90,000 facts) to
// /policies/{account}/policy/{id}, each iteration into a new policy.
func BenchmarkLoad18000Variables(b *testing.B) {
	n := startProcess(b)
	text := variablesPolicy(18000)
	b.SetBytes(int64(len(text)))
	var cpu float64
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		id := fmt.Sprintf("bench-%d", i)
		n.load(b, http.MethodPost, "root", "- !policy "+id+"\n")
		before := n.cpu(b)
		b.StartTimer()
		n.load(b, http.MethodPost, id, text)
		b.StopTimer()
		cpu += n.cpu(b) - before
		b.StartTimer()
	}
	_, peak, _ := n.memory(b)
	b.ReportMetric(peak, "peak-RSS-MiB")
	b.ReportMetric(cpu/float64(i), "leader-cpu-s/op")
}

// BenchmarkReplace100kHosts: PUT 100,000 annotated hosts in 1,000 layers
// (≈ 500,000 facts and 100,000 API keys) into a policy, through a Leader
// running as its own process; then the same text again (no change), then
// the text without one layer (100 hosts deleted). Reports the Leader's
// resident memory.
func BenchmarkReplace100kHosts(b *testing.B) {
	full, less := hostsPolicy(1000, 100, -1), hostsPolicy(1000, 100, 500)
	steps := []struct {
		name string
		text string
	}{{"initial", full}, {"unchanged", full}, {"one-layer-less", less}}
	// SOWER_BENCH_MEMORY_LIMIT, when set, is the Leader's --memory-limit
	// (Go's soft memory limit, as in a container with a memory limit),
	// which bounds its resident memory at some CPU cost.
	var env []string
	if l := os.Getenv("SOWER_BENCH_MEMORY_LIMIT"); l != "" {
		env = append(env, "SOWER_MEMORY_LIMIT="+l)
		b.Logf("Leader runs with --memory-limit %s", l)
	}
	n := startProcess(b, env...)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("fleet-%d", i)
		b.StopTimer()
		n.load(b, http.MethodPost, "root", "- !policy "+id+"\n")
		for _, s := range steps {
			start, cpu := time.Now(), n.cpu(b)
			b.StartTimer()
			size := n.load(b, http.MethodPut, id, s.text)
			b.StopTimer()
			wall, used := time.Since(start).Seconds(), n.cpu(b)-cpu
			rss, peak, file := n.memory(b)
			b.Logf("%s: %.2f s wall, %.2f s Leader CPU, answer %d KiB; Leader RSS %.0f MiB (peak %.0f, file-backed %.0f), Go heap in use %.0f MiB",
				s.name, wall, used, size>>10, rss, peak, file, n.heap(b))
		}
	}
	_, peak, _ := n.memory(b)
	b.ReportMetric(peak, "peak-RSS-MiB")
}
