package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
)

// BenchmarkStartStop measures the real binary: start-up to ready (the
// "sower is ready" banner), resident memory of the idle single-node Leader,
// and SIGTERM to exit. Each iteration uses a fresh data dir (first start,
// bootstrap included); run with -benchtime=Nx.
//
//	go test -run '^$' -bench StartStop -benchtime 5x ./cmd/sower
func BenchmarkStartStop(b *testing.B) {
	bin := testutil.BuildSower(b)
	var start, stop time.Duration
	var rssKB int64
	for b.Loop() {
		dir := b.TempDir()
		a := testutil.FreeAddrs(b, 4)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, bin, "server", "--data-dir", dir, "--grpc-addr", a[0], "--http-addr", a[1],
			"--etcd-client-addr", a[2], "--etcd-peer-addr", a[3], "--log-level", "warn")
		stderr, _ := cmd.StderrPipe()
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.Contains(sc.Text(), "sower is ready") {
		}
		start += time.Since(t0)
		rssKB = max(rssKB, vmRSS(b, cmd.Process.Pid))
		go io.Copy(io.Discard, stderr)
		t1 := time.Now()
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("exit: %v", err)
		}
		stop += time.Since(t1)
		cancel()
	}
	n := float64(b.N)
	b.ReportMetric(float64(start.Milliseconds())/n, "ms-to-ready")
	b.ReportMetric(float64(stop.Milliseconds())/n, "ms-to-exit")
	b.ReportMetric(float64(rssKB)/1024, "MiB-rss-max")
	if st, err := os.Stat(bin); err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "MiB-binary")
	}
}

func vmRSS(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb
		}
	}
	return 0
}
