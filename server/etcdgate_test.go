package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sowerproject/sower/internal/testnode"
	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
)

// TestEtcdPortsAdmitOnlyMembers is issue 11's first point on a real node:
// the certificates of a Follower seed (which any seed consumer gets) open
// neither etcd port; the node's own certificates open the port of their
// profile and only that one.
func TestEtcdPortsAdmitOnlyMembers(t *testing.T) {
	n := testnode.Start(t)
	seed := followerSeed(t, n)
	nodeFile := func(name string) []byte {
		raw, err := os.ReadFile(filepath.Join(n.DataDir, "tls", name))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	pair := func(certPEM, keyPEM []byte) tls.Certificate {
		t.Helper()
		is, err := pki.ParseIssued(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := is.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		return *tc
	}
	fromSeed := func(name string) tls.Certificate {
		c, _ := seed.ReadFile("tls/" + name + ".pem")
		k, _ := seed.ReadFile("tls/" + name + "-key.pem")
		return pair(c, k)
	}

	for name, tc := range map[string]struct {
		cert             tls.Certificate
		client, peerPort bool // admitted
	}{
		"Follower replication client":  {cert: fromSeed("replication")},
		"Follower server":              {cert: fromSeed("follower")},
		"member node certificate":      {cert: pair(nodeFile("node.pem"), nodeFile("node-key.pem")), client: true},
		"member etcd peer certificate": {cert: pair(nodeFile("etcd-peer.pem"), nodeFile("etcd-peer-key.pem")), peerPort: true},
	} {
		t.Run(name, func(t *testing.T) {
			err := etcdGet(t, n, tc.cert)
			if tc.client && err != nil {
				t.Errorf("client port refused a member's certificate: %v", err)
			}
			if !tc.client && err == nil {
				t.Errorf("client port admitted it: a Get of the cluster record succeeded")
			}
			code, body, err := peerGet(t, n, tc.cert, "/members")
			if tc.peerPort && (err != nil || code != http.StatusOK) {
				t.Errorf("peer port refused a member's peer certificate: %d %s %v", code, body, err)
			}
			if !tc.peerPort && err == nil {
				t.Errorf("peer port admitted it: GET /members answered %d %s", code, body)
			}
		})
	}
}

// etcdGet reads the cluster record through the etcd client port with cert.
func etcdGet(t *testing.T, n *testnode.Node, cert tls.Certificate) error {
	t.Helper()
	cfg := testutil.TLSConfig(t, n.DataDir)
	cfg.Certificates = []tls.Certificate{cert}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + n.EtcdClientAddr}, TLS: cfg, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/sower/meta/cluster")
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 {
		return fmt.Errorf("no cluster record")
	}
	return nil
}

// peerGet makes one HTTP request to the etcd peer port with cert.
func peerGet(t *testing.T, n *testnode.Node, cert tls.Certificate, path string) (int, string, error) {
	t.Helper()
	cfg := testutil.TLSConfig(t, n.DataDir)
	cfg.Certificates = []tls.Certificate{cert}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + n.EtcdPeerAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body), nil
}

// followerSeed has a host allowed seed-generation request a Follower seed.
func followerSeed(t *testing.T, n *testnode.Node) *archive.Seed {
	t.Helper()
	hc := testutil.HTTPClient(t, n.DataDir)
	admin := login(t, n, hc, "admin", n.AdminKey)
	code, body := admin.do(http.MethodPost, "/policies/acme/policy/root", "", []byte(consumerPolicy))
	if code != 201 {
		t.Fatalf("load policy: %d %s", code, body)
	}
	var loaded struct {
		CreatedRoles map[string]struct {
			APIKey string `json:"api_key"`
		} `json:"created_roles"`
	}
	json.Unmarshal(body, &loaded)
	follower := login(t, n, hc, "host/follower", loaded.CreatedRoles["acme:host:follower"].APIKey)
	id, _ := age.GenerateX25519Identity()
	form := url.Values{"follower_hostnames": {"f-0.followers.example"}, "recipient": {id.Recipient().String()}}
	code, sealed := follower.do(http.MethodPost, "/configuration/acme/seed/follower", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if code != 200 {
		t.Fatalf("seed: %d %s", code, sealed)
	}
	s, err := archive.Open(bytes.NewReader(sealed), n.Pin, id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
