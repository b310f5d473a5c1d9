package pki

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/smallstep/certificates/authority/provisioner"
	casapi "github.com/smallstep/certificates/cas/apiv1"
	"go.step.sm/crypto/keyutil"
)

// Request asks for a certificate under a profile. Without a CSR the CA
// generates the key pair and returns the private key with the certificate
// (seed issuance, a Leader issuing for itself). With a CSR the key never
// leaves the requester (a node renewing over the network); the CSR's
// signature proves it holds the key.
type Request struct {
	CommonName  string
	DNSNames    []string
	IPAddresses []net.IP
	// CSR, if set, supplies the public key. If the three name fields above
	// are empty the CSR's names are used; otherwise the CSR must carry the
	// same names or none.
	CSR *x509.CertificateRequest
	// KeyType of the generated key when there is no CSR; empty means the
	// CA's key type.
	KeyType KeyType
	// Lifetime shorter than the profile's; zero means the profile's.
	Lifetime time.Duration
}

// RequestFromCSR returns a request that takes its names and key from csr.
func RequestFromCSR(csr *x509.CertificateRequest) Request { return Request{CSR: csr} }

func (r Request) names(profile ProfileName) (names, error) {
	own := names{commonName: r.CommonName, dns: r.DNSNames, ips: r.IPAddresses}
	if r.CSR == nil {
		return own, nil
	}
	csr := names{
		commonName: r.CSR.Subject.CommonName,
		dns:        r.CSR.DNSNames,
		ips:        r.CSR.IPAddresses,
		emails:     r.CSR.EmailAddresses,
		uris:       r.CSR.URIs,
	}
	if own.commonName == "" && len(own.dns) == 0 && len(own.ips) == 0 {
		return csr, nil
	}
	csrEmpty := csr.commonName == "" && len(csr.dns) == 0 && len(csr.ips) == 0 && len(csr.emails) == 0 && len(csr.uris) == 0
	if !csrEmpty && !sameNames(own, csr) {
		return names{}, &ProfileError{Profile: profile, Rule: RuleCSRNames,
			Detail: "the CSR names a different subject or SANs than the request; send a CSR with the same names, or none"}
	}
	return own, nil
}

func sameNames(a, b names) bool {
	if a.commonName != b.commonName || len(b.emails) > 0 || len(b.uris) > 0 {
		return false
	}
	lower := func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[strings.ToLower(x)] = true
		}
		return m
	}
	ipset := func(s []net.IP) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[x.String()] = true
		}
		return m
	}
	return maps.Equal(lower(a.dns), lower(b.dns)) && maps.Equal(ipset(a.ips), ipset(b.ips))
}

// Issued is a certificate chain and, when the CA generated it, its key.
type Issued struct {
	// Chain is the leaf first, then the CA chain up to the trust anchor.
	Chain []*x509.Certificate
	// Key is the leaf's private key; nil when the request carried a CSR.
	Key crypto.Signer
}

// Leaf returns the issued certificate.
func (c *Issued) Leaf() *x509.Certificate { return c.Chain[0] }

// TLSCertificate returns the chain and key as a tls.Certificate. It needs the
// key.
func (c *Issued) TLSCertificate() (*tls.Certificate, error) {
	if c == nil || len(c.Chain) == 0 {
		return nil, errors.New("pki: no certificate")
	}
	if c.Key == nil {
		return nil, errors.New("pki: no private key with this certificate (it was issued for a CSR)")
	}
	tc := &tls.Certificate{PrivateKey: c.Key, Leaf: c.Chain[0]}
	for _, cert := range c.Chain {
		tc.Certificate = append(tc.Certificate, cert.Raw)
	}
	return tc, nil
}

// CertPEM returns the chain as PEM, leaf first.
func (c *Issued) CertPEM() []byte { return EncodeCertificatesPEM(c.Chain) }

// KeyPEM returns the private key as unencrypted PKCS #8 PEM. It is secret:
// write it to a 0600 file or seal it.
func (c *Issued) KeyPEM() ([]byte, error) {
	if c.Key == nil {
		return nil, errors.New("pki: no private key with this certificate (it was issued for a CSR)")
	}
	return encodePrivateKeyPEM(c.Key)
}

// ParseIssued reads a chain and its key back from PEM (a seed, or files),
// checking that the key belongs to the leaf.
func ParseIssued(certPEM, keyPEM []byte) (*Issued, error) {
	chain, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKeyPEM(keyPEM, nil)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if !keyutil.Equal(key.Public(), chain[0].PublicKey) {
		return nil, fmt.Errorf("%w: the key is not the certificate's", ErrKeyMismatch)
	}
	return &Issued{Chain: chain, Key: key}, nil
}

// NewCSR generates a key of type kt (default ECDSA P-256) and a CSR for the
// request's names, for a node that asks a remote CA for a certificate.
func NewCSR(req Request, kt KeyType) (crypto.Signer, *x509.CertificateRequest, error) {
	if kt == "" {
		kt = DefaultKeyType
	}
	key, err := kt.Generate()
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: req.CommonName},
		DNSNames:    req.DNSNames,
		IPAddresses: req.IPAddresses,
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: parse CSR: %w", err)
	}
	return key, csr, nil
}

// Issue issues a certificate under the named profile. A request that breaks
// a profile rule is refused with a *ProfileError naming the rule.
//
// With a CSR, signing goes through smallstep's embedded authority, which
// checks the CSR's proof of possession and the CA's name constraints. Without
// one, the CA generates the key itself, so there is nothing to prove: the
// certificate is encoded and signed directly (leafsign.go), without the
// authority's CSR checks nor crypto/x509's verification of the signature it
// has just made; an issuing key or a field that path does not handle goes
// to the authority's signer (smallstep's soft CAS) instead.
func (ca *CA) Issue(ctx context.Context, profile ProfileName, req Request) (*Issued, error) {
	p, ok := ca.profiles[profile]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownProfile, profile, strings.Join(ca.profileNames(), ", "))
	}
	n, err := p.checkRequest(req)
	if err != nil {
		return nil, err
	}
	lifetime := req.Lifetime
	if lifetime == 0 {
		lifetime = p.Lifetime
	}
	st := ca.state.Load()
	now := ca.opts.clock.Now()
	notAfter := now.Add(lifetime)
	if issuerEnd := st.chain[0].NotAfter; notAfter.After(issuerEnd) {
		// Never outlive the issuer: clients would refuse the chain.
		notAfter = issuerEnd
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("%w: the CA's issuing certificate expired at %s; rotate the intermediate or import a new CA",
			ErrExpired, st.chain[0].NotAfter.UTC().Format(time.RFC3339))
	}
	spec := leafSpec{
		commonName:  n.commonName,
		ou:          profileOUPrefix + string(p.Name),
		dns:         n.dns,
		ips:         n.ips,
		notBefore:   now.Add(-backdate),
		notAfter:    notAfter,
		keyUsage:    p.KeyUsage,
		extKeyUsage: p.ExtKeyUsage,
	}

	if req.CSR != nil {
		tmpl := spec.template()
		if _, isRSA := req.CSR.PublicKey.(*rsa.PublicKey); isRSA {
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
		chain, err := st.auth.SignWithContext(ctx, req.CSR, provisioner.SignOptions{}, templateModifier(tmpl))
		if err != nil {
			return nil, fmt.Errorf("pki: issue %s certificate for %q: %w", p.Name, n.commonName, err)
		}
		return &Issued{Chain: chain}, nil
	}

	kt := req.KeyType
	if kt == "" {
		kt = ca.opts.keyType
	}
	key, err := ca.newKey(kt)
	if err != nil {
		return nil, err
	}
	if _, isRSA := key.Public().(*rsa.PublicKey); isRSA {
		spec.keyUsage |= x509.KeyUsageKeyEncipherment
	}
	spec.pub = key.Public()
	chain := make([]*x509.Certificate, 1, 1+len(st.chain))
	if st.leaf != nil {
		// The CA made the key: nothing to prove, so no need for
		// crypto/x509's check of its own signature (leafsign.go).
		leaf, err := st.leaf.sign(&spec)
		switch {
		case err == nil:
			chain[0] = leaf
			return &Issued{Chain: append(chain, st.chain...), Key: key}, nil
		case !errors.Is(err, errDecline):
			return nil, fmt.Errorf("pki: issue %s certificate for %q: %w", p.Name, n.commonName, err)
		}
	}
	resp, err := st.cas.CreateCertificate(&casapi.CreateCertificateRequest{
		Template: spec.template(),
		Lifetime: lifetime,
		Backdate: backdate,
	})
	if err != nil {
		return nil, fmt.Errorf("pki: issue %s certificate for %q: %w", p.Name, n.commonName, err)
	}
	chain[0] = resp.Certificate
	chain = append(chain, resp.CertificateChain...)
	return &Issued{Chain: chain, Key: key}, nil
}

// newKey returns a new key of type kt: from the pool when there is one for
// that type.
func (ca *CA) newKey(kt KeyType) (crypto.Signer, error) {
	if ca.keys == nil || kt != ca.opts.keyType {
		return kt.Generate()
	}
	return ca.keys.Get()
}

// templateModifier makes the authority's certificate exactly our template,
// keeping only the CSR's public key: nothing else a requester puts in a CSR
// (extensions, basic constraints, extra names) reaches the certificate.
func templateModifier(tmpl *x509.Certificate) provisioner.CertificateModifierFunc {
	return func(c *x509.Certificate, _ provisioner.SignOptions) error {
		pub, alg := c.PublicKey, c.PublicKeyAlgorithm
		*c = *tmpl
		c.PublicKey, c.PublicKeyAlgorithm = pub, alg
		return nil
	}
}

func (ca *CA) profileNames() []string {
	out := make([]string, 0, len(ca.profiles))
	for n := range ca.profiles {
		out = append(out, string(n))
	}
	slices.Sort(out)
	return out
}
