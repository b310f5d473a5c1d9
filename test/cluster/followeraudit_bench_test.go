package clustertest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/pki"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/replication"
)

// pushPlan is what the push-load process does: each client pushes
// Events of its Follower's events in batches of Batch to Addr.
type pushPlan struct {
	Addr, ServerName, CAFile string
	// CertDirs are unpacked Follower seeds, one a client.
	CertDirs []string
	Events   int
	Batch    int
	// Run makes IDs unique across runs.
	Run    string
	Report string
}

type pushReport struct {
	Events  int
	Seconds float64
	Errors  []string
}

const pushPlanEnv = "SOWER_TEST_PUSH_PLAN"

// TestAuditPushLoad is the push-load process of BenchmarkAuditIngest (the
// test binary run again with pushPlanEnv set); alone it skips.
func TestAuditPushLoad(t *testing.T) {
	path := os.Getenv(pushPlanEnv)
	if path == "" {
		t.Skip("the load process of BenchmarkAuditIngest")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var plan pushPlan
	if err := json.Unmarshal(raw, &plan); err != nil {
		t.Fatal(err)
	}
	rootsPEM, err := os.ReadFile(plan.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pki.ParseCertificatesPEM(rootsPEM)
	if err != nil {
		t.Fatal(err)
	}
	type client struct {
		node string
		cli  sowerv1.ReplicationServiceClient
	}
	var clients []client
	for _, dir := range plan.CertDirs {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls", "replication.pem"), filepath.Join(dir, "tls", "replication-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		tc, err := pki.ClientTLS(roots, plan.ServerName, nil)
		if err != nil {
			t.Fatal(err)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		conn, err := grpc.NewClient(plan.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		leaf, err := pki.ParseCertificatesPEM(mustRead(t, filepath.Join(dir, "tls", "replication.pem")))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, client{node: leaf[0].Subject.CommonName, cli: sowerv1.NewReplicationServiceClient(conn)})
	}
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent := 0; sent < plan.Events; {
				n := min(plan.Batch, plan.Events-sent)
				batch := make([]audit.Event, n)
				for i := range batch {
					seq := sent + i + 1
					batch[i] = audit.Event{ID: fmt.Sprintf("%s/%s%09d", c.node, plan.Run, seq), Node: c.node, At: time.Now(),
						Kind: audit.KindSecretRead, Action: "read", Outcome: audit.OutcomeSuccess,
						Identity: "acme:host:app", Resource: "acme:variable:db/password", Version: 1, Source: "127.0.0.1"}
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err := replication.Push(ctx, c.cli, batch)
				cancel()
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					return
				}
				sent += n
			}
		}()
	}
	wg.Wait()
	rep := pushReport{Events: plan.Events * len(clients), Seconds: time.Since(start).Seconds(), Errors: errs}
	out, _ := json.Marshal(rep)
	if err := os.WriteFile(plan.Report, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkAuditIngest measures the audit events per second a one-node
// cluster's Leader stores from 20 Followers' certificates pushing at once
// (PushAudit, batches of 500; the load from its own process):
//
//	go test ./test/cluster -run '^$' -bench AuditIngest -benchtime 2000x
//
// b.N is the events each of the 20 clients pushes.
func BenchmarkAuditIngest(b *testing.B) {
	const clients, batch = 20, 500
	fb := newFollowerBench(b, 0)
	h := fb.h
	var dirs []string
	for i := range clients {
		p, _ := h.followerNode(fb.leader.url(), fmt.Sprintf("pusher-%d", i+1), "127.0.1.1")
		dir := filepath.Join(h.dir, p.name+"-seed")
		if _, err := h.sower(fb.leader.url(), "seed", "unpack", filepath.Join(h.dir, p.name+".seed"),
			"--identity", filepath.Join(h.dir, p.name+".seed.key"), "--ca-pin", h.pin(), "--dir", dir); err != nil {
			b.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	run := 0
	b.Run(fmt.Sprintf("followers=%d", clients), func(b *testing.B) {
		run++
		plan := pushPlan{Addr: fb.leader.http, ServerName: fb.leader.ip, CAFile: h.caFile(), CertDirs: dirs, Events: b.N, Batch: batch,
			Run: fmt.Sprintf("r%d-", run), Report: filepath.Join(h.dir, "push-report.json")}
		raw, _ := json.Marshal(plan)
		planFile := filepath.Join(h.dir, "push-plan.json")
		if err := os.WriteFile(planFile, raw, 0o600); err != nil {
			b.Fatal(err)
		}
		cpu0 := cpuTicks(fb.leader.cmd.Process.Pid)
		cmd := exec.Command(os.Args[0], "-test.run", "^TestAuditPushLoad$", "-test.count", "1")
		cmd.Env = append(os.Environ(), pushPlanEnv+"="+planFile)
		b.ResetTimer()
		out, err := cmd.CombinedOutput()
		b.StopTimer()
		if err != nil {
			b.Fatalf("push load: %v\n%s", err, out)
		}
		var rep pushReport
		if err := json.Unmarshal(mustReadB(b, plan.Report), &rep); err != nil {
			b.Fatal(err)
		}
		if len(rep.Errors) > 0 {
			b.Fatalf("%d pushes failed: %v", len(rep.Errors), rep.Errors[0])
		}
		cpu := cpuTicks(fb.leader.cmd.Process.Pid) - cpu0
		b.ReportMetric(float64(rep.Events)/rep.Seconds, "events/s")
		b.ReportMetric(float64(cpu)*10/float64(rep.Events)*1000, "leader-cpu-µs/event")
	})
}

func mustReadB(b *testing.B, path string) []byte {
	b.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}
