package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// CertificateSource supplies a node's own certificate to its TLS configs,
// on every handshake, so a renewed certificate is used without a restart.
// *Renewer implements it; StaticCertificate wraps a fixed one.
type CertificateSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// StaticCertificate serves one certificate that never changes (the CLI's
// admin certificate, tests).
func StaticCertificate(c *Issued) (CertificateSource, error) {
	tc, err := c.TLSCertificate()
	if err != nil {
		return nil, err
	}
	return staticSource{tc}, nil
}

type staticSource struct{ c *tls.Certificate }

func (s staticSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.c, nil }
func (s staticSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.c, nil
}

// TLSOption adjusts a TLS config built by this package.
type TLSOption func(*tlsOptions)

type tlsOptions struct {
	revocations        RevocationProvider
	clock              Clock
	profiles           []ProfileName
	clientCertOptional bool
}

// WithRevocations refuses peers whose chain holds a revoked serial, on each
// handshake. Servers and clients inside the cluster should always set it.
func WithRevocations(r RevocationProvider) TLSOption {
	return func(o *tlsOptions) { o.revocations = r }
}

// WithTLSClock sets the clock that validity periods are checked against
// (tests).
func WithTLSClock(c Clock) TLSOption { return func(o *tlsOptions) { o.clock = c } }

// WithPeerProfiles accepts only peers whose certificate was issued under one
// of these profiles (an etcd peer listener accepts ProfileEtcdPeer only).
func WithPeerProfiles(names ...ProfileName) TLSOption {
	return func(o *tlsOptions) { o.profiles = append(o.profiles, names...) }
}

// WithOptionalClientCert makes a server verify a client certificate if one
// is presented, but accept clients without one: the REST API, where Conjur
// clients authenticate with API keys and tokens instead.
func WithOptionalClientCert() TLSOption {
	return func(o *tlsOptions) { o.clientCertOptional = true }
}

func newTLSOptions(opts []TLSOption) tlsOptions {
	o := tlsOptions{clock: SystemClock()}
	for _, fn := range opts {
		fn(&o)
	}
	return o
}

func poolOf(roots []*x509.Certificate) (*x509.CertPool, error) {
	if len(roots) == 0 {
		return nil, errors.New("pki: no CA certificate to trust (pass CA.Roots, or the bundle from GET /ca)")
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	return pool, nil
}

// ServerTLS returns a server config for mutual TLS: the node's certificate
// from certs, and client certificates required and verified against roots,
// then checked for revocation and profile on every handshake. TLS 1.3 only.
//
// Expired and unknown-CA client certificates are refused by crypto/tls
// itself, so the client receives a specific alert ("expired certificate",
// "unknown certificate authority"); a revoked or wrong-profile one is refused
// by this package with ErrRevoked or ErrWrongProfile, which the server's
// handshake error carries (the client sees "bad certificate").
func ServerTLS(roots []*x509.Certificate, certs CertificateSource, opts ...TLSOption) (*tls.Config, error) {
	if certs == nil {
		return nil, errors.New("pki: ServerTLS needs the node's certificate source")
	}
	pool, err := poolOf(roots)
	if err != nil {
		return nil, err
	}
	o := newTLSOptions(opts)
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: certs.GetCertificate,
		ClientCAs:      pool,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		Time:           o.clock.Now,
	}
	if o.clientCertOptional {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			if o.clientCertOptional {
				return nil
			}
			return fmt.Errorf("%w: client certificate required", ErrNoCertificate)
		}
		// The presented certificates as well as the verified chains: a
		// resumed session carries both, and a revoked leaf must be caught
		// either way.
		if err := o.checkRevoked("client", cs.PeerCertificates); err != nil {
			return err
		}
		for _, chain := range cs.VerifiedChains {
			if err := o.checkRevoked("client", chain); err != nil {
				return err
			}
		}
		return o.checkProfile("client", cs.PeerCertificates[0])
	}
	return cfg, nil
}

// ClientTLS returns a client config that verifies the server's chain to
// roots, its name, revocation and profile. certs may be nil for a client
// without a certificate.
//
// serverName is the DNS name or IP address the server's certificate must
// carry. If empty, the name the connection was dialed with (SNI) is used;
// a connection dialed by IP address carries no SNI, so pass the IP here.
//
// Refusals wrap ErrExpired, ErrRevoked, ErrNameMismatch, ErrUnknownCA,
// ErrWrongUsage or ErrWrongProfile, and say which certificate.
func ClientTLS(roots []*x509.Certificate, serverName string, certs CertificateSource, opts ...TLSOption) (*tls.Config, error) {
	pool, err := poolOf(roots)
	if err != nil {
		return nil, err
	}
	v := &serverVerifier{roots: pool, serverName: serverName, o: newTLSOptions(opts)}
	return v.config(certs), nil
}

// PinnedClientTLS returns a client config that trusts a server on first
// contact by the CA pin alone, as kubeadm's discovery does: the server's
// presented chain must contain a CA certificate whose key matches pin, and
// the leaf must verify up to that certificate (validity, usage, name). A
// chain without the pinned key is refused with ErrPinMismatch. Use it to
// fetch the CA bundle (GET /ca), then switch to ClientTLS.
func PinnedClientTLS(pin Pin, serverName string, certs CertificateSource, opts ...TLSOption) (*tls.Config, error) {
	if pin == (Pin{}) {
		return nil, errors.New("pki: empty CA pin (run `sower ca pin` on the Leader to get it)")
	}
	v := &serverVerifier{pin: &pin, serverName: serverName, o: newTLSOptions(opts)}
	return v.config(certs), nil
}

// InsecureClientTLS returns a client config that does not verify the server
// at all. It exists for --insecure-skip-ca-verify only; callers must warn.
func InsecureClientTLS(certs CertificateSource) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if certs != nil {
		cfg.GetClientCertificate = certs.GetClientCertificate
	}
	return cfg
}

// serverVerifier is a client's check of the server. It replaces crypto/tls's
// own verification (InsecureSkipVerify with VerifyConnection, the pattern the
// crypto/tls documentation gives) so that a pin can be checked and every
// refusal says which rule failed.
type serverVerifier struct {
	roots      *x509.CertPool
	pin        *Pin
	serverName string
	o          tlsOptions
}

func (v *serverVerifier) config(certs CertificateSource) *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		ServerName:         v.serverName,
		RootCAs:            v.roots,
		InsecureSkipVerify: true, // verified in VerifyConnection, below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return v.verify(cs.PeerCertificates, cs.ServerName)
		},
		Time: v.o.clock.Now,
	}
	if certs != nil {
		cfg.GetClientCertificate = certs.GetClientCertificate
	}
	return cfg
}

func (v *serverVerifier) verify(certs []*x509.Certificate, sni string) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: the server sent no certificate", ErrNoCertificate)
	}
	leaf := certs[0]
	roots := v.roots
	if v.pin != nil {
		roots = x509.NewCertPool()
		pinned := 0
		for _, c := range certs {
			if c.IsCA && c.BasicConstraintsValid && v.pin.Matches(c) {
				roots.AddCert(c)
				pinned++
			}
		}
		if pinned == 0 {
			return fmt.Errorf("%w: wrong CA pin: no CA certificate the server %s presented has the pinned key; check --ca-pin against `sower ca pin` on the Leader",
				ErrPinMismatch, describe(leaf))
		}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   v.o.clock.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return classify("server", leaf, err)
	}
	for _, chain := range chains {
		if err := v.o.checkRevoked("server", chain); err != nil {
			return err
		}
	}
	if err := v.o.checkProfile("server", leaf); err != nil {
		return err
	}
	name := v.serverName
	if name == "" {
		name = sni
	}
	if name == "" {
		return errors.New("pki: no server name to check the server's certificate against: pass the server's DNS name or IP address to the client config")
	}
	if err := leaf.VerifyHostname(name); err != nil {
		return classify("server", leaf, err)
	}
	return nil
}

func (o tlsOptions) checkRevoked(role string, chain []*x509.Certificate) error {
	if o.revocations == nil {
		return nil
	}
	for i, c := range chain {
		if o.revocations.IsRevoked(c.SerialNumber) {
			what := role + " certificate"
			if i > 0 {
				what = "CA certificate in the " + role + "'s chain"
			}
			return fmt.Errorf("%w: %s %s has been revoked; the peer needs a new certificate", ErrRevoked, what, describe(c))
		}
	}
	return nil
}

func (o tlsOptions) checkProfile(role string, leaf *x509.Certificate) error {
	if len(o.profiles) == 0 {
		return nil
	}
	p, _ := ProfileOf(leaf)
	if slices.Contains(o.profiles, p) {
		return nil
	}
	want := make([]string, len(o.profiles))
	for i, n := range o.profiles {
		want[i] = string(n)
	}
	return fmt.Errorf("%w: %s certificate %s has profile %q; this endpoint accepts %s",
		ErrWrongProfile, role, describe(leaf), p, strings.Join(want, ", "))
}

// classify wraps a crypto/x509 verification error in the sentinel that says
// which check failed, keeping the x509 detail.
func classify(role string, leaf *x509.Certificate, err error) error {
	what := role + " certificate " + describe(leaf)
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return fmt.Errorf("%w: %s was not issued by this cluster's CA (check the CA bundle or --ca-pin): %w", ErrUnknownCA, what, err)
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return fmt.Errorf("%w: %s: %w", ErrNameMismatch, what, err)
	}
	if inv, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		switch inv.Reason {
		case x509.Expired:
			return fmt.Errorf("%w: %s (renew it, or check both machines' clocks): %w", ErrExpired, what, err)
		case x509.IncompatibleUsage:
			return fmt.Errorf("%w: %s lacks the %s usage: %w", ErrWrongUsage, what, role+"Auth", err)
		}
	}
	return fmt.Errorf("%w: %s: %w", ErrUntrusted, what, err)
}

func describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %s)", c.Subject.CommonName, FormatSerial(c.SerialNumber))
}
