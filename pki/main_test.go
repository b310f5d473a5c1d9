package pki_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/pki/pkitest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started by glog's init, linked in through smallstep's dependencies;
		// it lives for the process and is not ours to stop.
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"))
}

// t0 is far from the machine's real date on purpose: every check in these
// tests must use the injected clock.
var t0 = time.Date(2031, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	clock   *pkitest.Clock
	store   *pkitest.MemStore
	keyring *pki.Keyring
	ca      *pki.CA
}

func newFixture(t testing.TB, opts ...pki.Option) *fixture {
	t.Helper()
	f := &fixture{clock: pkitest.NewClock(t0), store: pkitest.NewMemStore()}
	var err error
	if f.keyring, err = pki.GenerateKeyring(); err != nil {
		t.Fatal(err)
	}
	opts = append([]pki.Option{pki.WithClock(f.clock)}, opts...)
	if f.ca, err = pki.Bootstrap(context.Background(), f.config(), opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ca.Close() })
	return f
}

func (f *fixture) config() pki.Config { return pki.Config{Store: f.store, Sealer: f.keyring} }

func (f *fixture) issue(t testing.TB, profile pki.ProfileName, req pki.Request) *pki.Issued {
	t.Helper()
	c, err := f.ca.Issue(context.Background(), profile, req)
	if err != nil {
		t.Fatalf("issue %s: %v", profile, err)
	}
	return c
}

func static(t testing.TB, c *pki.Issued) pki.CertificateSource {
	t.Helper()
	s, err := pki.StaticCertificate(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handshake runs a real TLS handshake over TCP on 127.0.0.1 and exchanges
// one byte each way, so that a server's refusal of the client certificate
// (which TLS 1.3 reports after the client's handshake returns) surfaces on
// the client too. It returns both sides' errors and, on success, the
// certificate the client saw.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (cliErr, srvErr error, seen *x509.Certificate) {
	t.Helper()
	cliErr, srvErr, cs := handshakeState(t, srvCfg, cliCfg)
	if cliErr == nil {
		seen = cs.PeerCertificates[0]
	}
	return cliErr, srvErr, seen
}

// handshakeState is handshake returning the client's connection state.
func handshakeState(t *testing.T, srvCfg, cliCfg *tls.Config) (cliErr, srvErr error, cs tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The deadline only keeps a broken test from hanging; nothing waits on it.
	deadline := time.Now().Add(30 * time.Second)
	srvDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvDone <- err
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		tc := tls.Server(c, srvCfg)
		if err := tc.Handshake(); err != nil {
			// Let the client read the alert: closing a socket with unread
			// client data would reset the connection and lose it.
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, c)
			srvDone <- err
			return
		}
		buf := make([]byte, 1)
		if _, err := io.ReadFull(tc, buf); err != nil {
			srvDone <- err
			return
		}
		_, err = tc.Write(buf)
		srvDone <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(deadline)
	tc := tls.Client(conn, cliCfg)
	cliErr = tc.Handshake()
	if cliErr == nil {
		if _, cliErr = tc.Write([]byte{42}); cliErr == nil {
			buf := make([]byte, 1)
			_, cliErr = io.ReadFull(tc, buf)
		}
	}
	cs = tc.ConnectionState()
	tc.Close()
	srvErr = <-srvDone
	return cliErr, srvErr, cs
}

func wantErr(t *testing.T, side string, err, sentinel error, words ...string) {
	t.Helper()
	if sentinel == nil && len(words) == 0 {
		if err != nil {
			t.Fatalf("%s: unexpected error: %v", side, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s: no error, want %v %q", side, sentinel, words)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("%s: error %q does not wrap %q", side, err, sentinel)
	}
	for _, w := range words {
		if !containsFold(err.Error(), w) {
			t.Fatalf("%s: error %q does not say %q", side, err, w)
		}
	}
}
