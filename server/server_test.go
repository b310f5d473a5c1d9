package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sowerproject/sower/internal/testutil"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// etcd's global loggers and the http transport keep-alives of
		// the gateway's test client outlive individual tests by design.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// glog (linked in through smallstep) starts its flush daemon in init.
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}

func testConfig(t *testing.T, dir string) Config {
	a := testutil.FreeAddrs(t, 4)
	return Config{
		Name: "leader-1", Account: "acme", DataDir: dir,
		GRPCAddr: a[0], HTTPAddr: a[1], EtcdClientAddr: a[2], EtcdPeerAddr: a[3],
		Version: "test", Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

// startNode runs a node until the test ends and waits for it to be ready.
func startNode(t *testing.T, c Config) (*Server, func() error) {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run before ready: %v", err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-errc
	}
	t.Cleanup(func() { _ = stop() })
	return s, stop
}

func getJSON(t *testing.T, c *http.Client, url string, v any) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: decode %q: %v", url, body, err)
		}
	}
	return resp.StatusCode
}

func TestBootstrapStatusAndRestart(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, dir)
	s, stop := startNode(t, c)
	created, id := s.Bootstrapped()
	if !created || len(id) != 32 {
		t.Fatalf("first start: created=%v id=%q, want a new 32-hex cluster id", created, id)
	}
	key, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatalf("admin.key: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "admin.key")); st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key mode %v, want 0600", st.Mode().Perm())
	}
	if len(strings.TrimSpace(string(key))) < 52 {
		t.Fatalf("admin key %d chars, want at least 52 (256 bits)", len(strings.TrimSpace(string(key))))
	}

	_, httpAddr := s.Addrs()
	hc := testutil.HTTPClient(t, dir)
	var st map[string]any
	if code := getJSON(t, hc, "https://"+httpAddr.String()+"/v1/status", &st); code != 200 {
		t.Fatalf("/v1/status = %d", code)
	}
	if st["role"] != "ROLE_LEADER" || st["clusterId"] != id || st["account"] != "acme" || st["memberId"] == "" || st["memberId"] != st["leaderId"] || st["leaderName"] != "leader-1" {
		t.Fatalf("status = %v", st)
	}
	if code := getJSON(t, hc, "https://"+httpAddr.String()+"/readyz", nil); code != 200 {
		t.Fatalf("/readyz = %d, want 200", code)
	}
	if code := getJSON(t, hc, "https://"+httpAddr.String()+"/healthz", nil); code != 200 {
		t.Fatalf("/healthz = %d, want 200", code)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run returned %v on cancel, want nil", err)
	}

	s2, _ := startNode(t, c)
	created2, id2 := s2.Bootstrapped()
	if created2 || id2 != id {
		t.Fatalf("restart: created=%v id=%q, want the existing cluster %q", created2, id2, id)
	}
	key2, _ := os.ReadFile(filepath.Join(dir, "admin.key"))
	if string(key2) != string(key) {
		t.Fatal("restart rewrote admin.key")
	}
}

func TestGRPCStatusHealthAndMetrics(t *testing.T) {
	dir := t.TempDir()
	s, _ := startNode(t, testConfig(t, dir))
	g, h := s.Addrs()
	hc := testutil.HTTPClient(t, dir)
	conn, err := grpc.NewClient(g.String(), grpc.WithTransportCredentials(credentials.NewTLS(testutil.TLSConfig(t, dir))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", hr, err)
	}
	sr, err := sowerv1.NewStatusServiceClient(conn).GetStatus(ctx, &sowerv1.GetStatusRequest{})
	if err != nil || sr.Role != sowerv1.Role_ROLE_LEADER || sr.Name != "leader-1" {
		t.Fatalf("GetStatus = %v, %v", sr, err)
	}

	resp, err := hc.Get("https://" + h.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`sower_grpc_requests_total{code="OK",method="/sower.v1.StatusService/GetStatus"} 1`,
		"sower_etcd_is_leader 1",
		"sower_grpc_request_duration_seconds_bucket",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	resp, err = hc.Get("https://" + h.String() + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Swagger string         `json:"swagger"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if doc.Swagger != "2.0" || doc.Paths["/v1/status"] == nil {
		t.Fatalf("openapi.json: swagger=%q, paths=%v", doc.Swagger, doc.Paths)
	}
}

func TestBadInputLeavesDataDirUnharmed(t *testing.T) {
	t.Run("port in use", func(t *testing.T) {
		dir := t.TempDir()
		c := testConfig(t, dir)
		l, err := net.Listen("tcp", c.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		s, _ := New(c)
		err = s.Run(context.Background())
		if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), "--http-addr") {
			t.Fatalf("Run = %v, want ErrPortInUse naming --http-addr", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "etcd")); !os.IsNotExist(err) {
			t.Fatal("a failed start created etcd data")
		}
	})
	t.Run("data dir locked by another node", func(t *testing.T) {
		dir := t.TempDir()
		startNode(t, testConfig(t, dir))
		s, _ := New(testConfig(t, dir))
		if err := s.Run(context.Background()); !errors.Is(err, ErrDataDirInUse) {
			t.Fatalf("second node on the same data dir: %v, want ErrDataDirInUse", err)
		}
	})
	t.Run("unwritable data dir", func(t *testing.T) {
		if os.Geteuid() == 0 {
			// root ignores permission bits; a file in the way is
			// unwritable for everyone.
			f := filepath.Join(t.TempDir(), "file")
			os.WriteFile(f, nil, 0o600)
			s, _ := New(testConfig(t, filepath.Join(f, "sub")))
			if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "--data-dir") {
				t.Fatalf("Run = %v, want an error naming --data-dir", err)
			}
			return
		}
		dir := t.TempDir()
		os.Chmod(dir, 0o500)
		s, _ := New(testConfig(t, filepath.Join(dir, "sub")))
		if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "--data-dir") {
			t.Fatalf("Run = %v, want an error naming --data-dir", err)
		}
	})
	t.Run("other account", func(t *testing.T) {
		dir := t.TempDir()
		c := testConfig(t, dir)
		_, stop := startNode(t, c)
		stop()
		before, _ := os.ReadFile(filepath.Join(dir, "admin.key"))
		c2 := testConfig(t, dir)
		c2.Account = "other"
		s, _ := New(c2)
		if err := s.Run(context.Background()); !errors.Is(err, ErrAccountMismatch) {
			t.Fatalf("Run = %v, want ErrAccountMismatch", err)
		}
		after, _ := os.ReadFile(filepath.Join(dir, "admin.key"))
		if string(before) != string(after) {
			t.Fatal("a refused start changed admin.key")
		}
		startNode(t, testConfig(t, dir)) // and the original account still starts
	})
}

func TestConfigValidate(t *testing.T) {
	good := Config{Name: "n1", Account: "acme", DataDir: "d", GRPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", EtcdClientAddr: "127.0.0.1:3", EtcdPeerAddr: "127.0.0.1:4"}
	tests := map[string]struct {
		mut  func(*Config)
		want string
	}{
		"ok":              {func(*Config) {}, ""},
		"account colon":   {func(c *Config) { c.Account = "a:b" }, "account"},
		"empty name":      {func(c *Config) { c.Name = "" }, "name"},
		"upper name":      {func(c *Config) { c.Name = "Leader" }, "name"},
		"no data dir":     {func(c *Config) { c.DataDir = "" }, "data-dir"},
		"bad grpc addr":   {func(c *Config) { c.GRPCAddr = "7443" }, "grpc-addr"},
		"bad port":        {func(c *Config) { c.HTTPAddr = "127.0.0.1:99999" }, "http-addr"},
		"no host":         {func(c *Config) { c.EtcdPeerAddr = ":2380" }, "etcd-peer-addr"},
		"same port twice": {func(c *Config) { c.HTTPAddr = c.GRPCAddr }, "own port"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := good
			tc.mut(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig mentioning %q", err, tc.want)
			}
		})
	}
}
