package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sowerproject/sower/server"
)

func newServerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a sower node (a new single-node Leader on an empty data dir, or a Standby with --seed)",
		Long: `Run a sower node. On first start with an empty data dir it bootstraps a new
single-node cluster as Leader: it creates the account and its admin user and
writes the admin's API key to <data-dir>/admin.key (mode 0600). Later starts
reuse the data dir. SIGINT or SIGTERM stop it cleanly.

With --seed, a node with an empty data dir joins an existing cluster as a
Standby instead (see sower standby join).`,
		Example: `  sower server
  sower server --data-dir /var/lib/sower --account myorg --name leader-1
  SOWER_HTTP_ADDR=0.0.0.0:8443 sower server --config /etc/sower/sower.yaml
  sower server --name standby-1 --seed standby-1.seed --seed-identity standby-1.key --ca-pin sha256:...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runNodeCommand(cmd, false) },
	}
	nodeFlags(cmd.Flags())
	joinFlags(cmd.Flags())
	return cmd
}

// runNodeCommand reads a node command's configuration (flags, file,
// environment), with the seed it joins from when there is one (required
// when needSeed), sets the memory limit and runs the node.
func runNodeCommand(cmd *cobra.Command, needSeed bool) error {
	nc, err := loadNodeConfig(cmd.Flags())
	if err != nil {
		return err
	}
	sc, err := nc.serverConfig(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if sc.Join, err = joinFromFlags(cmd.Flags(), nc.DataDir, needSeed); err != nil {
		return err
	}
	if err := applyMemoryLimit(nc.MemoryLimit, sc.Logger); err != nil {
		return err
	}
	if err := applyGCPercent(nc.GCPercent, sc.Logger); err != nil {
		return err
	}
	remote, _ := nc.pprofRemote() // checked by loadNodeConfig
	_, stopPprof, err := startPprof(nc.Pprof, remote, sc.Logger)
	if err != nil {
		return err
	}
	defer stopPprof()
	return runServer(cmd.Context(), sc, cmd.ErrOrStderr())
}

func runServer(parent context.Context, sc server.Config, out io.Writer) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(sc)
	if err != nil {
		return &usageError{err}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-srv.Ready():
		printHowToCall(out, srv)
	}
	return <-errc
}

// printHowToCall tells a new user, in commands that work as printed, how to
// reach the node they just started.
func printHowToCall(w io.Writer, srv *server.Server) {
	g, h := srv.Addrs()
	created, id := srv.Bootstrapped()
	ca := srv.CAFile()
	fmt.Fprintf(w, "\nsower is ready (cluster %s, CA pin %s).\n", id, srv.CAPin())
	fmt.Fprintf(w, "  REST:  curl -s --cacert %s https://%s/v1/status\n", ca, hostPort(h))
	if grpcurl := findGrpcurl(); grpcurl != "" {
		fmt.Fprintf(w, "  gRPC:  %s -cacert %s %s list\n", grpcurl, ca, hostPort(g))
	} else {
		fmt.Fprintf(w, "  gRPC:  %s (grpcurl is not installed; `make tools` puts it in ./bin)\n", hostPort(g))
	}
	if created {
		fmt.Fprintf(w, "  admin API key (created now, mode 0600): %s\n", srv.AdminKeyPath())
	} else if _, err := os.Stat(srv.AdminKeyPath()); err == nil {
		fmt.Fprintf(w, "  admin API key: %s\n", srv.AdminKeyPath())
	}
	fmt.Fprintln(w, "  stop:  Ctrl-C (data stays in the data dir)")
	fmt.Fprintln(w)
}

// findGrpcurl returns how to run grpcurl from the current directory: its
// name when it is on PATH, ./bin/grpcurl where `make tools` put it, or ""
// when neither exists, so the banner prints only a line that works.
func findGrpcurl() string {
	if _, err := exec.LookPath("grpcurl"); err == nil {
		return "grpcurl"
	}
	if st, err := os.Stat(filepath.Join("bin", "grpcurl")); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return "bin/grpcurl"
	}
	return ""
}

func hostPort(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok && t.IP.IsUnspecified() {
		return fmt.Sprintf("127.0.0.1:%d", t.Port)
	}
	return a.String()
}
