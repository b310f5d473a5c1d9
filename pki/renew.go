package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// RenewFunc obtains a new certificate to replace current: on a Leader,
// CA.Issue with the node's request; on a Follower, a CSR (NewCSR) sent to
// the Leader, the result carrying the new key. It must return a chain with
// its private key.
type RenewFunc func(ctx context.Context, current *Issued) (*Issued, error)

// RenewerConfig is what NewRenewer needs.
type RenewerConfig struct {
	// Certificate is the node's current certificate with its key; required.
	Certificate *Issued
	// Renew obtains the next certificate; required.
	Renew RenewFunc
	// Clock defaults to the system clock; tests inject pkitest.Clock.
	Clock Clock
	// OnRenew, if set, is called after a new certificate is in use (to
	// write it to the files etcd reads, or to log its expiry).
	OnRenew func(*Issued)
	// OnError, if set, is called with each failed renewal attempt; the
	// Renewer keeps retrying with backoff while the old certificate serves.
	OnError func(error)
}

// Renewer holds a node's certificate, serves it to TLS through
// GetCertificate and GetClientCertificate, and replaces it at about two
// thirds of its lifetime, without a restart: handshakes after the swap use
// the new certificate, open connections keep theirs.
type Renewer struct {
	cfg     RenewerConfig
	cur     atomic.Pointer[renewerCert]
	running atomic.Bool
}

type renewerCert struct {
	issued *Issued
	tls    *tls.Certificate
}

// Retry delays after a failed renewal: doubling from the first to the last.
const (
	renewRetryFirst = time.Second
	renewRetryMax   = 5 * time.Minute
)

// NewRenewer checks the config and starts serving cfg.Certificate. Call Run
// to renew it.
func NewRenewer(cfg RenewerConfig) (*Renewer, error) {
	switch {
	case cfg.Certificate == nil:
		return nil, errors.New("pki: RenewerConfig.Certificate is required")
	case cfg.Renew == nil:
		return nil, errors.New("pki: RenewerConfig.Renew is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock()
	}
	r := &Renewer{cfg: cfg}
	if err := r.swap(cfg.Certificate); err != nil {
		return nil, err
	}
	return r, nil
}

// RenewalTime is when a certificate should be renewed: two thirds of the
// way from NotBefore to NotAfter.
func RenewalTime(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(life / 3 * 2)
}

func (r *Renewer) swap(next *Issued) error {
	tc, err := next.TLSCertificate()
	if err != nil {
		return err
	}
	r.cur.Store(&renewerCert{issued: next, tls: tc})
	return nil
}

// Current returns the certificate being served.
func (r *Renewer) Current() *Issued { return r.cur.Load().issued }

// GetCertificate implements CertificateSource, for tls.Config.GetCertificate.
func (r *Renewer) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load().tls, nil
}

// GetClientCertificate implements CertificateSource, for
// tls.Config.GetClientCertificate.
func (r *Renewer) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.cur.Load().tls, nil
}

// Run renews the certificate until ctx is done, then returns nil. It blocks
// and owns its only goroutine (the caller's). A failed renewal is reported to
// OnError and retried with backoff; the current certificate keeps serving.
func (r *Renewer) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("pki: Renewer.Run is already running")
	}
	defer r.running.Store(false)
	clock := r.cfg.Clock
	failures := 0
	for {
		cur := r.cur.Load().issued
		wait := RenewalTime(cur.Leaf()).Sub(clock.Now())
		if failures > 0 {
			wait = min(renewRetryFirst<<min(failures-1, 20), renewRetryMax)
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-clock.After(wait):
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		next, err := r.cfg.Renew(ctx, cur)
		if err == nil && next == nil {
			err = errors.New("no certificate returned")
		}
		if err == nil {
			err = r.swap(next)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			r.report(fmt.Errorf("pki: renew certificate %s (expires %s, attempt %d): %w",
				describe(cur.Leaf()), cur.Leaf().NotAfter.UTC().Format(time.RFC3339), failures, err))
			continue
		}
		failures = 0
		if !RenewalTime(next.Leaf()).After(clock.Now()) {
			// A certificate already due for renewal (its issuer expires
			// soon): back off rather than ask again at once.
			failures = 1
			r.report(fmt.Errorf("pki: renewed certificate %s is already due for renewal (expires %s); is the CA's intermediate about to expire?",
				describe(next.Leaf()), next.Leaf().NotAfter.UTC().Format(time.RFC3339)))
		}
		if r.cfg.OnRenew != nil {
			r.cfg.OnRenew(next)
		}
	}
}

func (r *Renewer) report(err error) {
	if r.cfg.OnError != nil {
		r.cfg.OnError(err)
	}
}
