package pki_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sowerproject/sower/pki"
)

// serveTLS accepts TLS connections on 127.0.0.1 until the listener closes,
// completing each handshake and echoing one byte. Its goroutines end before
// the test does.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				buf := make([]byte, 1)
				if _, err := c.Read(buf); err == nil {
					c.Write(buf)
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// dial connects, exchanges a byte, and returns the server's certificate
// serial or the error.
func dial(addr string, cfg *tls.Config) (string, error) {
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 30 * time.Second}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return "", err
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return "", err
	}
	return pki.FormatSerial(c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber), nil
}

// TestRenewerKeepsServing: a server whose certificate nears expiry renews it
// at two thirds of its life and keeps serving past the old certificate's
// expiry, with no restart. Time is the fake clock's; nothing sleeps.
func TestRenewerKeepsServing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const life = 3 * time.Hour
	req := pki.Request{CommonName: "leader-0", DNSNames: []string{leaderName}, Lifetime: life}
	first := f.issue(t, pki.ProfileLeaderServer, req)

	renewed := make(chan *pki.Issued, 1)
	r, err := pki.NewRenewer(pki.RenewerConfig{
		Certificate: first,
		Clock:       f.clock,
		Renew: func(ctx context.Context, cur *pki.Issued) (*pki.Issued, error) {
			return f.ca.Issue(ctx, pki.ProfileLeaderServer, req)
		},
		OnRenew: func(c *pki.Issued) { renewed <- c },
		OnError: func(err error) { t.Errorf("renewal failed: %v", err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, err := pki.ServerTLS(f.ca.Roots(), r, pki.WithTLSClock(f.clock))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, srvCfg)
	admin := f.issue(t, pki.ProfileAdminClient, pki.Request{CommonName: "alice"})
	cliCfg, _ := pki.ClientTLS(f.ca.Roots(), leaderName, static(t, admin), pki.WithTLSClock(f.clock))
	// A server that never renews, to show what the renewer prevents.
	staticCfg, _ := pki.ServerTLS(f.ca.Roots(), static(t, first), pki.WithTLSClock(f.clock))
	staticAddr := serveTLS(t, staticCfg)

	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	serial1, err := dial(addr, cliCfg)
	if err != nil || serial1 != pki.FormatSerial(first.Leaf().SerialNumber) {
		t.Fatalf("first connection: %s, %v", serial1, err)
	}
	if err := f.clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-renewed:
		t.Fatalf("renewed at once: %s", c.Leaf().NotBefore)
	default:
	}

	// Just before two thirds: still the first certificate.
	renewAt := pki.RenewalTime(first.Leaf())
	if d := renewAt.Sub(t0); d < 2*time.Hour-time.Minute || d > 2*time.Hour {
		t.Fatalf("renewal %s after issuance, want about two thirds of %s", d, life)
	}
	f.clock.Set(renewAt.Add(-time.Second))
	if s, err := dial(addr, cliCfg); err != nil || s != serial1 {
		t.Fatalf("before renewal time: %s, %v", s, err)
	}
	f.clock.Set(renewAt)
	second := <-renewed
	if second.Leaf().SerialNumber.Cmp(first.Leaf().SerialNumber) == 0 {
		t.Fatal("renewal returned the same certificate")
	}
	if r.Current() != second {
		t.Fatal("Current is not the renewed certificate")
	}
	serial2, err := dial(addr, cliCfg)
	if err != nil || serial2 != pki.FormatSerial(second.Leaf().SerialNumber) {
		t.Fatalf("after renewal: %s, %v (want %s)", serial2, err, pki.FormatSerial(second.Leaf().SerialNumber))
	}

	// Past the first certificate's expiry: the renewing server still serves,
	// the static one is refused as expired.
	if err := f.clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.clock.Set(first.Leaf().NotAfter.Add(time.Minute))
	if s, err := dial(addr, cliCfg); err != nil || s != serial2 {
		t.Fatalf("after the first certificate expired: %s, %v", s, err)
	}
	_, err = dial(staticAddr, cliCfg)
	wantErr(t, "static server", err, pki.ErrExpired, "expired")

	// And it goes on renewing.
	f.clock.Set(pki.RenewalTime(second.Leaf()).Add(time.Second))
	third := <-renewed
	if !third.Leaf().NotAfter.After(second.Leaf().NotAfter) {
		t.Fatal("third certificate does not extend the second")
	}
}

// TestRenewerRetries: a failed renewal is reported, the old certificate
// keeps serving, and the renewer tries again after a backoff.
func TestRenewerRetries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	req := pki.Request{CommonName: "follower-0", Lifetime: 3 * time.Hour}
	first := f.issue(t, pki.ProfileFollowerClient, req)
	// Start past the renewal time: the renewer must act at once.
	f.clock.Advance(2*time.Hour + time.Minute)

	attempts := make(chan int, 10)
	errs := make(chan error, 10)
	renewed := make(chan *pki.Issued, 1)
	n := 0
	r, err := pki.NewRenewer(pki.RenewerConfig{
		Certificate: first,
		Clock:       f.clock,
		Renew: func(ctx context.Context, cur *pki.Issued) (*pki.Issued, error) {
			n++
			attempts <- n
			if n < 3 {
				return nil, errors.New("leader unreachable")
			}
			return f.ca.Issue(ctx, pki.ProfileFollowerClient, req)
		},
		OnRenew: func(c *pki.Issued) { renewed <- c },
		OnError: func(err error) { errs <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(ctx) }()

	for want := 1; want <= 2; want++ {
		if got := <-attempts; got != want {
			t.Fatalf("attempt %d, want %d", got, want)
		}
		err := <-errs
		wantErr(t, "renewal", err, nil, "leader unreachable", "follower-0", "attempt")
		if r.Current() != first {
			t.Fatal("a failed renewal replaced the certificate")
		}
		if err := f.clock.WaitForTimers(ctx, 1); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Duration(want) * time.Second) // backoff: 1s, then 2s
	}
	if got := <-attempts; got != 3 {
		t.Fatalf("attempt %d, want 3", got)
	}
	if c := <-renewed; r.Current() != c || c == first {
		t.Fatal("successful retry not in use")
	}
	if err := r.Run(ctx); err == nil {
		t.Fatal("a second Run must be refused")
	}
	cancel()
	if err := <-runDone; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

func TestNewRenewerErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	crt := f.issue(t, pki.ProfileAdminClient, pki.Request{CommonName: "alice"})
	renew := func(context.Context, *pki.Issued) (*pki.Issued, error) { return nil, nil }
	tests := map[string]pki.RenewerConfig{
		"no certificate": {Renew: renew},
		"no renew func":  {Certificate: crt},
		"no key":         {Certificate: &pki.Issued{Chain: crt.Chain}, Renew: renew},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := pki.NewRenewer(cfg); err == nil {
				t.Fatal("no error")
			}
		})
	}
	at := pki.RenewalTime(crt.Leaf())
	if want := crt.Leaf().NotBefore.Add(crt.Leaf().NotAfter.Sub(crt.Leaf().NotBefore) * 2 / 3); at.Sub(want).Abs() > time.Second {
		t.Fatalf("RenewalTime %s, want %s", at, want)
	}
}
