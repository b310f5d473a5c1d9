package clustertest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netLab is a bridge in the test's network namespace with one network
// namespace per node, so that a node can be cut off from the others while
// the test still reaches every node.
type netLab struct {
	tb     testing.TB
	prefix string // names of links and namespaces
	subnet string // first three octets
	bridge string
}

// newNetLab creates the bridge, or skips the test where network
// namespaces cannot be made (not root, no CAP_NET_ADMIN).
func newNetLab(tb testing.TB) *netLab {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("a partition needs network namespaces: run as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("a partition needs iproute2's ip")
	}
	id := os.Getpid() % 200
	l := &netLab{tb: tb, prefix: fmt.Sprintf("sw%d", id), subnet: fmt.Sprintf("10.251.%d", id)}
	l.bridge = l.prefix + "br"
	if err := l.run("ip", "link", "add", l.bridge, "type", "bridge"); err != nil {
		tb.Skipf("cannot create network devices here: %v", err)
	}
	tb.Cleanup(func() { l.run("ip", "link", "del", l.bridge) })
	l.must("ip", "addr", "add", l.subnet+".1/24", "dev", l.bridge)
	l.must("ip", "link", "set", l.bridge, "up")
	return l
}

func (l *netLab) run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (l *netLab) must(args ...string) {
	l.tb.Helper()
	if err := l.run(args...); err != nil {
		l.tb.Fatal(err)
	}
}

// host makes namespace n (1-based) with address subnet.(n+1) on the bridge.
func (l *netLab) host(n int) (ns, ip string) {
	l.tb.Helper()
	ns = fmt.Sprintf("%sn%d", l.prefix, n)
	ip = fmt.Sprintf("%s.%d", l.subnet, n+1)
	veth := fmt.Sprintf("%sv%d", l.prefix, n)
	l.must("ip", "netns", "add", ns)
	l.tb.Cleanup(func() { l.run("ip", "netns", "del", ns) })
	l.must("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.tb.Cleanup(func() { l.run("ip", "link", "del", veth) })
	l.must("ip", "link", "set", veth, "master", l.bridge, "up")
	l.must("ip", "netns", "exec", ns, "ip", "addr", "add", ip+"/24", "dev", "eth0")
	l.must("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
	l.must("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	return ns, ip
}

// cut drops, inside ns, every packet to the given addresses: no
// connection between them survives, while the bridge's own address (the
// test) still reaches ns.
func (l *netLab) cut(ns string, ips ...string) {
	for _, ip := range ips {
		l.must("ip", "netns", "exec", ns, "ip", "route", "add", "blackhole", ip+"/32")
	}
}

func (l *netLab) heal(ns string, ips ...string) {
	for _, ip := range ips {
		l.must("ip", "netns", "exec", ns, "ip", "route", "del", "blackhole", ip+"/32")
	}
}

// nodeIn declares a node inside a namespace; ports are fixed, each
// namespace having its own.
func (h *harness) nodeIn(name, ns, ip string) *proc {
	p := &proc{h: h, name: name, ip: ip, netns: ns, dir: filepath.Join(h.dir, name),
		grpc: ip + ":7443", http: ip + ":8443", etcdc: ip + ":2379", etcdp: ip + ":2380", logPath: filepath.Join(h.dir, name+".log")}
	h.mu.Lock()
	h.nodes[name] = p
	h.mu.Unlock()
	return p
}

// TestPartition cuts the Leader off from both Standbys: the majority elects
// a new Leader, the cut-off one commits nothing, and once the network heals
// it is a Standby that refuses writes, naming the new Leader.
func TestPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	lab := newNetLab(t)
	h := newHarness(t, "prod", 2)
	var ps []*proc
	var ips []string
	for i, name := range []string{"leader-1", "standby-1", "standby-2"} {
		ns, ip := lab.host(i + 1)
		ps = append(ps, h.nodeIn(name, ns, ip))
		ips = append(ips, ip)
	}
	l1 := ps[0]
	if err := l1.start("--cluster", "prod"); err != nil {
		t.Fatal(err)
	}
	tok, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := h.loadPolicy(l1.url(), tok, h.clusterPolicy("leader-1", "standby-1", "standby-2")); err != nil || code != http.StatusCreated {
		t.Fatalf("load the cluster policy: %d %s %v", code, body, err)
	}
	for _, p := range ps[1:] {
		if err := h.join(l1.url(), p); err != nil {
			t.Fatal(err)
		}
	}
	h.waitVoters(l1.url(), "leader-1", "standby-1", "standby-2")
	if l := h.leader(); l.Name != "leader-1" {
		t.Fatalf("Leader = %q, want leader-1", l.Name)
	}

	lab.cut(l1.netns, ips[1], ips[2])
	// The majority elects a new Leader (asked on the majority's side).
	var newLeader leaderInfo
	for range 600 {
		for _, p := range ps[1:] {
			var l leaderInfo
			if h.getJSON(p.url()+"/v1/cluster/leader", &l) == nil && l.Known && l.Name != "leader-1" {
				newLeader = l
			}
		}
		if newLeader.Known {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !newLeader.Known {
		t.Fatal("the majority elected no Leader within a minute")
	}
	ntok, err := h.authenticate(newLeader.URL)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := h.loadPolicy(newLeader.URL, ntok, "- !variable after-partition\n"); err != nil || code != http.StatusCreated {
		t.Fatalf("write on the new Leader: %d %s %v", code, body, err)
	}

	// The cut-off node stops accepting writes: none it answers commits.
	code, body, err := h.loadPolicy(l1.url(), tok, "- !variable cut-off\n")
	if err == nil && code == http.StatusCreated {
		t.Fatalf("the cut-off Leader accepted a write: %s", body)
	}
	t.Logf("write on the cut-off Leader: %d %s %v", code, strings.TrimSpace(body), err)

	lab.heal(l1.netns, ips[1], ips[2])
	healed := false
	for range 600 {
		var l leaderInfo
		if h.getJSON(l1.url()+"/v1/cluster/leader", &l) == nil && l.Known && l.Name == newLeader.Name {
			healed = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !healed {
		t.Fatalf("the healed old Leader never learned that %s leads", newLeader.Name)
	}
	code, body, err = h.loadPolicy(l1.url(), tok, "- !variable healed\n")
	if err != nil || code != http.StatusUnprocessableEntity || !strings.Contains(body, "the leader is "+newLeader.Name) {
		t.Fatalf("write on the healed old Leader: %d %s %v; want 422 naming %s", code, body, err, newLeader.Name)
	}
	if missing := h.missingVariables(newLeader.URL, []string{"cut-off", "healed", "after-partition"}); len(missing) != 2 || missing[0] != "cut-off" || missing[1] != "healed" {
		t.Fatalf("missing variables = %v, want exactly the cut-off Leader's two", missing)
	}
	h.waitVoters(newLeader.URL, "leader-1", "standby-1", "standby-2")
}
