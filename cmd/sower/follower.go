package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/sowerproject/sower/audit/queue"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
	"github.com/sowerproject/sower/server"
)

func newFollowerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "follower",
		Short: "Run a read-only Follower from a Follower seed",
		Long: `Run a Follower: a read-only node that replicates the cluster's policy,
secrets (sealed), credentials and signing keys from whichever Leader or
Standby answers, and serves Conjur's read endpoints (login, authenticate,
authn-jwt, whoami, secrets, resources, roles, permission checks, /health)
from its own copy. Writes get 405 naming the Leader.

It starts from a Follower seed unpacked into --seed-dir (what
sower-seed-fetcher or "sower seed unpack" writes), or unpacks one itself
with --seed, --identity and --ca-pin into <data-dir>/seed. The data dir
keeps its copy between starts; it is never an etcd member.`,
		Example: `  sower follower --seed-dir /run/sower/seed/follower --data-dir /var/lib/sower-follower \
      --http-addr 0.0.0.0:8443 --grpc-addr 0.0.0.0:7443
  sower follower --seed follower-0.seed --identity follower-0.key --ca-pin sha256:... \
      --data-dir ./follower-0 --http-addr 127.0.0.5:8443 --grpc-addr 127.0.0.5:7443`,
		Args: cobra.NoArgs,
		RunE: runFollowerCommand,
	}
	fs := cmd.Flags()
	fs.String("seed-dir", os.Getenv("SOWER_SEED_DIR"), "directory holding an unpacked Follower seed (env SOWER_SEED_DIR)")
	fs.String("seed", os.Getenv("SOWER_SEED"), "a sealed Follower seed file to unpack into <data-dir>/seed first (env SOWER_SEED)")
	fs.String("identity", os.Getenv("SOWER_SEED_IDENTITY"), "with --seed: the age identity file the seed is sealed to (env SOWER_SEED_IDENTITY)")
	fs.String("ca-pin", os.Getenv("SOWER_CA_PIN"), "with --seed: the cluster CA pin, sha256:<hex> from `sower ca pin` (env SOWER_CA_PIN)")
	fs.String("data-dir", envOr("SOWER_DATA_DIR", "./.sower-follower"), "the Follower's local copy and data key (env SOWER_DATA_DIR)")
	fs.String("http-addr", envOr("SOWER_HTTP_ADDR", "127.0.0.1:8444"), "REST: Conjur's read endpoints, /v1, /health, /metrics (env SOWER_HTTP_ADDR)")
	fs.String("grpc-addr", envOr("SOWER_GRPC_ADDR", "127.0.0.1:7444"), "gRPC (env SOWER_GRPC_ADDR)")
	fs.Duration("max-staleness", 0, "refuse authentication and secret reads (503) once the copy is older than this; 0 serves whatever it holds")
	fs.Duration("min-revision-wait", 2*time.Second, "how long a request with X-Sower-Min-Revision waits before 412")
	fs.Duration("shutdown-timeout", 5*time.Second, "how long in-flight requests may run after SIGTERM")
	fs.String("min-free-disk", envOr("SOWER_MIN_FREE_DISK", "auto"), "free space the data dir's file system keeps: below it the copy stops taking updates (reads go on) until space is freed; auto or a size such as 512MiB (env SOWER_MIN_FREE_DISK)")
	fs.Bool("audit", true, "record every authentication and secret read in the audit queue (<data-dir>/audit) and push it to the quorum; --audit=false records nothing")
	fs.Int("audit-queue-max-events", queue.DefaultMaxEvents, "most audit events queued and not yet stored by the quorum")
	fs.String("audit-queue-max-bytes", "64MiB", "most bytes of audit events queued and not yet stored by the quorum (at least 33KiB)")
	fs.String("audit-queue-full", string(queue.DropOldest), "when the audit queue is full: drop-oldest (drop the oldest events, counted in sower_audit_queue_dropped_total) or refuse (answer authentication and secret reads 503 until the quorum takes events)")
	fs.String("memory-limit", envOr("SOWER_MEMORY_LIMIT", "auto"), "soft memory limit of the Follower: auto (85% of the pod's cgroup limit, or GOMEMLIMIT), none, or a size such as 900MiB (env SOWER_MEMORY_LIMIT)")
	fs.String("gc-percent", envOr("SOWER_GC_PERCENT", "auto"), gcPercentUsage+" (env SOWER_GC_PERCENT)")
	fs.String("log-format", envOr("SOWER_LOG_FORMAT", "text"), "log format: text or json")
	fs.String("log-level", envOr("SOWER_LOG_LEVEL", "info"), "log level: debug, info, warn or error")
	pprofFlags(fs)
	return cmd
}

func runFollowerCommand(cmd *cobra.Command, _ []string) error {
	fs := cmd.Flags()
	str := func(k string) string { v, _ := fs.GetString(k); return v }
	dur := func(k string) time.Duration { v, _ := fs.GetDuration(k); return v }
	lg, err := newLogger(cmd.ErrOrStderr(), str("log-format"), str("log-level"))
	if err != nil {
		return &usageError{err}
	}
	if err := applyMemoryLimit(str("memory-limit"), lg); err != nil {
		return err
	}
	if err := applyGCPercent(str("gc-percent"), lg); err != nil {
		return err
	}
	minFree, err := parseMinFreeDisk(str("min-free-disk"))
	if err != nil {
		return &usageError{err}
	}
	auditOn, _ := fs.GetBool("audit")
	maxEvents, _ := fs.GetInt("audit-queue-max-events")
	maxBytes, ok := parseSize(str("audit-queue-max-bytes"))
	if !ok || maxBytes <= 0 {
		return &usageError{fmt.Errorf("audit-queue-max-bytes %q: give a size such as 64MiB", str("audit-queue-max-bytes"))}
	}
	full, err := queue.ParsePolicy(str("audit-queue-full"))
	if err != nil {
		return &usageError{err}
	}
	fc := server.FollowerConfig{
		AuditQueue: server.FollowerAudit{Off: !auditOn, MaxEvents: maxEvents, MaxBytes: maxBytes, Full: full},
		SeedDir:    str("seed-dir"), DataDir: str("data-dir"), HTTPAddr: str("http-addr"), GRPCAddr: str("grpc-addr"),
		Version: version, MaxStaleness: dur("max-staleness"), MinRevisionWait: dur("min-revision-wait"),
		ShutdownTimeout: dur("shutdown-timeout"), Logger: lg, MinFreeDisk: minFree,
	}
	if seedFile := str("seed"); seedFile != "" {
		if fc.SeedDir != "" {
			return &usageError{errors.New("give --seed-dir or --seed, not both")}
		}
		if fc.SeedDir, err = unpackFollowerSeed(seedFile, str("identity"), str("ca-pin"), fc.DataDir); err != nil {
			return err
		}
	}
	f, err := server.NewFollower(fc)
	if err != nil {
		return &usageError{err}
	}
	remote, _ := fs.GetBool("pprof-allow-remote")
	_, stopPprof, err := startPprof(str("pprof"), remote, lg)
	if err != nil {
		return err
	}
	defer stopPprof()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runFollower(ctx, f, cmd.ErrOrStderr())
}

func runFollower(ctx context.Context, f *server.Follower, out io.Writer) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-f.Ready():
		_, h := f.Addrs()
		fmt.Fprintf(out, "\nsower follower is ready (revision %d, leader %s).\n  health: curl -s --cacert <seed-dir>/tls/ca.pem https://%s/health\n\n",
			f.Replica().Applied(), f.Leader().URL, hostPort(h))
	}
	return <-errc
}

// unpackFollowerSeed verifies and unpacks a sealed Follower seed into
// <data-dir>/seed and returns that directory.
func unpackFollowerSeed(seedFile, idFile, pinStr, dataDir string) (string, error) {
	if idFile == "" || pinStr == "" {
		return "", &usageError{errors.New("--seed needs --identity (the age key it is sealed to) and --ca-pin (sower ca pin)")}
	}
	pin, err := pki.ParsePin(pinStr)
	if err != nil {
		return "", &usageError{err}
	}
	raw, err := os.ReadFile(idFile)
	if err != nil {
		return "", &usageError{err}
	}
	ids, err := age.ParseIdentities(bytes.NewReader(raw))
	if err != nil || len(ids) == 0 {
		return "", &usageError{fmt.Errorf("identity %s: not an age identity", idFile)}
	}
	f, err := os.Open(seedFile)
	if err != nil {
		return "", &usageError{err}
	}
	defer f.Close()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	dir := filepath.Join(dataDir, "seed")
	m, err := archive.Unpack(f, dir, pin, ids[0])
	if errors.Is(err, archive.ErrExpired) {
		// A restart after the seed's hour: the copy unpacked at the
		// first start is still this node's identity.
		if m, rerr := archive.ReadDir(dir); rerr == nil && m.Kind == archive.KindFollower {
			return dir, nil
		}
	}
	if err != nil {
		return "", err
	}
	if m.Kind != archive.KindFollower {
		return "", &usageError{fmt.Errorf("%s is a %s seed; a Follower needs a Follower seed (sower seed follower)", seedFile, m.Kind)}
	}
	return dir, nil
}
