package archive

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sowerproject/sower/pki"
)

// Signer is the key a seed is signed with and the certificate chain that
// vouches for it.
type Signer struct {
	// Key signs the manifest. ECDSA (P-256, P-384, P-521), Ed25519 and RSA
	// (2048 bits or more) keys are supported; the key may live in an HSM or
	// KMS, only Sign is called.
	Key crypto.Signer
	// Chain is the signing certificate first, then any intermediates, and
	// last the cluster CA certificate whose pin nodes hold. A node trusts the
	// seed because some certificate of this chain carries the pinned key, so
	// the chain must include it. The CA may sign seeds itself: then Chain is
	// just the CA certificate.
	Chain []*x509.Certificate
}

// The signature algorithms, named as manifest.sig names them. The algorithm
// follows from the signer's key; a verifier refuses a name that does not
// fit the key it finds in the certificate.
const (
	algECDSASHA256 = "ECDSA-SHA256"
	algECDSASHA384 = "ECDSA-SHA384"
	algECDSASHA512 = "ECDSA-SHA512"
	algEd25519     = "Ed25519"
	algRSAPSS      = "RSA-PSS-SHA256"

	maxChainLen = 8
	minRSABits  = 2048
)

type algorithm struct {
	name string
	x509 x509.SignatureAlgorithm
	hash crypto.Hash // zero for Ed25519, which signs the message itself
}

var algorithms = map[string]algorithm{
	algECDSASHA256: {algECDSASHA256, x509.ECDSAWithSHA256, crypto.SHA256},
	algECDSASHA384: {algECDSASHA384, x509.ECDSAWithSHA384, crypto.SHA384},
	algECDSASHA512: {algECDSASHA512, x509.ECDSAWithSHA512, crypto.SHA512},
	algEd25519:     {algEd25519, x509.PureEd25519, 0},
	algRSAPSS:      {algRSAPSS, x509.SHA256WithRSAPSS, crypto.SHA256},
}

// algorithmFor returns the one algorithm a public key signs seeds with.
func algorithmFor(pub crypto.PublicKey) (algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return algorithms[algECDSASHA256], nil
		case elliptic.P384():
			return algorithms[algECDSASHA384], nil
		case elliptic.P521():
			return algorithms[algECDSASHA512], nil
		}
		return algorithm{}, fmt.Errorf("ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return algorithms[algEd25519], nil
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return algorithm{}, fmt.Errorf("RSA key of %d bits", k.N.BitLen())
		}
		return algorithms[algRSAPSS], nil
	}
	return algorithm{}, fmt.Errorf("key type %T", pub)
}

// The detached signature on the wire (manifest.sig).
type wireSignature struct {
	Algorithm string   `json:"algorithm"`
	Signature []byte   `json:"signature"` // standard base64
	Chain     [][]byte `json:"chain"`     // DER certificates, standard base64
}

// preparedSigner is a Signer checked once, so that building a seed costs one
// signature and no certificate parsing.
type preparedSigner struct {
	key   crypto.Signer
	alg   algorithm
	chain [][]byte
	pins  []pki.Pin // pins of the CA certificates of the chain
}

func prepareSigner(s Signer) (*preparedSigner, error) {
	if s.Key == nil || len(s.Chain) == 0 {
		return nil, ErrNoSigner
	}
	if len(s.Chain) > maxChainLen {
		return nil, fmt.Errorf("%w: chain of %d certificates, at most %d", ErrNoSigner, len(s.Chain), maxChainLen)
	}
	leaf := s.Chain[0]
	pub, ok := s.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%w: the key is not the one certificate %q was issued for", ErrSignerKey, leaf.Subject)
	}
	alg, err := algorithmFor(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignerKey, err)
	}
	if err := checkSignerUsage(leaf); err != nil {
		return nil, err
	}
	p := &preparedSigner{key: s.Key, alg: alg}
	for _, c := range s.Chain {
		if c == nil {
			return nil, fmt.Errorf("%w: nil certificate in chain", ErrNoSigner)
		}
		p.chain = append(p.chain, c.Raw)
		if c.IsCA {
			p.pins = append(p.pins, pki.PinOf(c))
		}
	}
	// Verify the chain once, here, so that a misconfigured signer fails at
	// startup and not on every node that fetches a seed.
	anchor := s.Chain[len(s.Chain)-1]
	if !anchor.IsCA {
		return nil, fmt.Errorf("%w: the last certificate of the chain, %q, is not a CA certificate (append the cluster CA certificate)", ErrUntrusted, anchor.Subject)
	}
	if _, err := verifyChain(s.Chain, []*x509.Certificate{anchor}, time.Now()); err != nil {
		return nil, err
	}
	return p, nil
}

// checkSignerUsage refuses a certificate whose key usage excludes signatures.
func checkSignerUsage(leaf *x509.Certificate) error {
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("%w: certificate %q lacks the digitalSignature key usage", ErrUntrusted, leaf.Subject)
	}
	return nil
}

// sign returns manifest.sig for the exact manifest bytes.
func (p *preparedSigner) sign(manifest []byte) ([]byte, error) {
	var digest []byte
	var opts crypto.SignerOpts = p.alg.hash
	switch p.alg.hash {
	case crypto.SHA256:
		d := sha256.Sum256(manifest)
		digest = d[:]
	case crypto.SHA384:
		d := sha512.Sum384(manifest)
		digest = d[:]
	case crypto.SHA512:
		d := sha512.Sum512(manifest)
		digest = d[:]
	default:
		digest = manifest // Ed25519 signs the message
	}
	if p.alg.name == algRSAPSS {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	sig, err := p.key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("seed/archive: sign manifest: %w", err)
	}
	b, err := json.Marshal(wireSignature{Algorithm: p.alg.name, Signature: sig, Chain: p.chain})
	if err != nil {
		return nil, fmt.Errorf("seed/archive: encode signature: %w", err)
	}
	return append(b, '\n'), nil
}

// verifyChain verifies chain[0] up to one of anchors, with the rest of chain
// as intermediates.
func verifyChain(chain, anchors []*x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	return chains, nil
}

// verifySignature checks manifest.sig against the manifest bytes: first the
// signer chain up to a CA certificate of the chain that carries the pinned
// key, then the signature itself. It returns the signer's chain.
func verifySignature(manifest, sigRaw []byte, pin pki.Pin, now time.Time) ([]*x509.Certificate, error) {
	var w wireSignature
	if err := decodeStrict(sigRaw, &w); err != nil {
		return nil, fmt.Errorf("%w: decode %s: %w", ErrBadSignature, signatureName, err)
	}
	if len(w.Chain) == 0 || len(w.Chain) > maxChainLen {
		return nil, fmt.Errorf("%w: %s must carry 1 to %d certificates, it has %d", ErrBadSignature, signatureName, maxChainLen, len(w.Chain))
	}
	chain := make([]*x509.Certificate, len(w.Chain))
	var anchors []*x509.Certificate
	for i, der := range w.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d of the signer chain: %w", ErrBadSignature, i, err)
		}
		chain[i] = c
		if c.IsCA && pin.Matches(c) {
			anchors = append(anchors, c)
		}
	}
	if len(anchors) == 0 {
		return nil, fmt.Errorf("%w: no CA certificate of the signer chain has the pinned key %s", ErrPinMismatch, pin)
	}
	if _, err := verifyChain(chain, anchors, now); err != nil {
		return nil, err
	}
	leaf := chain[0]
	if err := checkSignerUsage(leaf); err != nil {
		return nil, err
	}
	want, err := algorithmFor(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: unsupported signer key: %v", ErrBadSignature, err)
	}
	if w.Algorithm != want.name {
		return nil, fmt.Errorf("%w: algorithm %q does not fit the signer's key (want %q)", ErrBadSignature, w.Algorithm, want.name)
	}
	if err := leaf.CheckSignature(want.x509, manifest, w.Signature); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return chain, nil
}
