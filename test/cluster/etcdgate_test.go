package clustertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"
)

// TestEtcdGate is issue 11's first point on real processes: the etcd ports
// admit current members only. A removed member's certificates are refused
// at once on both ports and its open watch is closed, and the removed node
// learns it was removed and stops; a new node enrolled under its name gets
// in with its new certificates while the old ones stay refused; a revoked
// member certificate's open watch is closed within seconds too.
func TestEtcdGate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	h := newHarness(t, "prod", 2)
	l1 := h.node("leader-1", "127.0.0.2")
	s1 := h.node("standby-1", "127.0.0.3")
	s2 := h.node("standby-2", "127.0.0.4")
	all := []string{"leader-1", "standby-1", "standby-2"}
	if err := l1.start("--cluster", "prod"); err != nil {
		t.Fatal(err)
	}
	tok, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := h.loadPolicy(l1.url(), tok, h.clusterPolicy(all...)); err != nil || code != http.StatusCreated {
		t.Fatalf("load the cluster policy: %d %s %v", code, body, err)
	}
	for _, p := range []*proc{s1, s2} {
		if err := h.join(l1.url(), p); err != nil {
			t.Fatal(err)
		}
	}
	h.waitVoters(l1.url(), all...)

	// The certificates are read now, as an attacker holding a copy would.
	s1Node, s1Peer := certOf(t, s1, "node"), certOf(t, s1, "etcd-peer")
	s2Node := certOf(t, s2, "node")
	writer := h.etcdClient(t, l1, certOf(t, l1, "node"))

	t.Run("a removed member loses etcd access at once and its watch ends", func(t *testing.T) {
		w := h.openWatch(t, l1, s1Node, writer)
		if out, err := h.sower(l1.url(), "cluster", "remove", "standby-1"); err != nil {
			t.Fatal(out, err)
		}
		w.waitClosed(t)
		for _, p := range []*proc{l1, s2} {
			if err := h.etcdGet(t, p, s1Node); err == nil {
				t.Errorf("%s's client port admits the removed member's node certificate", p.name)
			}
			if code, err := h.peerGet(t, p, s1Peer, "/members"); err == nil {
				t.Errorf("%s's peer port admits the removed member's peer certificate: GET /members answered %d", p.name, code)
			}
		}
		// The removed node is told so by the peers' gates, as etcd would
		// tell it, and stops.
		if code := s1.exited(); code == 0 || !strings.Contains(s1.tail(), "removed from the cluster") {
			t.Fatalf("the removed node: exit %d, log %s; want it to stop saying it was removed", code, s1.tail())
		}
	})

	t.Run("the old certificates of a name re-enrolled stay refused", func(t *testing.T) {
		// A new node enrolls under the removed member's name: the gates
		// admit the certificates of its new seed, and the removed
		// member's (still unrevoked) ones stay refused.
		l := h.waitLeader(func(leaderInfo) bool { return true })
		if err := h.join(l.URL, s1, "--reenroll", "--yes"); err != nil {
			t.Fatal(err)
		}
		h.waitVoters(l.URL, all...)
		newNode, newPeer := certOf(t, s1, "node"), certOf(t, s1, "etcd-peer")
		if newNode.Leaf.SerialNumber.Cmp(s1Node.Leaf.SerialNumber) == 0 {
			t.Fatal("the re-enrolled node kept its old node certificate")
		}
		for _, p := range []*proc{l1, s2} {
			if err := h.etcdGet(t, p, newNode); err != nil {
				t.Errorf("%s's client port refuses the re-enrolled member's new node certificate: %v", p.name, err)
			}
			if code, err := h.peerGet(t, p, newPeer, "/members"); err != nil || code != http.StatusOK {
				t.Errorf("%s's peer port refuses the re-enrolled member's new peer certificate: %d %v", p.name, code, err)
			}
			if err := h.etcdGet(t, p, s1Node); err == nil {
				t.Errorf("%s's client port admits the old node certificate of the re-enrolled name", p.name)
			}
			if code, err := h.peerGet(t, p, s1Peer, "/members"); err == nil {
				t.Errorf("%s's peer port admits the old peer certificate of the re-enrolled name: GET /members answered %d", p.name, code)
			}
		}
	})

	t.Run("a revoked member certificate's open watch ends", func(t *testing.T) {
		w := h.openWatch(t, l1, s2Node, writer)
		serial := s2Node.Leaf.SerialNumber.Text(16)
		// Removing standby-1 may have moved the Leader role (raft
		// leadership sat on standby-1): revoke through whoever leads.
		l := h.waitLeader(func(leaderInfo) bool { return true })
		if out, err := h.sower(l.URL, "ca", "revoke", serial); err != nil {
			t.Fatal(out, err)
		}
		w.waitClosed(t)
		if err := h.etcdGet(t, l1, s2Node); err == nil {
			t.Error("the client port admits a revoked member certificate")
		}
	})
}

// certOf reads a node's certificate and key (tls/<name>.pem).
func certOf(t *testing.T, p *proc, name string) tls.Certificate {
	t.Helper()
	dir := filepath.Join(p.dir, "tls")
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf == nil {
		block, _ := pem.Decode(mustRead(t, filepath.Join(dir, name+".pem")))
		if c.Leaf, err = x509.ParseCertificate(block.Bytes); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (h *harness) tlsWith(t *testing.T, cert tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mustRead(t, h.caFile()))
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// etcdClient is a clientv3 client of p's etcd client port with cert.
func (h *harness) etcdClient(t *testing.T, p *proc, cert tls.Certificate) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + p.etcdc}, TLS: h.tlsWith(t, cert), DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// etcdGet reads a key through p's client port with cert.
func (h *harness) etcdGet(t *testing.T, p *proc, cert tls.Certificate) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + p.etcdc}, TLS: h.tlsWith(t, cert), DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "/sower/meta/cluster")
	return err
}

// peerGet makes one request to p's etcd peer port with cert.
func (h *harness) peerGet(t *testing.T, p *proc, cert tls.Certificate, path string) (int, error) {
	tr := &http.Transport{TLSClientConfig: h.tlsWith(t, cert), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + p.etcdp + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// watch is an etcd watch opened through a node's client port.
type watch struct {
	cli *clientv3.Client
	wc  clientv3.WatchChan
}

// openWatch opens a watch on p with cert and proves it receives a write.
func (h *harness) openWatch(t *testing.T, p *proc, cert tls.Certificate, writer *clientv3.Client) *watch {
	t.Helper()
	cli := h.etcdClient(t, p, cert)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	key := "/test/gate/" + t.Name()
	w := &watch{cli: cli, wc: cli.Watch(ctx, key, clientv3.WithCreatedNotify())}
	select {
	case wr := <-w.wc:
		if !wr.Created {
			t.Fatalf("watch: %+v", wr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch was not created within 10s")
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if _, err := writer.Put(pctx, key, "before"); err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-w.wc:
		if len(wr.Events) != 1 || string(wr.Events[0].Kv.Value) != "before" {
			t.Fatalf("watch event: %+v", wr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not deliver a write within 10s")
	}
	return w
}

// waitClosed waits, at most ten seconds, until the watch's connection is
// gone and cannot be made again.
func (w *watch) waitClosed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	conn := w.cli.ActiveConnection()
	for conn.GetState() == connectivity.Ready {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		changed := conn.WaitForStateChange(ctx, connectivity.Ready)
		cancel()
		if !changed {
			t.Fatal(errors.New("the watch's connection is still open 10s later"))
		}
	}
	// And it cannot be opened again.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := w.cli.Get(ctx, "/sower/meta/cluster"); err == nil {
		t.Fatal("the watch's client reconnected and reads again")
	}
}
