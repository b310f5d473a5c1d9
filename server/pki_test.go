package server

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/pki"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// TestPlaintextIsRefused: gRPC, REST and etcd accept TLS only.
func TestPlaintextIsRefused(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, dir)
	s, _ := startNode(t, c)
	g, h := s.Addrs()

	conn, err := grpc.NewClient(g.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sowerv1.NewStatusServiceClient(conn).GetStatus(ctx, &sowerv1.GetStatusRequest{}); err == nil {
		t.Fatal("plaintext gRPC call succeeded")
	}

	resp, err := http.Get("http://" + h.String() + "/v1/status")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plaintext REST answered 200: %s", body)
		}
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + c.EtcdClientAddr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Get(ctx, "/sower/meta/cluster"); err == nil {
		t.Fatal("plaintext etcd read succeeded")
	}
}

// TestCABundleAndPinSurviveRestart: GET /ca serves the bundle whose root
// carries the pin, and a restart keeps the same CA.
func TestCABundleAndPinSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, dir)
	s, stop := startNode(t, c)
	_, h := s.Addrs()
	hc := testutil.HTTPClient(t, dir)
	resp, err := hc.Get("https://" + h.String() + "/ca")
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	certs, err := pki.ParseCertificatesPEM(bundle)
	if err != nil || len(certs) == 0 {
		t.Fatalf("GET /ca: %v, %d certs", err, len(certs))
	}
	rootsPEM, _ := os.ReadFile(testutil.CAFile(dir))
	roots, _ := pki.ParseCertificatesPEM(rootsPEM)
	pin := pki.PinOf(roots[len(roots)-1])
	if !pin.MatchesChain(certs) {
		t.Fatal("the served bundle does not carry the pinned root")
	}
	if st, _ := os.Stat(dir + "/tls/node-key.pem"); st.Mode().Perm() != 0o600 {
		t.Fatalf("node key mode %v, want 0600", st.Mode().Perm())
	}
	stop()

	startNode(t, c)
	rootsPEM2, _ := os.ReadFile(testutil.CAFile(dir))
	roots2, _ := pki.ParseCertificatesPEM(rootsPEM2)
	if !pin.Matches(roots2[len(roots2)-1]) {
		t.Fatal("a restart changed the cluster CA")
	}
}
