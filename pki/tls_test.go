package pki_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/pki/pkitest"
)

const leaderName = "leader.sower.test"

// TestClientRefusesServer covers the acceptance list from the client's side:
// each refusal wraps the sentinel and its message says which check failed.
func TestClientRefusesServer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := newFixture(t) // another cluster's CA

	leaderReq := pki.Request{CommonName: "leader-0", DNSNames: []string{leaderName}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	good := f.issue(t, pki.ProfileLeaderServer, leaderReq)
	shortReq := leaderReq
	shortReq.Lifetime = time.Hour
	short := f.issue(t, pki.ProfileLeaderServer, shortReq)
	foreign := other.issue(t, pki.ProfileLeaderServer, leaderReq)
	follower := f.issue(t, pki.ProfileFollowerServer, pki.Request{CommonName: "follower-0", DNSNames: []string{leaderName}})
	clientOnly := f.issue(t, pki.ProfileFollowerClient, pki.Request{CommonName: "follower-0"})
	admin := f.issue(t, pki.ProfileAdminClient, pki.Request{CommonName: "alice"})

	revoked := pki.NewRevokedSet(good.Leaf().SerialNumber)
	later := pkitest.NewClock(t0.Add(2 * time.Hour)) // short has expired by then
	atT0 := pki.WithTLSClock(f.clock)

	type clientKind int
	const (
		byCA clientKind = iota
		byPin
		insecure
	)
	tests := map[string]struct {
		server   *pki.Issued
		kind     clientKind
		pin      pki.Pin
		name     string
		opts     []pki.TLSOption
		sentinel error
		says     string
	}{
		"trusted CA":           {server: good, kind: byCA, name: leaderName},
		"trusted CA by IP":     {server: good, kind: byCA, name: "127.0.0.1"},
		"right pin":            {server: good, kind: byPin, pin: f.ca.Pin(), name: leaderName},
		"wrong pin":            {server: good, kind: byPin, pin: other.ca.Pin(), name: leaderName, sentinel: pki.ErrPinMismatch, says: "wrong CA pin"},
		"other CA, pinned":     {server: foreign, kind: byPin, pin: f.ca.Pin(), name: leaderName, sentinel: pki.ErrPinMismatch, says: "wrong CA pin"},
		"other CA":             {server: foreign, kind: byCA, name: leaderName, sentinel: pki.ErrUnknownCA, says: "unknown CA"},
		"expired":              {server: short, kind: byCA, name: leaderName, opts: []pki.TLSOption{pki.WithTLSClock(later)}, sentinel: pki.ErrExpired, says: "expired"},
		"expired, pinned":      {server: short, kind: byPin, pin: f.ca.Pin(), name: leaderName, opts: []pki.TLSOption{pki.WithTLSClock(later)}, sentinel: pki.ErrExpired, says: "expired"},
		"revoked":              {server: good, kind: byCA, name: leaderName, opts: []pki.TLSOption{pki.WithRevocations(revoked)}, sentinel: pki.ErrRevoked, says: "revoked"},
		"wrong SAN":            {server: good, kind: byCA, name: "evil.sower.test", sentinel: pki.ErrNameMismatch, says: "wrong SAN"},
		"wrong SAN, pinned":    {server: good, kind: byPin, pin: f.ca.Pin(), name: "evil.sower.test", sentinel: pki.ErrNameMismatch, says: "name mismatch"},
		"wrong IP SAN":         {server: good, kind: byCA, name: "127.0.0.2", sentinel: pki.ErrNameMismatch, says: "127.0.0.2"},
		"client-only cert":     {server: clientOnly, kind: byCA, name: "follower-0", sentinel: pki.ErrWrongUsage, says: "not valid for this use"},
		"profile not accepted": {server: follower, kind: byCA, name: leaderName, opts: []pki.TLSOption{pki.WithPeerProfiles(pki.ProfileLeaderServer)}, sentinel: pki.ErrWrongProfile, says: "follower-server"},
		"profile accepted":     {server: good, kind: byCA, name: leaderName, opts: []pki.TLSOption{pki.WithPeerProfiles(pki.ProfileLeaderServer)}},
		"insecure skip":        {server: foreign, kind: insecure},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, err := pki.ServerTLS(f.ca.Roots(), static(t, tc.server), atT0, pki.WithOptionalClientCert())
			if err != nil {
				t.Fatal(err)
			}
			opts := append([]pki.TLSOption{atT0}, tc.opts...)
			var cli *tls.Config
			switch tc.kind {
			case byCA:
				cli, err = pki.ClientTLS(f.ca.Roots(), tc.name, static(t, admin), opts...)
			case byPin:
				cli, err = pki.PinnedClientTLS(tc.pin, tc.name, nil, opts...)
			case insecure:
				cli = pki.InsecureClientTLS(nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			cliErr, srvErr, seen := handshake(t, srv, cli)
			if tc.sentinel == nil {
				wantErr(t, "client", cliErr, nil)
				wantErr(t, "server", srvErr, nil)
				if !seen.Equal(tc.server.Leaf()) {
					t.Fatalf("client saw %s, want %s", seen.Subject, tc.server.Leaf().Subject)
				}
				return
			}
			wantErr(t, "client", cliErr, tc.sentinel, tc.says)
			if srvErr == nil {
				t.Fatal("server completed a handshake the client refused")
			}
		})
	}
}

// TestServerRefusesClient: mutual TLS from the server's side. Expiry and
// unknown CA are refused by crypto/tls with specific alerts the client
// sees; revocation and profile by this package.
func TestServerRefusesClient(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := newFixture(t)
	server := f.issue(t, pki.ProfileLeaderServer, pki.Request{CommonName: "leader-0", DNSNames: []string{leaderName}})
	replica := f.issue(t, pki.ProfileFollowerClient, pki.Request{CommonName: "follower-0"})
	short := f.issue(t, pki.ProfileFollowerClient, pki.Request{CommonName: "follower-1", Lifetime: time.Hour})
	foreign := other.issue(t, pki.ProfileFollowerClient, pki.Request{CommonName: "follower-0"})
	serverOnly := f.issue(t, pki.ProfileFollowerServer, pki.Request{CommonName: "follower-2", DNSNames: []string{"f.sower.test"}})
	revokedCert := f.issue(t, pki.ProfileFollowerClient, pki.Request{CommonName: "follower-3"})
	revoked := pki.NewRevokedSet(revokedCert.Leaf().SerialNumber)
	later := pkitest.NewClock(t0.Add(2 * time.Hour))

	tests := map[string]struct {
		client    *pki.Issued // nil: no client certificate
		srvClock  pki.Clock
		srvOpts   []pki.TLSOption
		srvSays   []string
		srvIs     error
		clientSay string
	}{
		"valid client":         {client: replica},
		"valid, still at 2h":   {client: replica, srvClock: later},
		"no client cert":       {client: nil, srvSays: []string{"didn't provide a certificate"}, clientSay: "certificate required"},
		"no cert, optional":    {client: nil, srvOpts: []pki.TLSOption{pki.WithOptionalClientCert()}},
		"expired client":       {client: short, srvClock: later, srvSays: []string{"expired"}, clientSay: "expired certificate"},
		"other CA":             {client: foreign, srvSays: []string{"unknown authority"}, clientSay: "unknown certificate authority"},
		"revoked client":       {client: revokedCert, srvIs: pki.ErrRevoked, srvSays: []string{"revoked", "follower-3"}, clientSay: "bad certificate"},
		"server-only cert":     {client: serverOnly, srvSays: []string{"incompatible key usage"}, clientSay: "bad certificate"},
		"profile not accepted": {client: replica, srvOpts: []pki.TLSOption{pki.WithPeerProfiles(pki.ProfileEtcdPeer)}, srvIs: pki.ErrWrongProfile, srvSays: []string{"etcd-peer"}, clientSay: "bad certificate"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clock := tc.srvClock
			if clock == nil {
				clock = f.clock
			}
			opts := append([]pki.TLSOption{pki.WithTLSClock(clock), pki.WithRevocations(revoked)}, tc.srvOpts...)
			srv, err := pki.ServerTLS(f.ca.Roots(), static(t, server), opts...)
			if err != nil {
				t.Fatal(err)
			}
			var src pki.CertificateSource
			if tc.client != nil {
				src = static(t, tc.client)
			}
			cli, err := pki.ClientTLS(f.ca.Roots(), leaderName, src, pki.WithTLSClock(f.clock))
			if err != nil {
				t.Fatal(err)
			}
			cliErr, srvErr, _ := handshake(t, srv, cli)
			if tc.clientSay == "" {
				wantErr(t, "client", cliErr, nil)
				wantErr(t, "server", srvErr, nil)
				return
			}
			wantErr(t, "server", srvErr, tc.srvIs, tc.srvSays...)
			wantErr(t, "client", cliErr, nil, tc.clientSay)
		})
	}
}

// TestPlaintextRefused: a TLS listener built from ServerTLS does not serve
// plaintext, whether raw bytes or HTTP.
func TestPlaintextRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	server := f.issue(t, pki.ProfileLeaderServer, pki.Request{CommonName: "leader-0", DNSNames: []string{leaderName}})
	srvCfg, err := pki.ServerTLS(f.ca.Roots(), static(t, server), pki.WithTLSClock(f.clock))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("raw TCP", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		srvDone := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				srvDone <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			srvDone <- tls.Server(c, srvCfg).Handshake()
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write([]byte("PING secret-request\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		srvErr := <-srvDone
		wantErr(t, "server", srvErr, nil, "does not look like a TLS handshake")
		reply, _ := io.ReadAll(conn)
		if strings.Contains(string(reply), "PING") {
			t.Fatalf("server echoed plaintext: %q", reply)
		}
	})

	t.Run("HTTP", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "secret")
		}))
		srv.TLS = srvCfg
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		defer srv.Close()
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return // the server hung up: refused
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "secret") {
			t.Fatalf("plaintext request served: %d %q", resp.StatusCode, body)
		}
	})
}

func TestTLSConfigErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	crt := f.issue(t, pki.ProfileAdminClient, pki.Request{CommonName: "alice"})
	csrOnly := &pki.Issued{Chain: crt.Chain}
	tests := map[string]func() error{
		"server without certificate": func() error { _, err := pki.ServerTLS(f.ca.Roots(), nil); return err },
		"server without roots":       func() error { _, err := pki.ServerTLS(nil, static(t, crt)); return err },
		"client without roots":       func() error { _, err := pki.ClientTLS(nil, "x", nil); return err },
		"empty pin":                  func() error { _, err := pki.PinnedClientTLS(pki.Pin{}, "x", nil); return err },
		"static without key":         func() error { _, err := pki.StaticCertificate(csrOnly); return err },
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			if err := fn(); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestNoServerName: a client that dials by IP without naming the server
// cannot check the server's SAN, and says so instead of accepting.
func TestNoServerName(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	server := f.issue(t, pki.ProfileLeaderServer, pki.Request{CommonName: "leader-0", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	srv, _ := pki.ServerTLS(f.ca.Roots(), static(t, server), pki.WithTLSClock(f.clock), pki.WithOptionalClientCert())
	cli, _ := pki.ClientTLS(f.ca.Roots(), "", nil, pki.WithTLSClock(f.clock))
	cliErr, _, _ := handshake(t, srv, cli)
	if cliErr == nil || !strings.Contains(cliErr.Error(), "no server name") {
		t.Fatalf("got %v, want a 'no server name' refusal", cliErr)
	}
	if errors.Is(cliErr, pki.ErrUnknownCA) {
		t.Fatal("misclassified")
	}
}

// TestRevokedOnResumption: a client revoked after its first connection is
// refused on its next handshake even when that handshake resumes the TLS
// session instead of presenting the certificate again.
func TestRevokedOnResumption(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	server := f.issue(t, pki.ProfileLeaderServer, pki.Request{CommonName: "leader-0", DNSNames: []string{leaderName}})
	client := f.issue(t, pki.ProfileFollowerClient, pki.Request{CommonName: "follower-0"})
	revoked := pki.NewRevokedSet()
	srv, err := pki.ServerTLS(f.ca.Roots(), static(t, server), pki.WithTLSClock(f.clock), pki.WithRevocations(revoked))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := pki.ClientTLS(f.ca.Roots(), leaderName, static(t, client), pki.WithTLSClock(f.clock))
	if err != nil {
		t.Fatal(err)
	}
	cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	for i, wantResume := range []bool{false, true} {
		cliErr, srvErr, cs := handshakeState(t, srv, cli)
		wantErr(t, "client", cliErr, nil)
		wantErr(t, "server", srvErr, nil)
		if cs.DidResume != wantResume {
			t.Fatalf("connection %d: resumed %v, want %v", i, cs.DidResume, wantResume)
		}
	}
	revoked.Add(client.Leaf().SerialNumber)
	cliErr, srvErr, _ := handshakeState(t, srv, cli)
	wantErr(t, "server", srvErr, pki.ErrRevoked, "revoked", "follower-0")
	wantErr(t, "client", cliErr, nil, "bad certificate")
}
