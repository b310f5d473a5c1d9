//go:build linux

package ansible_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
)

// The Leader listens on 127.0.0.2 and the provisioned Standby on 127.0.0.3,
// as two machines would; both are loopback addresses on Linux.
const (
	leaderIP  = "127.0.0.2"
	standbyIP = "127.0.0.3"
	nodeName  = "standby-1"
)

// clusterPolicy declares what a Standby seed needs: the seed-generation
// webservice (admin, who owns root, may execute it) and the Standby's host
// as a member of the layer of the cluster policy conjur/cluster/default.
const clusterPolicy = `
- !policy
  id: conjur
  body:
  - !policy
    id: seed-generation
    body:
    - !webservice
  - !policy
    id: cluster
    body:
    - !policy
      id: default
      body:
      - !layer
      - !host ` + nodeName + `
      - !grant
        role: !layer
        member: !host ` + nodeName + `
`

// requireAnsible returns ansible-playbook's path. Without it the test is
// skipped on a developer's machine, and fails under CI, where `make test`
// installs ansible-core first.
func requireAnsible(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ansible-playbook")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("ansible-playbook is not installed but CI is set: the Standby role must be tested under CI; run `make system-deps` (apt-get install ansible-core): %v", err)
	}
	t.Skip("ansible-playbook is not installed (apt-get install ansible-core, or make system-deps); under CI this test fails instead")
	return ""
}

func TestProvisionStandby(t *testing.T) {
	requireAnsible(t)
	bin := testutil.BuildSower(t)
	root := t.TempDir()
	ports := portsOf(t, testutil.FreeAddrs(t, 8))

	leaderDir := filepath.Join(root, "leader")
	ld := startLeader(t, bin, leaderDir, ports[:4])
	policyFile := writeFile(t, filepath.Join(root, "policy.yml"), clusterPolicy, 0o600)
	sower(t, bin, "policy", "load", "--server", ld.url, "--ca-file", testutil.CAFile(leaderDir),
		"--api-key-file", filepath.Join(leaderDir, "admin.key"), "root", policyFile)
	pin := strings.TrimSpace(sower(t, bin, "ca", "pin", "--data-dir", leaderDir))
	apiKey := strings.TrimSpace(readFile(t, filepath.Join(leaderDir, "admin.key")))

	pb := newPlaybook(t, root, bin, ld.url, pin, apiKey, ports[4:])
	// The play starts the Standby in the background: stop it (and
	// anything else running from the test's target directories) before
	// the Leader stops.
	t.Cleanup(func() { pb.stopStandby(t) })

	t.Run("wrong CA pin stops the play before the target is touched", func(t *testing.T) {
		out, err := pb.run(t, "-e", "sower_ca_pin=sha256:"+strings.Repeat("0", 64))
		if err == nil {
			t.Fatalf("the play succeeded with a wrong CA pin:\n%s", out)
		}
		r := recapOf(t, out, nodeName)
		if r.failed != 1 || r.changed != 0 {
			t.Errorf("recap %+v, want failed=1 changed=0", r)
		}
		if !strings.Contains(out, "matches sower_ca_pin") {
			t.Errorf("the failure does not say the pin did not match:\n%s", out)
		}
		if _, err := os.Stat(pb.dataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the target's data dir exists after a refused pin (stat: %v)", err)
		}
	})

	var first recap
	t.Run("first run provisions a voting Standby", func(t *testing.T) {
		out, err := pb.run(t)
		if err != nil {
			t.Fatalf("ansible-playbook: %v\n%s\n--- node log ---\n%s", err, out, tail(pb.logFile))
		}
		first = recapOf(t, out, nodeName)
		t.Logf("recap %+v; the wait for the vote retried %d times", first, strings.Count(out, "FAILED - RETRYING"))
		if first.failed != 0 || first.unreachable != 0 || first.changed == 0 {
			t.Fatalf("recap %+v, want changed>0 failed=0 unreachable=0", first)
		}
		pb.checkNoSecrets(t, out)
		if m := ld.member(t, nodeName); m.Role != "ROLE_STANDBY" || !m.Healthy {
			t.Fatalf("the Leader lists %s as %+v, want a healthy ROLE_STANDBY", nodeName, m)
		}
		files := map[string]struct {
			path string
			mode os.FileMode
		}{
			"configuration": {filepath.Join(pb.configDir, "sower.yaml"), 0o600},
			"age identity":  {filepath.Join(pb.dataDir, "seed.key"), 0o600},
			"data dir":      {pb.dataDir, os.ModeDir | 0o700},
			"binary":        {filepath.Join(pb.binDir, "sower"), 0o755},
		}
		for name, f := range files {
			st, err := os.Stat(f.path)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if st.Mode() != f.mode {
				t.Errorf("%s %s has mode %v, want %v", name, f.path, st.Mode(), f.mode)
			}
		}
		if seeds := ld.standbySeeds(t, nodeName); len(seeds) != 1 || !seeds[0].Sealed {
			t.Errorf("the Leader's seed records for %s: %+v, want one sealed Standby seed", nodeName, seeds)
		}
		if _, err := os.Stat(filepath.Join(pb.dataDir, "standby.seed")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the used seed is still on the target (stat: %v)", err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("second run changes nothing", func(t *testing.T) {
		out, err := pb.run(t)
		if err != nil {
			t.Fatalf("ansible-playbook: %v\n%s", err, out)
		}
		r := recapOf(t, out, nodeName)
		if r.changed != 0 || r.failed != 0 || r.unreachable != 0 {
			t.Fatalf("second run recap %+v, want changed=0 failed=0 unreachable=0\n%s", r, out)
		}
		if seeds := ld.standbySeeds(t, nodeName); len(seeds) != 1 {
			t.Errorf("the Leader issued %d Standby seeds for %s over two runs, want 1 (a joined node gets no new seed): %+v", len(seeds), nodeName, seeds)
		}
		pb.checkNoSecrets(t, out)
		if m := ld.member(t, nodeName); m.Role != "ROLE_STANDBY" || !m.Healthy {
			t.Fatalf("after the second run the Leader lists %s as %+v, want a healthy ROLE_STANDBY", nodeName, m)
		}
	})
}

// playbook runs provision-standby.yml against localhost with the target's
// directories under the test's temporary directory.
type playbook struct {
	dir                             string // the test's root
	binDir, configDir, dataDir      string
	pidFile, logFile, controllerTmp string
	inventory, vars, secrets, vault string
	config, apiKey                  string
}

func newPlaybook(t *testing.T, root, bin, leaderURL, pin, apiKey string, ports []int) *playbook {
	t.Helper()
	target := filepath.Join(root, "target")
	pb := &playbook{
		dir:           root,
		binDir:        filepath.Join(target, "bin"),
		configDir:     filepath.Join(target, "etc"),
		dataDir:       filepath.Join(target, "data"),
		pidFile:       filepath.Join(target, "run", "sower-standby.pid"),
		logFile:       filepath.Join(target, "log", "sower-standby.log"),
		controllerTmp: filepath.Join(root, "controller-tmp"),
		apiKey:        apiKey,
	}
	for _, d := range []string{pb.binDir, pb.controllerTmp, filepath.Join(root, "ansible-local"), filepath.Join(root, "ansible-remote")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	if pb.config, err = filepath.Abs("ansible.cfg"); err != nil {
		t.Fatal(err)
	}
	pb.inventory = writeFile(t, filepath.Join(root, "inventory.yml"), `all:
  children:
    sower_standbys:
      hosts:
        `+nodeName+`:
          ansible_connection: local
          ansible_python_interpreter: "{{ ansible_playbook_python }}"
`, 0o600)
	vars := map[string]any{
		"sower_leader_url":       leaderURL,
		"sower_ca_pin":           pin,
		"sower_binary_src":       bin,
		"sower_node_ip":          standbyIP,
		"sower_grpc_port":        ports[0],
		"sower_http_port":        ports[1],
		"sower_etcd_client_port": ports[2],
		"sower_etcd_peer_port":   ports[3],
		"sower_bin_dir":          pb.binDir,
		"sower_config_dir":       pb.configDir,
		"sower_data_dir":         pb.dataDir,
		"sower_pid_file":         pb.pidFile,
		"sower_log_file":         pb.logFile,
		"sower_user":             u.Username,
		"sower_group":            g.Name,
		"sower_create_user":      false,
		"sower_become":           false,
		// The test machine may run systemd; the test must not install
		// a unit on it, so it takes the supervised path everywhere.
		"sower_service_manager": "supervised",
		"sower_log_format":      "text",
		"sower_join_delay":      1,
		"sower_join_retries":    180,
	}
	raw, err := json.Marshal(vars) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	pb.vars = writeFile(t, filepath.Join(root, "vars.json"), string(raw), 0o600)

	// The credential goes through Ansible Vault as an operator's would.
	pb.vault = writeFile(t, filepath.Join(root, "vault-password"), "test-vault-password\n", 0o600)
	cmd := exec.Command("ansible-vault", "encrypt_string", "--vault-password-file", pb.vault, "--stdin-name", "sower_admin_api_key")
	cmd.Stdin = strings.NewReader(apiKey)
	cmd.Env = pb.env()
	enc, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-vault encrypt_string: %v", err)
	}
	if !bytes.Contains(enc, []byte("!vault")) || bytes.Contains(enc, []byte(apiKey)) {
		t.Fatalf("ansible-vault encrypt_string did not encrypt:\n%s", enc)
	}
	pb.secrets = writeFile(t, filepath.Join(root, "secrets.yml"), string(enc), 0o600)
	return pb
}

func (pb *playbook) env() []string {
	return append(os.Environ(),
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_RETRY_FILES_ENABLED=0",
		"ANSIBLE_STDOUT_CALLBACK=default",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(pb.dir, "ansible-local"),
		"ANSIBLE_REMOTE_TEMP="+filepath.Join(pb.dir, "ansible-remote"),
		// This directory's ansible.cfg, what an operator gets: no
		// ansible.cfg of the machine or the user changes what runs.
		"ANSIBLE_CONFIG="+pb.config,
		// The controller's temporary directory (CA, sealed seed).
		"TMPDIR="+pb.controllerTmp,
	)
}

// run runs the playbook once; err is ansible-playbook's exit error.
func (pb *playbook) run(t *testing.T, extra ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	args := append([]string{"-i", pb.inventory, "provision-standby.yml",
		"-e", "@" + pb.vars, "-e", "@" + pb.secrets, "--vault-password-file", pb.vault}, extra...)
	cmd := exec.CommandContext(ctx, "ansible-playbook", args...)
	cmd.Env = pb.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	t.Logf("ansible-playbook took %s", time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("ansible-playbook did not finish within 8 minutes:\n%s", out.String())
	}
	return out.String(), err
}

// checkNoSecrets checks that neither the API key nor a sealed or plain seed
// is left where the controller keeps temporary files, and that the API key
// never appears in Ansible's output.
func (pb *playbook) checkNoSecrets(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, pb.apiKey) {
		t.Errorf("the admin API key appears in ansible-playbook's output")
	}
	if strings.Contains(out, "Token token=") {
		t.Errorf("an access token appears in ansible-playbook's output")
	}
	left, err := os.ReadDir(pb.controllerTmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if strings.HasPrefix(e.Name(), "sower-standby-") {
			t.Errorf("the controller's temporary directory %s was left behind", e.Name())
		}
	}
}

// stopStandby stops the supervised Standby the play started, with its
// launcher, then makes sure no process runs from the target's directories.
func (pb *playbook) stopStandby(t *testing.T) {
	launcher := filepath.Join(pb.binDir, "sower-standby")
	if _, err := os.Stat(launcher); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		out, err := exec.CommandContext(ctx, launcher, "stop").CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("sower-standby stop: %v\n%s", err, out)
		}
	}
	if left := processesUnder(pb.binDir); len(left) > 0 {
		t.Errorf("processes still running from %s after stop: %v; killing them", pb.binDir, left)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		waitGone(t, pb.binDir, 30*time.Second)
	}
}

// processesUnder returns the live (not zombie) processes whose command line
// names a file under dir.
func processesUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir+"/")) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func waitGone(t *testing.T, dir string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for len(processesUnder(dir)) > 0 {
		if time.Now().After(deadline) {
			t.Errorf("processes under %s still alive after %s: %v", dir, limit, processesUnder(dir))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type recap struct{ ok, changed, unreachable, failed int }

var recapRE = regexp.MustCompile(`(?m)^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// recapOf reads host's line of the PLAY RECAP.
func recapOf(t *testing.T, out, host string) recap {
	t.Helper()
	for _, m := range recapRE.FindAllStringSubmatch(out, -1) {
		if m[1] != host {
			continue
		}
		n := func(s string) int { v, _ := strconv.Atoi(s); return v }
		return recap{ok: n(m[2]), changed: n(m[3]), unreachable: n(m[4]), failed: n(m[5])}
	}
	t.Fatalf("no PLAY RECAP line for %s in:\n%s", host, out)
	return recap{}
}

// leader is a Leader process the test started.
type leader struct {
	url     string
	dataDir string
	client  *http.Client
}

// startLeader starts `sower server` on an empty data dir (a new cluster)
// and waits until it prints that it is ready. It is stopped with SIGTERM
// when the test ends.
func startLeader(t *testing.T, bin, dataDir string, ports []int) *leader {
	t.Helper()
	addr := func(p int) string { return net.JoinHostPort(leaderIP, strconv.Itoa(p)) }
	cmd := exec.Command(bin, "server", "--data-dir", dataDir, "--name", "leader-1",
		"--grpc-addr", addr(ports[0]), "--http-addr", addr(ports[1]),
		"--etcd-client-addr", addr(ports[2]), "--etcd-peer-addr", addr(ports[3]))
	ready := newLineWatch("sower is ready")
	cmd.Stdout, cmd.Stderr = ready, ready
	// Should the test binary die without its cleanups (a -timeout
	// panic), the Leader dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the Leader: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the Leader exited with %v after SIGTERM\n%s", err, ready.tail())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("the Leader did not stop within 30s of SIGTERM")
		}
	})
	select {
	case <-ready.seen:
	case err := <-exited:
		t.Fatalf("the Leader exited before it was ready: %v\n%s", err, ready.tail())
	case <-time.After(2 * time.Minute):
		t.Fatalf("the Leader was not ready within 2 minutes\n%s", ready.tail())
	}
	return &leader{url: "https://" + addr(ports[1]), dataDir: dataDir, client: testutil.HTTPClient(t, dataDir)}
}

type member struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Healthy bool   `json:"healthy"`
}

// member asks the Leader's cluster API (GET /v1/cluster/members) about name.
func (l *leader) member(t *testing.T, name string) member {
	t.Helper()
	var resp struct {
		Members []member `json:"members"`
	}
	if err := json.Unmarshal(l.get(t, "/v1/cluster/members"), &resp); err != nil {
		t.Fatalf("members: %v", err)
	}
	for _, m := range resp.Members {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("the Leader does not list %s among %+v", name, resp.Members)
	return member{}
}

type seedRecord struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Node   string `json:"node"`
	Sealed bool   `json:"sealed"`
}

// standbySeeds lists the Standby seeds the Leader issued for node (GET /v1/seeds).
func (l *leader) standbySeeds(t *testing.T, node string) []seedRecord {
	t.Helper()
	var resp struct {
		Seeds []seedRecord `json:"seeds"`
	}
	if err := json.Unmarshal(l.get(t, "/v1/seeds"), &resp); err != nil {
		t.Fatalf("seeds: %v", err)
	}
	var out []seedRecord
	for _, s := range resp.Seeds {
		if s.Kind == "standby" && s.Node == node {
			out = append(out, s)
		}
	}
	return out
}

// get sends an authenticated GET as admin.
func (l *leader) get(t *testing.T, path string) []byte {
	t.Helper()
	key := strings.TrimSpace(readFile(t, filepath.Join(l.dataDir, "admin.key")))
	req, _ := http.NewRequest(http.MethodPost, l.url+"/authn/default/admin/authenticate", strings.NewReader(key))
	req.Header.Set("Accept-Encoding", "base64")
	token := l.call(t, req)
	req, _ = http.NewRequest(http.MethodGet, l.url+path, nil)
	req.Header.Set("Authorization", `Token token="`+string(token)+`"`)
	return l.call(t, req)
}

func (l *leader) call(t *testing.T, req *http.Request) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := l.client.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s %v %s", req.Method, req.URL.Path, resp.Status, err, body)
	}
	return body
}

// lineWatch is a process's output: kept for failure messages, and seen is
// closed once a line containing want was written.
type lineWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
	line []byte
}

func newLineWatch(want string) *lineWatch {
	return &lineWatch{want: want, seen: make(chan struct{})}
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			break
		}
		if bytes.Contains(w.line[:i], []byte(w.want)) {
			w.once.Do(func() { close(w.seen) })
		}
		w.line = w.line[i+1:]
	}
	return len(p), nil
}

func (w *lineWatch) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.buf.String()
	if len(s) > 8000 {
		s = s[len(s)-8000:]
	}
	return s
}

// sower runs the sower CLI and returns its standard output.
func sower(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sower %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func portsOf(t *testing.T, addrs []string) []int {
	t.Helper()
	ports := make([]int, len(addrs))
	for i, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		if ports[i], err = strconv.Atoi(p); err != nil {
			t.Fatal(err)
		}
	}
	return ports
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tail returns the last lines of a file, for failure messages.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 60 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
