package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
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
	os.WriteFile(file, []byte("account: fromfile\nname: filename\nlog-format: json\n"), 0o600)
	code, out := runSower(t, []string{"SOWER_NAME=fromenv"}, "config", "print", "--config", file, "--log-format", "text")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{`account: "fromfile"`, `name: "fromenv"`, `log-format: "text"`, `data-dir: "./.sower"`} {
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

var curlRE = regexp.MustCompile(`curl -s (http://\S+)`)

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
	var url string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := curlRE.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
			break
		}
	}
	if url == "" {
		cmd.Wait()
		t.Fatalf("no curl line printed; output:\n%s", log.String())
	}
	resp, err := http.Get(url)
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

