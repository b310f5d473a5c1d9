package clustertest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sowerproject/sower/pki"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// followerDomain is the DNS suffix of the test Followers' certificates;
// the seed policy allows it.
const followerDomain = "followers.test"

// followerNode declares a Follower started from a new Follower seed that
// the Leader at leaderURL issues; it does not start it.
func (h *harness) followerNode(leaderURL, name, ip string) (*proc, string) {
	h.tb.Helper()
	a := freePorts(h.tb, ip, 2)
	seedFile := filepath.Join(h.dir, name+".seed")
	keyFile := seedFile + ".key"
	host := name + "." + followerDomain
	out, err := h.sower(leaderURL, "seed", "follower", "--hostname", host, "--out", seedFile, "--identity-out", keyFile)
	if err != nil {
		h.tb.Fatal(err)
	}
	var seedID string
	fmt.Sscanf(out, "seed %s written", &seedID)
	p := &proc{h: h, name: name, ip: ip, dir: filepath.Join(h.dir, name), grpc: a[0], http: a[1],
		logPath: filepath.Join(h.dir, name+".log"), serverName: host}
	p.follower = []string{"follower", "--seed", seedFile, "--identity", keyFile, "--ca-pin", h.pin(),
		"--data-dir", p.dir, "--http-addr", p.http, "--grpc-addr", p.grpc}
	h.mu.Lock()
	h.nodes[name] = p
	h.mu.Unlock()
	return p, seedID
}

var procClients sync.Map // *proc → *http.Client

// client is an HTTPS client for p: a Follower's certificate names its
// host name, not its IP, so the client checks that name.
func (p *proc) client() *http.Client {
	base := p.h.client()
	if p.serverName == "" || base == nil {
		return base
	}
	if c, ok := procClients.Load(p); ok {
		return c.(*http.Client)
	}
	tr := base.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = p.serverName
	// Enough kept-alive connections for the benchmarks' 64 clients: a
	// new TLS handshake per request would measure handshakes.
	tr.MaxIdleConnsPerHost = 128
	p.h.tb.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	procClients.Store(p, c)
	return c
}

// req sends a request to p and returns status, headers and body.
func (p *proc) req(method, path, token string, body string, hdr ...string) (int, http.Header, string, error) {
	r, _ := http.NewRequest(method, p.url()+path, strings.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := p.client().Do(r)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), nil
}

// login authenticates a role with its API key on p (Conjur's path).
func (p *proc) login(login, apiKey string) (string, error) {
	code, _, body, err := p.req(http.MethodPost, "/authn/"+account+"/"+url.PathEscape(login)+"/authenticate", "", apiKey, "Accept-Encoding", "base64")
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("authenticate %s on %s: %d %s", login, p.name, code, body)
	}
	return `Token token="` + body + `"`, nil
}

const secretPath = "/secrets/" + account + "/variable/db%2Fpassword"

// setSecret sets the test variable on p and returns the revision the
// answer names.
func setSecret(p *proc, token, value string) (int64, error) {
	code, hdr, body, err := p.req(http.MethodPost, secretPath, token, value)
	if err != nil {
		return 0, err
	}
	if code != http.StatusCreated {
		return 0, fmt.Errorf("set secret on %s: %d %s", p.name, code, body)
	}
	return strconv.ParseInt(hdr.Get("X-Sower-Revision"), 10, 64)
}

type followerHealth struct {
	OK          bool `json:"ok"`
	Replication struct {
		State           string `json:"state"`
		AppliedRevision int64  `json:"applied_revision"`
		Resyncs         int    `json:"resyncs"`
		Node            string `json:"node"`
	} `json:"replication"`
}

func (p *proc) health() (followerHealth, error) {
	var fh followerHealth
	code, _, body, err := p.req(http.MethodGet, "/health", "", "")
	if err != nil {
		return fh, err
	}
	if code != http.StatusOK {
		return fh, fmt.Errorf("health of %s: %d %s", p.name, code, body)
	}
	return fh, json.Unmarshal([]byte(body), &fh)
}

// TestFollowers is issue 12's acceptance on real processes: a Leader, two
// Standbys and three Followers started from seeds serve logins and secret
// reads, refuse writes naming the Leader, honour read-after-write, keep
// serving through a kill -9 of the Leader and receive every acknowledged
// write from its successor, resynchronise after compaction, and a revoked
// Follower is cut off.
func TestFollowers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	// A small ring, so that a Follower stopped for a few writes cannot be
	// resumed and must resynchronise (the compaction case below).
	t.Setenv("SOWER_REPLICATION_RING", "8")
	h := newHarness(t, "prod", 2)
	l1 := h.node("leader-1", "127.0.0.2")
	s1 := h.node("standby-1", "127.0.0.3")
	s2 := h.node("standby-2", "127.0.0.4")
	quorum := []string{"leader-1", "standby-1", "standby-2"}
	if err := l1.start("--cluster", "prod"); err != nil {
		t.Fatal(err)
	}
	admin, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	pol := strings.Replace(h.clusterPolicy(quorum...), "    - !webservice\n",
		"    - !webservice\n      annotations:\n        sower/follower-hostnames: \"*."+followerDomain+"\"\n", 1) + `
- !host app
- !variable db/password
- !permit
  role: !host app
  privileges: [read, execute]
  resource: !variable db/password
`
	code, body, err := h.loadPolicy(l1.url(), admin, pol)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("load policy: %d %s %v", code, body, err)
	}
	var loaded struct {
		CreatedRoles map[string]struct {
			APIKey string `json:"api_key"`
		} `json:"created_roles"`
	}
	if err := json.Unmarshal([]byte(body), &loaded); err != nil {
		t.Fatal(err)
	}
	appKey := loaded.CreatedRoles[account+":host:app"].APIKey
	if appKey == "" {
		t.Fatalf("no API key for host app in %s", body)
	}
	if _, err := setSecret(l1, admin, "s3cret-0"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*proc{s1, s2} {
		if err := h.join(l1.url(), p); err != nil {
			t.Fatal(err)
		}
	}
	h.waitVoters(l1.url(), quorum...)

	var followers []*proc
	var seedIDs []string
	for i, ip := range []string{"127.0.0.5", "127.0.0.6", "127.0.0.7"} {
		p, id := h.followerNode(l1.url(), fmt.Sprintf("follower-%d", i+1), ip)
		followers, seedIDs = append(followers, p), append(seedIDs, id)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(followers))
	for i, p := range followers {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.start() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	f1 := followers[0]

	if !t.Run("login and secret read on a Follower; tokens valid on every node", func(t *testing.T) {
		for _, f := range followers {
			tok, err := f.login("host/app", appKey)
			if err != nil {
				t.Fatal(err)
			}
			code, hdr, body, err := f.req(http.MethodGet, secretPath, tok, "")
			if err != nil || code != http.StatusOK || body != "s3cret-0" {
				t.Fatalf("read on %s: %d %q %v", f.name, code, body, err)
			}
			if hdr.Get("X-Sower-Revision") == "" {
				t.Errorf("%s answered without X-Sower-Revision", f.name)
			}
			// The Follower's token on the Leader, the Leader's on the Follower.
			if code, _, body, _ := l1.req(http.MethodGet, "/whoami", tok, ""); code != http.StatusOK || !strings.Contains(body, "host/app") {
				t.Errorf("%s's token on the Leader: %d %s", f.name, code, body)
			}
			if code, _, body, _ := f.req(http.MethodGet, "/whoami", admin, ""); code != http.StatusOK || !strings.Contains(body, "admin") {
				t.Errorf("the Leader's token on %s: %d %s", f.name, code, body)
			}
		}
	}) {
		t.FailNow()
	}

	t.Run("writes get 405 naming the Leader", func(t *testing.T) {
		for _, w := range []struct{ method, path, body string }{
			{http.MethodPost, secretPath, "x"},
			{http.MethodPost, "/policies/" + account + "/policy/root", "- !user u\n"},
			{http.MethodPut, "/authn/" + account + "/api_key", ""},
			{http.MethodPost, "/configuration/" + account + "/seed/follower", ""},
		} {
			code, hdr, body, err := f1.req(w.method, w.path, admin, w.body)
			if err != nil {
				t.Fatal(err)
			}
			if code != http.StatusMethodNotAllowed || strings.TrimSpace(body) != `{"error":{"code":405,"message":"Write operations are not allowed"}}` {
				t.Errorf("%s %s on a Follower: %d %s", w.method, w.path, code, body)
			}
			if hdr.Get("X-Sower-Leader") != l1.url() {
				t.Errorf("%s %s: X-Sower-Leader = %q, want %q", w.method, w.path, hdr.Get("X-Sower-Leader"), l1.url())
			}
		}
	})

	t.Run("read-after-write with X-Sower-Min-Revision", func(t *testing.T) {
		rev, err := setSecret(l1, admin, "s3cret-1")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range followers {
			code, hdr, body, err := f.req(http.MethodGet, secretPath, admin, "", "X-Sower-Min-Revision", fmt.Sprint(rev))
			if err != nil || code != http.StatusOK || body != "s3cret-1" {
				t.Fatalf("read-after-write on %s: %d %q %v", f.name, code, body, err)
			}
			if got, _ := strconv.ParseInt(hdr.Get("X-Sower-Revision"), 10, 64); got < rev {
				t.Errorf("%s served at %d, asked for %d", f.name, got, rev)
			}
		}
		code, hdr, body, err := f1.req(http.MethodGet, secretPath, admin, "", "X-Sower-Min-Revision", fmt.Sprint(rev+1_000_000))
		if err != nil || code != http.StatusPreconditionFailed || hdr.Get("X-Sower-Revision") == "" {
			t.Errorf("a revision never reached: %d %q %v (revision %q)", code, body, err, hdr.Get("X-Sower-Revision"))
		}
	})

	t.Run("the feed sends none of seeds, enrollment tokens, CA keys; only Follower certificates may follow", func(t *testing.T) {
		keys, err := followSnapshot(h, f1, l1, "replication")
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			t.Fatal("the snapshot was empty")
		}
		for _, k := range keys {
			for _, bad := range []string{"/sower/seeds/", "/sower/enroll/", "/sower/pki/ca", "/sower/audit/", "/sower/cluster/leader"} {
				if strings.HasPrefix(k, bad) && !strings.HasPrefix(k, "/sower/pki/revoked/") {
					t.Errorf("the feed sent %s", k)
				}
			}
		}
		if _, err := followSnapshot(h, l1, l1, "node"); status.Code(errors.Unwrap(err)) != codes.PermissionDenied && status.Code(err) != codes.PermissionDenied {
			t.Errorf("a node certificate on the feed: %v, want PermissionDenied", err)
		}
		// The Follower's certificate and the quorum's etcd client port.
		cert := filepath.Join(f1.dir, "seed", "tls")
		tlsInfo, err := tls.LoadX509KeyPair(filepath.Join(cert, "replication.pem"), filepath.Join(cert, "replication-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		roots, _ := os.ReadFile(h.caFile())
		pool, _ := pki.ParseCertificatesPEM(roots)
		tc, _ := pki.ClientTLS(pool, "127.0.0.2", nil)
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tlsInfo, nil }
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + l1.etcdc}, TLS: tc, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err = cli.Get(ctx, "/sower/pki/ca")
			cancel()
			cli.Close()
		}
		if err == nil {
			t.Fatal("the etcd client port admits a real Follower's replication certificate: it must admit quorum members only")
		}
	})

	t.Run("a data-key rotation reaches the Followers through the feed", func(t *testing.T) {
		if _, err := h.sower(l1.url(), "keys", "rotate"); err != nil {
			t.Fatal(err)
		}
		// Set after the rotation: sealed under the new key version.
		rev, err := setSecret(l1, admin, "after-rotation")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range followers {
			code, _, body, err := f.req(http.MethodGet, secretPath, admin, "", "X-Sower-Min-Revision", fmt.Sprint(rev))
			if err != nil || code != http.StatusOK || body != "after-rotation" {
				t.Errorf("%s after the rotation: %d %q %v", f.name, code, body, err)
			}
		}
	})

	if !t.Run("kill -9 of the Leader: Follower reads never fail, every acknowledged write reaches every Follower", func(t *testing.T) {
		tokens := make([]string, len(followers))
		for i, f := range followers {
			if tokens[i], err = f.login("host/app", appKey); err != nil {
				t.Fatal(err)
			}
		}
		pids := map[string]int{}
		for _, f := range followers {
			pids[f.name] = f.cmd.Process.Pid
		}
		var reads, failed atomic.Int64
		var lastFail atomic.Value
		stop := make(chan struct{})
		var rwg sync.WaitGroup
		for i, f := range followers {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					code, _, body, err := f.req(http.MethodGet, secretPath, tokens[i], "")
					reads.Add(1)
					if err != nil || code != http.StatusOK {
						failed.Add(1)
						lastFail.Store(fmt.Sprintf("%s: %d %s %v", f.name, code, body, err))
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
		type acked struct {
			value string
			rev   int64
		}
		var mu sync.Mutex
		var acks []acked
		wstop := make(chan struct{})
		wdone := make(chan struct{})
		go func() {
			defer close(wdone)
			var l leaderInfo
			tok := ""
			for n := 0; ; {
				select {
				case <-wstop:
					return
				case <-time.After(30 * time.Millisecond):
				}
				if !l.Known {
					if l = h.leader(); !l.Known {
						continue
					}
					tok = ""
				}
				if tok == "" {
					if tok, err = h.authenticate(l.URL); err != nil {
						l, tok = leaderInfo{}, ""
						continue
					}
				}
				var target *proc
				for _, p := range []*proc{l1, s1, s2} {
					if p.url() == l.URL {
						target = p
					}
				}
				v := fmt.Sprintf("w-%d", n)
				rev, err := setSecret(target, tok, v)
				if err != nil {
					l = leaderInfo{}
					continue
				}
				mu.Lock()
				acks = append(acks, acked{v, rev})
				mu.Unlock()
				n++
			}
		}()
		count := func() int { mu.Lock(); defer mu.Unlock(); return len(acks) }
		waitFor(t, "10 writes on the first Leader", func() bool { return count() >= 10 })
		l1.kill9()
		before := count()
		newLeader := h.waitLeader(func(l leaderInfo) bool { return l.Name != "leader-1" })
		waitFor(t, "10 writes on the new Leader", func() bool { return count() >= before+10 })
		close(wstop)
		<-wdone
		close(stop)
		rwg.Wait()
		if n := failed.Load(); n > 0 {
			t.Errorf("%d of %d Follower reads failed during the failover; last: %v", n, reads.Load(), lastFail.Load())
		}
		t.Logf("%d reads on Followers, %d writes acknowledged (new Leader %s)", reads.Load(), count(), newLeader.Name)
		last := acks[len(acks)-1]
		for _, f := range followers {
			code, hdr, body, err := f.req(http.MethodGet, secretPath, admin, "", "X-Sower-Min-Revision", fmt.Sprint(last.rev))
			if err != nil || code != http.StatusOK || body != last.value {
				t.Errorf("%s after the failover: %d %q %v, want %q", f.name, code, body, err, last.value)
				continue
			}
			if got, _ := strconv.ParseInt(hdr.Get("X-Sower-Revision"), 10, 64); got < last.rev {
				t.Errorf("%s is at %d, below the last acknowledged write %d", f.name, got, last.rev)
			}
			if f.cmd == nil || f.cmd.Process.Pid != pids[f.name] {
				t.Errorf("%s was restarted", f.name)
			}
		}
	}) {
		t.FailNow()
	}
	leader := h.waitLeader(func(l leaderInfo) bool { return true })
	var lp *proc
	for _, p := range []*proc{s1, s2} {
		if p.url() == leader.URL {
			lp = p
		}
	}
	admin2, err := h.authenticate(lp.url())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a Follower restarted after compaction resyncs and answers as the Leader", func(t *testing.T) {
		f1.stop()
		var rev int64
		for i := range 20 {
			if rev, err = setSecret(lp, admin2, fmt.Sprintf("c-%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if code, body, err := h.loadPolicy(lp.url(), admin2, "- !variable extra\n- !host late\n"); err != nil || code != http.StatusCreated {
			t.Fatalf("load: %d %s %v", code, body, err)
		}
		rev, err = setSecret(lp, admin2, "c-last")
		if err != nil {
			t.Fatal(err)
		}
		if err := etcdctl(lp, "compact", fmt.Sprint(rev)); err != nil {
			t.Fatal(err)
		}
		if err := f1.start(); err != nil {
			t.Fatal(err)
		}
		fh, err := f1.health()
		if err != nil {
			t.Fatal(err)
		}
		for fh.Replication.Resyncs == 0 || fh.Replication.AppliedRevision < rev {
			time.Sleep(50 * time.Millisecond)
			if fh, err = f1.health(); err != nil {
				t.Fatal(err)
			}
		}
		for _, path := range []string{
			"/resources/" + account,
			"/resources/" + account + "/variable/db%2Fpassword?check=true&privilege=read&role=" + account + ":host:app",
			"/resources/" + account + "/variable/extra?check=true&privilege=read&role=" + account + ":host:app",
			"/roles/" + account + "/host/app",
			secretPath,
			secretPath + "?version=" + "20",
			"/secrets?variable_ids=" + account + ":variable:db/password",
		} {
			lc, _, lb, lerr := lp.req(http.MethodGet, path, admin2, "")
			fc, _, fb, ferr := f1.req(http.MethodGet, path, admin2, "", "X-Sower-Min-Revision", fmt.Sprint(rev))
			if lerr != nil || ferr != nil || lc != fc || lb != fb {
				i := 0
				for i < len(lb) && i < len(fb) && lb[i] == fb[i] {
					i++
				}
				from := max(0, i-120)
				t.Errorf("GET %s: Leader %d …%.300s %v; Follower %d …%.300s %v", path, lc, lb[from:], lerr, fc, fb[min(from, len(fb)):], ferr)
			}
		}
	})

	t.Run("a revoked Follower is cut off and refused", func(t *testing.T) {
		f3 := followers[2]
		listed := func() bool {
			code, _, body, err := lp.req(http.MethodGet, "/v1/followers", admin2, "")
			return err == nil && code == http.StatusOK && strings.Contains(body, "follower-3."+followerDomain)
		}
		waitFor(t, "follower-3 attached", listed)
		if _, err := h.sower(lp.url(), "seed", "revoke", seedIDs[2]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "follower-3 cut off", func() bool { return !listed() })
		rev, err := setSecret(lp, admin2, "after-revoke")
		if err != nil {
			t.Fatal(err)
		}
		// The other Followers get the write; the revoked one never does.
		code, _, body, err := followers[1].req(http.MethodGet, secretPath, admin2, "", "X-Sower-Min-Revision", fmt.Sprint(rev))
		if err != nil || code != http.StatusOK || body != "after-revoke" {
			t.Fatalf("follower-2: %d %q %v", code, body, err)
		}
		// Its node reports the lag of what it applied: it acknowledges
		// the write it just served.
		waitFor(t, "follower-2 acknowledges the write", func() bool {
			code, _, body, err := lp.req(http.MethodGet, "/v1/followers", admin2, "")
			var list sowerv1.ListFollowersResponse
			if err != nil || code != http.StatusOK || protojson.Unmarshal([]byte(body), &list) != nil {
				return false
			}
			for _, f := range list.GetFollowers() {
				if strings.Contains(f.GetName(), "follower-2."+followerDomain) && f.GetAppliedRevision() >= rev {
					return true
				}
			}
			return false
		})
		code, _, _, err = f3.req(http.MethodGet, secretPath, admin2, "", "X-Sower-Min-Revision", fmt.Sprint(rev))
		if err != nil || code != http.StatusPreconditionFailed {
			t.Errorf("the revoked follower-3 reached the write: %d %v", code, err)
		}
		if listed() {
			t.Error("follower-3 attached again after its seed was revoked")
		}
	})
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// etcdctl runs Debian's etcdctl against p's etcd member with p's
// certificate.
func etcdctl(p *proc, args ...string) error {
	if _, err := exec.LookPath("etcdctl"); err != nil {
		return errors.New("etcdctl is not installed (apt-get install etcd-client; make test does it)")
	}
	tlsDir := filepath.Join(p.dir, "tls")
	cmd := exec.Command("etcdctl", append([]string{"--endpoints", "https://" + p.etcdc,
		"--cacert", filepath.Join(tlsDir, "ca.pem"), "--cert", filepath.Join(tlsDir, "node.pem"), "--key", filepath.Join(tlsDir, "node-key.pem")}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("etcdctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// followSnapshot opens the feed on node's REST port with the client
// certificate of who (a Follower's replication certificate, or a node's
// own) and returns the keys of the snapshot it sends.
func followSnapshot(h *harness, who, node *proc, kind string) ([]string, error) {
	var certFile, keyFile string
	if kind == "replication" {
		certFile, keyFile = filepath.Join(who.dir, "seed", "tls", "replication.pem"), filepath.Join(who.dir, "seed", "tls", "replication-key.pem")
	} else {
		certFile, keyFile = filepath.Join(who.dir, "tls", "node.pem"), filepath.Join(who.dir, "tls", "node-key.pem")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	rootsPEM, err := os.ReadFile(h.caFile())
	if err != nil {
		return nil, err
	}
	roots, err := pki.ParseCertificatesPEM(rootsPEM)
	if err != nil {
		return nil, err
	}
	tc, err := pki.ClientTLS(roots, node.ip, nil)
	if err != nil {
		return nil, err
	}
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	conn, err := grpc.NewClient(node.http, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sowerv1.NewReplicationServiceClient(conn).Follow(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&sowerv1.FollowRequest{}); err != nil {
		if errors.Is(err, io.EOF) {
			// The server ended the stream first (a refusal): gRPC gives
			// its status to Recv, not to Send.
			_, err = st.Recv()
		}
		return nil, err
	}
	var keys []string
	for {
		m, err := st.Recv()
		if err != nil {
			return keys, err
		}
		if p := m.GetSnapshot(); p != nil {
			for _, kv := range p.GetKvs() {
				keys = append(keys, kv.GetKey())
			}
		}
		if m.GetSnapshotEnd() {
			return keys, nil
		}
	}
}
