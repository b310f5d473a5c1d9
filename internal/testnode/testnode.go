// Package testnode starts a real single-node sower Leader for tests of the
// packages around the server (Conjur compatibility, seed fetching): real
// etcd, real TLS, real gRPC and REST, on free loopback ports.
package testnode

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/server"
)

// Node is a running Leader as a client sees it.
type Node struct {
	Server   *server.Server
	DataDir  string
	URL      string // https://127.0.0.1:port
	Account  string
	AdminKey string
	CAFile   string
	Pin      pki.Pin
	// EtcdClientAddr and EtcdPeerAddr are the member's etcd ports
	// (host:port).
	EtcdClientAddr, EtcdPeerAddr string
}

// Start runs a Leader until the test ends.
func Start(t testing.TB) *Node {
	t.Helper()
	dir := t.TempDir()
	a := testutil.FreeAddrs(t, 4)
	c := server.Config{
		Name: "leader-1", Account: "acme", DataDir: dir,
		GRPCAddr: a[0], HTTPAddr: a[1], EtcdClientAddr: a[2], EtcdPeerAddr: a[3],
		Logger: slog.New(slog.NewTextHandler(testOutput(t), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	s, err := server.New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	pin, err := pki.ParsePin(s.CAPin())
	if err != nil {
		t.Fatal(err)
	}
	_, h := s.Addrs()
	return &Node{Server: s, DataDir: dir, URL: "https://" + h.String(), Account: c.Account,
		AdminKey: strings.TrimSpace(string(raw)), CAFile: testutil.CAFile(dir), Pin: pin,
		EtcdClientAddr: c.EtcdClientAddr, EtcdPeerAddr: c.EtcdPeerAddr}
}

func testOutput(t testing.TB) interface{ Write([]byte) (int, error) } {
	if tt, ok := t.(*testing.T); ok {
		return tt.Output()
	}
	if bb, ok := t.(*testing.B); ok {
		return bb.Output()
	}
	return os.Stderr
}
