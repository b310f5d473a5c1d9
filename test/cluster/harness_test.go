package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
)

const account = "acme"

// harness runs a cluster of sower processes for one test.
type harness struct {
	tb      testing.TB
	bin     string
	dir     string
	cluster string
	ttl     int // the cluster policy's ttl annotation, seconds

	mu    sync.Mutex
	nodes map[string]*proc
	http  *http.Client
	token string
}

func newHarness(tb testing.TB, clusterName string, ttl int) *harness {
	h := &harness{tb: tb, bin: testutil.BuildSower(tb), dir: tb.TempDir(), cluster: clusterName, ttl: ttl, nodes: map[string]*proc{}}
	tb.Cleanup(func() {
		for _, p := range h.all() {
			p.kill9()
		}
	})
	return h
}

// proc is one sower node process.
type proc struct {
	h                        *harness
	name, ip, dir            string
	netns                    string // network namespace, if any
	grpc, http, etcdc, etcdp string
	cmd                      *exec.Cmd
	done                     chan struct{}
	logPath                  string
	// follower, when set, makes the process a Follower (sower follower)
	// whose certificate names serverName.
	follower   []string
	serverName string
}

// freePorts reserves n ports on ip.
func freePorts(tb testing.TB, ip string, n int) []string {
	tb.Helper()
	var ls []net.Listener
	var out []string
	for range n {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			tb.Fatalf("reserve a port on %s: %v (is the loopback range usable?)", ip, err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// node declares a node on ip; it does not start it.
func (h *harness) node(name, ip string) *proc {
	a := freePorts(h.tb, ip, 4)
	p := &proc{h: h, name: name, ip: ip, dir: filepath.Join(h.dir, name),
		grpc: a[0], http: a[1], etcdc: a[2], etcdp: a[3], logPath: filepath.Join(h.dir, name+".log")}
	h.mu.Lock()
	h.nodes[name] = p
	h.mu.Unlock()
	return p
}

func (p *proc) url() string { return "https://" + p.http }

func (p *proc) args() []string {
	if p.follower != nil {
		return p.follower
	}
	return []string{"server", "--data-dir", p.dir, "--account", account, "--name", p.name,
		"--grpc-addr", p.grpc, "--http-addr", p.http, "--etcd-client-addr", p.etcdc, "--etcd-peer-addr", p.etcdp}
}

// start runs the node with extra flags and waits until it serves or exits.
func (p *proc) start(extra ...string) error {
	p.h.tb.Helper()
	if err := p.launch(extra...); err != nil {
		return err
	}
	return p.waitReady()
}

func (p *proc) launch(extra ...string) error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	argv := append([]string{p.h.bin}, append(p.args(), extra...)...)
	if p.netns != "" {
		// ip netns exec execs the command: the process is sower's.
		argv = append([]string{"ip", "netns", "exec", p.netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	p.h.mu.Lock()
	p.cmd, p.done = cmd, done
	p.h.mu.Unlock()
	return nil
}

// waitReady polls /readyz until it answers 200 or the process exits; it
// gives up after two minutes.
func (p *proc) waitReady() error {
	cli := p.client()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %s", p.name, p.tail())
		default:
		}
		if cli != nil {
			resp, err := cli.Get(p.url() + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		} else if strings.Contains(p.tail(), "sower is ready") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Make it print its goroutines (SIGQUIT) so the failure says where
	// it is stuck.
	p.h.mu.Lock()
	if p.cmd != nil {
		p.cmd.Process.Signal(syscall.SIGQUIT)
	}
	p.h.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	return fmt.Errorf("%s not ready after 2 minutes: %s", p.name, p.stacks())
}

// stacks is the part of the log from a goroutine dump that names sower's
// own frames, or the tail.
func (p *proc) stacks() string {
	raw, _ := os.ReadFile(p.logPath)
	i := strings.Index(string(raw), "SIGQUIT")
	if i < 0 {
		return p.tail()
	}
	var keep []string
	for _, l := range strings.Split(string(raw[i:]), "\n") {
		if strings.HasPrefix(l, "goroutine ") || strings.Contains(l, "sowerproject/sower") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// exited waits for the process to end by itself and returns its exit code.
func (p *proc) exited() int {
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		p.h.tb.Fatalf("%s did not exit", p.name)
	}
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	code := p.cmd.ProcessState.ExitCode()
	p.cmd = nil
	return code
}

// tail is the end of the node's log, for failure messages.
func (p *proc) tail() string {
	raw, _ := os.ReadFile(p.logPath)
	if len(raw) > 3000 {
		raw = raw[len(raw)-3000:]
	}
	return string(raw)
}

// take detaches the running process from p, under the harness lock.
func (p *proc) take() *exec.Cmd {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	cmd := p.cmd
	p.cmd = nil
	return cmd
}

// kill9 kills the process at once, as a crash does.
func (p *proc) kill9() {
	if cmd := p.take(); cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// stop ends the process cleanly (SIGTERM).
func (p *proc) stop() {
	cmd := p.take()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.h.tb.Errorf("%s did not stop on SIGTERM; killing it", p.name)
		cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

func (h *harness) all() []*proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*proc
	for _, p := range h.nodes {
		out = append(out, p)
	}
	return out
}

// running lists the nodes whose process runs.
func (h *harness) running() []*proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*proc
	for _, p := range h.nodes {
		if p.cmd != nil {
			out = append(out, p)
		}
	}
	return out
}

// caFile is the cluster's CA bundle (every node holds the same one).
func (h *harness) caFile() string { return filepath.Join(h.dir, "leader-1", "tls", "ca.pem") }

// apiKeyFile is the admin's API key, written by the bootstrapping node.
func (h *harness) apiKeyFile() string { return filepath.Join(h.dir, "leader-1", "admin.key") }

// client is an HTTPS client trusting the cluster CA; nil before the first
// node has written it.
func (h *harness) client() *http.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.http != nil {
		return h.http
	}
	pem, err := os.ReadFile(h.caFile())
	if err != nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	// Enough kept-alive connections for the benchmarks' concurrent
	// writes (the replication lag's open loop has dozens in flight when
	// the machine is busy): with 4, every write beyond them closed its
	// connection and the next one paid a TLS handshake, a fifth of the
	// Leader's CPU in that benchmark.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 128}
	h.tb.Cleanup(tr.CloseIdleConnections)
	h.http = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return h.http
}

// sower runs a client command against the node at server.
func (h *harness) sower(server string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = append(os.Environ(), "SOWER_SERVER="+server, "SOWER_CA_FILE="+h.caFile(),
		"SOWER_API_KEY_FILE="+h.apiKeyFile(), "SOWER_ACCOUNT="+account)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("sower %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// leaderInfo is GET /v1/cluster/leader.
type leaderInfo struct {
	Known bool   `json:"known"`
	Name  string `json:"name"`
	URL   string `json:"url"`
}

// leader asks the running nodes who leads; empty when none knows.
func (h *harness) leader() leaderInfo {
	for _, p := range h.running() {
		var l leaderInfo
		if h.getJSON(p.url()+"/v1/cluster/leader", &l) == nil && l.Known {
			return l
		}
	}
	return leaderInfo{}
}

// waitLeader polls until a Leader accepted by ok is known (two minutes).
func (h *harness) waitLeader(ok func(leaderInfo) bool) leaderInfo {
	h.tb.Helper()
	for range 1200 {
		if l := h.leader(); l.Known && ok(l) {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.tb.Fatalf("no acceptable Leader within two minutes")
	return leaderInfo{}
}

func (h *harness) getJSON(url string, v any) error {
	resp, err := h.client().Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// authenticate gets an access token for the admin from any node.
func (h *harness) authenticate(base string) (string, error) {
	key, err := os.ReadFile(h.apiKeyFile())
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/authn/"+account+"/admin/authenticate", bytes.NewReader(bytes.TrimSpace(key)))
	req.Header.Set("Accept-Encoding", "base64")
	resp, err := h.client().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("authenticate: %s: %s", resp.Status, body)
	}
	return `Token token="` + string(body) + `"`, nil
}

// do sends an authenticated request; it returns the status and body.
func (h *harness) do(method, url, token string, body []byte) (int, string, error) {
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Authorization", token)
	resp, err := h.client().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), nil
}

// loadPolicy appends policy text to root on the node at base (Conjur's
// POST /policies/{account}/policy/root).
func (h *harness) loadPolicy(base, token, text string) (int, string, error) {
	return h.do(http.MethodPost, base+"/policies/"+account+"/policy/root", token, []byte(text))
}

// clusterPolicy declares the cluster and its member hosts, and lets the
// admin (owner of root) issue seeds.
func (h *harness) clusterPolicy(members ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `- !policy
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
      id: %s
`, h.cluster)
	if h.ttl > 0 {
		fmt.Fprintf(&b, "      annotations:\n        ttl: %d\n", h.ttl)
	}
	b.WriteString(`      body:
      - !layer
      - &members
`)
	for _, m := range members {
		fmt.Fprintf(&b, "        - !host %s\n", m)
	}
	b.WriteString("      - !grant\n        role: !layer\n        members: *members\n")
	return b.String()
}

// standbySeed issues a Standby seed for node through the Leader's seed
// service, sealed to a new age key; it returns the seed and key files.
func (h *harness) standbySeed(leaderURL string, p *proc) (seedFile, keyFile string) {
	h.tb.Helper()
	seedFile = filepath.Join(h.dir, fmt.Sprintf("%s-%d.seed", p.name, time.Now().UnixNano()))
	keyFile = seedFile + ".key"
	if _, err := h.sower(leaderURL, "seed", "standby", "--host", "conjur/cluster/"+h.cluster+"/"+p.name,
		"--ip", p.ip, "--out", seedFile, "--identity-out", keyFile); err != nil {
		h.tb.Fatal(err)
	}
	return seedFile, keyFile
}

// pin is the cluster CA pin.
func (h *harness) pin() string {
	h.tb.Helper()
	out, err := exec.Command(h.bin, "ca", "pin", "--ca-file", h.caFile()).Output()
	if err != nil {
		h.tb.Fatalf("sower ca pin: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// join starts p from a new Standby seed.
func (h *harness) join(leaderURL string, p *proc, extra ...string) error {
	seedFile, keyFile := h.standbySeed(leaderURL, p)
	return p.start(append([]string{"--seed", seedFile, "--seed-identity", keyFile, "--ca-pin", h.pin()}, extra...)...)
}

// member is one entry of `sower cluster members -o json`.
type member struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Role       string   `json:"role"`
	Healthy    bool     `json:"healthy"`
	PeerURLs   []string `json:"peerUrls"`
	RaftLeader bool     `json:"raftLeader"`
}

// members runs `sower cluster members -o json` against a node.
func (h *harness) members(server string) ([]member, error) {
	out, err := h.sower(server, "cluster", "members", "-o", "json")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Members []member `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("members output %q: %w", out, err)
	}
	return resp.Members, nil
}

// waitVoters polls until the cluster has exactly the named voters, all
// healthy, no learner, and a Leader among them.
func (h *harness) waitVoters(server string, names ...string) []member {
	h.tb.Helper()
	var last []member
	var lastErr error
	for range 600 {
		ms, err := h.members(server)
		last, lastErr = ms, err
		if err == nil && len(ms) == len(names) {
			ok, leaders := true, 0
			for _, m := range ms {
				if !m.Healthy || (m.Role != "ROLE_LEADER" && m.Role != "ROLE_STANDBY") {
					ok = false
				}
				if m.Role == "ROLE_LEADER" {
					leaders++
				}
			}
			if ok && leaders == 1 && sameNames(ms, names) {
				return ms
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.tb.Fatalf("cluster never had voters %v: last %+v, %v", names, last, lastErr)
	return nil
}

// waitRaftPlaced waits until raft leadership sits on a Standby, as the
// Leader arranges within seconds of taking over (two minutes at most).
func (h *harness) waitRaftPlaced(server string) {
	h.tb.Helper()
	for range 600 {
		if ms, err := h.members(server); err == nil {
			for _, m := range ms {
				if m.RaftLeader && m.Role == "ROLE_STANDBY" {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.tb.Fatal("raft leadership never moved to a Standby")
}

func sameNames(ms []member, names []string) bool {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, m := range ms {
		if !want[m.Name] {
			return false
		}
		delete(want, m.Name)
	}
	return len(want) == 0
}

// etcdctlMembers runs Debian's etcdctl member list against p with p's
// own certificate.
func (h *harness) etcdctlMembers(p *proc) ([]etcdctlMember, error) {
	if _, err := exec.LookPath("etcdctl"); err != nil {
		return nil, errors.New("etcdctl is not installed (apt-get install etcd-client; make test does it)")
	}
	tlsDir := filepath.Join(p.dir, "tls")
	cmd := exec.Command("etcdctl", "--endpoints", "https://"+p.etcdc,
		"--cacert", filepath.Join(tlsDir, "ca.pem"), "--cert", filepath.Join(tlsDir, "node.pem"), "--key", filepath.Join(tlsDir, "node-key.pem"),
		"member", "list", "-w", "json")
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("etcdctl member list: %w: %s", err, out)
	}
	var resp struct {
		Members []etcdctlMember `json:"members"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("etcdctl output %q: %w", out, err)
	}
	return resp.Members, nil
}

type etcdctlMember struct {
	ID        uint64   `json:"ID"`
	Name      string   `json:"name"`
	PeerURLs  []string `json:"peerURLs"`
	IsLearner bool     `json:"isLearner"`
}
