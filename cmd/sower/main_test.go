package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/pki"
)

// runSower runs the real binary and returns its exit code and output.
func runSower(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.BuildSower(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run sower %v: %v", args, err)
	}
	return 0, string(out)
}

func nodeArgs(t *testing.T, dir string) []string {
	a := testutil.FreeAddrs(t, 4)
	return []string{"--data-dir", dir, "--account", "acme", "--name", "n1",
		"--grpc-addr", a[0], "--http-addr", a[1], "--etcd-client-addr", a[2], "--etcd-peer-addr", a[3]}
}

func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.yaml")
	os.WriteFile(corrupt, []byte("account: [unclosed\n"), 0o600)
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("acount: typo\n"), 0o600)
	tests := map[string]struct {
		env  []string
		args []string
		want string
	}{
		"unknown flag":        {nil, []string{"server", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		"bad account":         {nil, []string{"config", "print", "--account", "a:b"}, "account"},
		"bad log format":      {nil, []string{"config", "print", "--log-format", "xml"}, "log-format \"xml\": use text or json"},
		"bad env value":       {[]string{"SOWER_GRPC_ADDR=nowhere"}, []string{"config", "print"}, "grpc-addr \"nowhere\""},
		"corrupt config file": {nil, []string{"config", "print", "--config", corrupt}, "config file " + corrupt},
		"unknown config key":  {nil, []string{"config", "print", "--config", unknown}, `unknown key "acount"`},
		"bad shutdown":        {nil, []string{"config", "print", "--shutdown-timeout", "soon"}, "shutdown-timeout"},
		"bad memory limit":    {nil, []string{"config", "print", "--memory-limit", "lots"}, "memory-limit \"lots\""},
		"bad trusted proxy":   {nil, []string{"config", "print", "--trusted-proxies", "10.0.0.0/8,lb.example"}, "trusted-proxies"},
		"bad authn burst":     {nil, []string{"config", "print", "--authn-burst", "0"}, "authn-burst \"0\""},
		"bad load timeout":    {nil, []string{"config", "print", "--policy-load-timeout", "-1s"}, "policy-load-timeout \"-1s\""},
		"bad authn refill":    {nil, []string{"config", "print", "--authn-global-refill", "fast"}, "authn-global-refill \"fast\""},
		"bad min free disk":   {nil, []string{"config", "print", "--min-free-disk", "lots"}, "min-free-disk \"lots\""},
		"min free disk low":   {nil, []string{"config", "print", "--min-free-disk", "10MiB"}, "min-free-disk \"10MiB\": at least"},
		"pprof off loopback":  {nil, []string{"server", "--pprof", "0.0.0.0:6060"}, "not a loopback address"},
		"bad pprof remote":    {nil, []string{"config", "print", "--pprof", "127.0.0.1:6060", "--pprof-allow-remote=maybe"}, "pprof-allow-remote"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, out := runSower(t, tc.env, tc.args...)
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want exit 2 mentioning %q", code, out, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(out), "\n"); n > 0 {
				t.Fatalf("want one clear error line, got %d lines: %q", n+1, out)
			}
		})
	}
}

func TestConfigPrintMergesSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sower.yaml")
	os.WriteFile(file, []byte("account: fromfile\nname: filename\nlog-format: json\ntrusted-proxies: 10.0.0.0/8\n"), 0o600)
	code, out := runSower(t, []string{"SOWER_NAME=fromenv", "SOWER_AUTHN_SOURCE_BURST=50"}, "config", "print", "--config", file, "--log-format", "text")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{`account: "fromfile"`, `name: "fromenv"`, `log-format: "text"`, `data-dir: "./.sower"`,
		`trusted-proxies: "10.0.0.0/8"`, `authn-source-burst: "50"`, `authn-burst: "10"`, `authn-refill: "6s"`, `policy-load-timeout: "5m0s"`, `min-free-disk: "auto"`, `pprof: ""`} {
		if !strings.Contains(out, want) {
			t.Errorf("config print lacks %s:\n%s", want, out)
		}
	}
}

// TestServeSigtermRestart runs the binary as a user does: start, call the
// printed curl line's URL, SIGTERM (exit 0), restart on the same data dir.
func TestServeSigtermRestart(t *testing.T) {
	dir := t.TempDir()
	args := append([]string{"server", "--log-format", "json"}, nodeArgs(t, dir)...)
	url := startAndCall(t, args)
	if !strings.Contains(url, "/v1/status") {
		t.Fatalf("printed URL %q", url)
	}
	key, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	startAndCall(t, args)
	key2, _ := os.ReadFile(filepath.Join(dir, "admin.key"))
	if string(key) != string(key2) {
		t.Fatal("restart changed the admin credential")
	}
}

var curlRE = regexp.MustCompile(`curl -s --cacert (\S+) (https://\S+)`)

// startAndCall starts a node, waits for its "ready" banner, GETs the URL of
// the printed curl line, then sends SIGTERM and expects exit status 0. The
// log must never contain the admin API key.
func startAndCall(t *testing.T, args []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.BuildSower(t), args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	var url, caFile string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := curlRE.FindStringSubmatch(sc.Text()); m != nil {
			caFile, url = m[1], m[2]
			break
		}
	}
	if url == "" {
		cmd.Wait()
		t.Fatalf("no curl line printed; output:\n%s", log.String())
	}
	// Exactly what the printed curl line does: trust the printed CA file.
	hc := testutil.HTTPClient(t, filepath.Dir(filepath.Dir(caFile)))
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"role":"ROLE_LEADER"`) {
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	log.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v; output:\n%s", err, log.String())
	}
	dataDir := args[slices.Index(args, "--data-dir")+1]
	if key, err := os.ReadFile(filepath.Join(dataDir, "admin.key")); err == nil && strings.Contains(log.String(), strings.TrimSpace(string(key))) {
		t.Fatal("the admin API key appears in the log")
	}
	if !strings.Contains(log.String(), `"msg":"sower node stopped"`) {
		t.Fatalf("no clean stop logged:\n%s", log.String())
	}
	return url
}

// TestCAPinAndImport: `sower ca pin` prints the pin of the data dir's CA, and
// `sower ca import` refuses a bad pair and a data dir that already started.
func TestCAPinAndImport(t *testing.T) {
	dir := t.TempDir()
	startAndCall(t, append([]string{"server", "--log-format", "json"}, nodeArgs(t, dir)...))
	code, out := runSower(t, nil, "ca", "pin", "--data-dir", dir)
	if code != 0 || !strings.HasPrefix(out, "sha256:") || len(strings.TrimSpace(out)) != 71 {
		t.Fatalf("ca pin: exit %d, %q", code, out)
	}
	cert := filepath.Join(dir, "tls", "node.pem")
	key := filepath.Join(dir, "tls", "node-key.pem")
	if code, out := runSower(t, nil, "ca", "import", "--data-dir", dir, "--cert", cert, "--key", key); code != 2 || !strings.Contains(out, "already holds a cluster") {
		t.Fatalf("import into a started data dir: exit %d, %q", code, out)
	}
	fresh := t.TempDir()
	if code, out := runSower(t, nil, "ca", "import", "--data-dir", fresh, "--cert", cert, "--key", key); code != 2 || !strings.Contains(out, "not a CA") {
		t.Fatalf("import of a leaf certificate: exit %d, %q", code, out)
	}
}

// TestImportedRootBecomesTheClusterCA: an operator's own root, staged with
// `sower ca import`, signs the new cluster's certificates.
func TestImportedRootBecomesTheClusterCA(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "operator root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour * 365),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	root, _ := x509.ParseCertificate(der)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	src := t.TempDir()
	certFile, keyFile := filepath.Join(src, "root.pem"), filepath.Join(src, "root-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600)

	dir := t.TempDir()
	if code, out := runSower(t, nil, "ca", "import", "--data-dir", dir, "--cert", certFile, "--key", keyFile); code != 0 {
		t.Fatalf("ca import: exit %d, %s", code, out)
	}
	startAndCall(t, append([]string{"server", "--log-format", "json"}, nodeArgs(t, dir)...))
	if _, err := os.Stat(filepath.Join(dir, "tls", "ca-import-key.pem")); !os.IsNotExist(err) {
		t.Fatal("the staged CA key is still on disk after bootstrap")
	}
	_, out := runSower(t, nil, "ca", "pin", "--data-dir", dir)
	if want := pki.PinOf(root).String(); strings.TrimSpace(out) != want {
		t.Fatalf("cluster pin %q, want the imported root's %q", out, want)
	}
}

// TestSeedKeygenIsIdempotent: keygen writes a 0600 identity once and prints
// the same recipient on every later run.
func TestSeedKeygenIsIdempotent(t *testing.T) {
	f := filepath.Join(t.TempDir(), "seed.key")
	code, first := runSower(t, nil, "seed", "keygen", f)
	if code != 0 || !strings.HasPrefix(first, "age1") {
		t.Fatalf("keygen: exit %d, %q", code, first)
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
		t.Fatalf("identity mode %v", st.Mode().Perm())
	}
	if code, again := runSower(t, nil, "seed", "keygen", f); code != 0 || again != first {
		t.Fatalf("second keygen: exit %d, %q, want %q", code, again, first)
	}
}
