package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/fips140"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	encasn1 "encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Why this file exists. A sealed Follower seed carries two certificates
// whose keys the CA made itself, so there is no request signature to check
// and no foreign input in the template. crypto/x509.CreateCertificate still
// verifies every signature it has just made (against a misbehaving signer)
// and marshals the certificate through encoding/asn1's reflection; in a seed
// storm that verification alone was 14 % of the Leader's CPU per seed, and
// the reflection another 6 %. The CA's key is an in-memory key of the
// standard library here, so leafSigner encodes the TBSCertificate with
// cryptobyte, signs it once and parses the result once.
//
// It encodes exactly what the soft CAS path (softcas.CreateCertificate →
// x509util.CreateCertificate → x509.CreateCertificate) produced for the
// fields a leafSpec can hold, byte for byte: the tests compare every profile
// and key type with crypto/x509's own TBSCertificate, and a fuzz target
// compares names and lifetimes. Anything it cannot encode identically
// (an issuer key of another kind, an unknown extended key usage, a name
// encoding it does not know) makes it decline, and Issue falls back to the
// soft CAS. Requests with a CSR never come here: they stay on smallstep's
// authority, which checks the CSR's proof of possession.

// leafSpec is everything a certificate issued without a CSR says: the
// fields CA.Issue sets on its template, and nothing else.
type leafSpec struct {
	commonName  string
	ou          string
	dns         []string
	ips         []net.IP
	notBefore   time.Time
	notAfter    time.Time
	keyUsage    x509.KeyUsage
	extKeyUsage []x509.ExtKeyUsage
	pub         crypto.PublicKey
}

// template is the crypto/x509 template of the spec, as the soft CAS path
// receives it (BasicConstraintsValid, not a CA).
func (s *leafSpec) template() *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: s.commonName, OrganizationalUnit: []string{s.ou}},
		DNSNames:              s.dns,
		IPAddresses:           s.ips,
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              s.keyUsage,
		ExtKeyUsage:           slices.Clone(s.extKeyUsage),
		BasicConstraintsValid: true,
		PublicKey:             s.pub,
	}
}

// leafSigner signs leafSpecs with the issuing CA's key. What does not change
// between certificates (the issuer's name and key id, the signature
// algorithm) is encoded once.
type leafSigner struct {
	key       crypto.Signer
	hash      crypto.Hash // zero for Ed25519 (no pre-hash)
	sigAlg    []byte      // DER AlgorithmIdentifier
	issuer    []byte      // the issuing certificate's raw subject
	issuerSKI []byte
}

// errDecline is the fast path saying "not this one": Issue then uses the
// soft CAS, which encodes anything crypto/x509 does.
var errDecline = errors.New("pki: not encodable without crypto/x509")

var (
	oidSigECDSAWithSHA256 = encasn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSigECDSAWithSHA384 = encasn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidSigECDSAWithSHA512 = encasn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519            = encasn1.ObjectIdentifier{1, 3, 101, 112}
	oidPublicKeyECDSA     = encasn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidPublicKeyRSA       = encasn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidCurveP256          = encasn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidCurveP384          = encasn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidCurveP521          = encasn1.ObjectIdentifier{1, 3, 132, 0, 35}

	oidExtKeyUsage         = encasn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtendedKeyUsage = encasn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtBasicConstraints = encasn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtSubjectKeyID     = encasn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtAuthorityKeyID   = encasn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtSubjectAltName   = encasn1.ObjectIdentifier{2, 5, 29, 17}

	oidAttrOU = encasn1.ObjectIdentifier{2, 5, 4, 11}
	oidAttrCN = encasn1.ObjectIdentifier{2, 5, 4, 3}
)

// extKeyUsageOIDs are the extended key usages the fast path encodes (the
// OIDs crypto/x509 writes for them); others decline.
var extKeyUsageOIDs = map[x509.ExtKeyUsage]encasn1.ObjectIdentifier{
	x509.ExtKeyUsageAny:             {2, 5, 29, 37, 0},
	x509.ExtKeyUsageServerAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 1},
	x509.ExtKeyUsageClientAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 2},
	x509.ExtKeyUsageCodeSigning:     {1, 3, 6, 1, 5, 5, 7, 3, 3},
	x509.ExtKeyUsageEmailProtection: {1, 3, 6, 1, 5, 5, 7, 3, 4},
	x509.ExtKeyUsageTimeStamping:    {1, 3, 6, 1, 5, 5, 7, 3, 8},
	x509.ExtKeyUsageOCSPSigning:     {1, 3, 6, 1, 5, 5, 7, 3, 9},
}

// newLeafSigner returns the fast signer for an issuing certificate and its
// key, or nil when the key is not one it signs with exactly as crypto/x509
// would (RSA issuers, whose algorithm the soft CAS takes from the issuer's
// own signature, and keys that are not the standard library's in-memory
// keys, such as a KMS signer).
func newLeafSigner(issuer *x509.Certificate, key crypto.Signer) *leafSigner {
	var (
		hash crypto.Hash
		oid  encasn1.ObjectIdentifier
	)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			hash, oid = crypto.SHA256, oidSigECDSAWithSHA256
		case elliptic.P384():
			hash, oid = crypto.SHA384, oidSigECDSAWithSHA384
		case elliptic.P521():
			hash, oid = crypto.SHA512, oidSigECDSAWithSHA512
		default:
			return nil
		}
		if !k.PublicKey.Equal(issuer.PublicKey) {
			return nil
		}
	case ed25519.PrivateKey:
		oid = oidEd25519
		if !k.Public().(ed25519.PublicKey).Equal(issuer.PublicKey) {
			return nil
		}
	default:
		return nil
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oid) })
	sigAlg, err := b.Bytes()
	if err != nil || len(issuer.RawSubject) == 0 {
		return nil
	}
	return &leafSigner{
		key:       key,
		hash:      hash,
		sigAlg:    sigAlg,
		issuer:    issuer.RawSubject,
		issuerSKI: issuer.SubjectKeyId,
	}
}

// sign issues the certificate of spec: a new serial, the subject key id of
// the spec's key, one signature, one parse. It returns errDecline when spec
// holds something it does not encode identically to crypto/x509.
func (ls *leafSigner) sign(spec *leafSpec) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	spki, keyBits, err := marshalSPKI(spec.pub)
	if err != nil {
		return nil, err
	}
	tbs, err := ls.tbs(spec, serial, subjectKeyID(keyBits), spki)
	if err != nil {
		return nil, err
	}
	sig, err := crypto.SignMessage(ls.key, rand.Reader, tbs, ls.hash)
	if err != nil {
		return nil, fmt.Errorf("pki: sign certificate: %w", err)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(ls.sigAlg)+len(sig)+16))
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(ls.sigAlg)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("pki: encode certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse the certificate just signed: %w", err)
	}
	return cert, nil
}

// newSerial is x509util's serial: uniformly random below 2^128.
func newSerial() (*big.Int, error) {
	sn, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		return nil, fmt.Errorf("pki: generate serial number: %w", err)
	}
	return sn, nil
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// subjectKeyID is x509util.GenerateSubjectKeyID of a key whose subjectPublicKey
// bits are keyBits: SHA-1 (RFC 5280, 4.2.1.2), or the leftmost 160 bits of
// SHA-256 in FIPS 140-3 mode (RFC 7093).
func subjectKeyID(keyBits []byte) []byte {
	if fips140.Enabled() {
		h := sha256.Sum256(keyBits)
		return h[:20]
	}
	h := sha1.Sum(keyBits)
	return h[:]
}

// marshalSPKI returns the SubjectPublicKeyInfo of pub and the bits of its
// subjectPublicKey, as x509.MarshalPKIXPublicKey encodes them.
func marshalSPKI(pub crypto.PublicKey) (spki, keyBits []byte, err error) {
	var (
		algo func(*cryptobyte.Builder)
	)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		var curve encasn1.ObjectIdentifier
		switch k.Curve {
		case elliptic.P256():
			curve = oidCurveP256
		case elliptic.P384():
			curve = oidCurveP384
		case elliptic.P521():
			curve = oidCurveP521
		default:
			return nil, nil, errDecline
		}
		if keyBits, err = k.Bytes(); err != nil {
			return nil, nil, errDecline
		}
		algo = func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidPublicKeyECDSA)
			b.AddASN1ObjectIdentifier(curve)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, nil, errDecline
		}
		keyBits = k
		algo = func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidEd25519) }
	case *rsa.PublicKey:
		if k.N == nil || k.N.Sign() <= 0 {
			return nil, nil, errDecline
		}
		var kb cryptobyte.Builder
		kb.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(k.N)
			b.AddASN1Int64(int64(k.E))
		})
		if keyBits, err = kb.Bytes(); err != nil {
			return nil, nil, errDecline
		}
		algo = func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidPublicKeyRSA)
			b.AddASN1NULL()
		}
	default:
		return nil, nil, errDecline
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(keyBits)+32))
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(asn1.SEQUENCE, algo)
		b.AddASN1BitString(keyBits)
	})
	if spki, err = b.Bytes(); err != nil {
		return nil, nil, errDecline
	}
	return spki, keyBits, nil
}

// tbs encodes the TBSCertificate crypto/x509.CreateCertificate makes for
// spec.template() with this serial and subject key id, signed by the
// issuer: version 3, the extensions in crypto/x509's order (key usage,
// extended key usage, basic constraints, SKI, AKI, SAN).
func (ls *leafSigner) tbs(spec *leafSpec, serial *big.Int, ski, spki []byte) ([]byte, error) {
	subject, err := encodeSubject(spec.commonName, spec.ou)
	if err != nil {
		return nil, err
	}
	eku := make([]encasn1.ObjectIdentifier, len(spec.extKeyUsage))
	for i, u := range spec.extKeyUsage {
		oid, ok := extKeyUsageOIDs[u]
		if !ok {
			return nil, errDecline
		}
		eku[i] = oid
	}
	for _, d := range spec.dns {
		if !isIA5(d) {
			return nil, errDecline
		}
	}
	for _, ip := range spec.ips {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, errDecline
		}
	}
	notBefore, notAfter := spec.notBefore.UTC(), spec.notAfter.UTC()
	if !encodableTime(notBefore) || !encodableTime(notAfter) {
		return nil, errDecline
	}
	// crypto/x509: the AKI is the issuer's SKI unless the certificate is
	// self-issued (the template has no AuthorityKeyId of its own).
	var aki []byte
	if !slices.Equal(ls.issuer, subject) {
		aki = ls.issuerSKI
	}

	b := cryptobyte.NewBuilder(make([]byte, 0, 512+len(spki)+len(subject)+len(ls.issuer)))
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(asn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2) // v3
		})
		b.AddASN1BigInt(serial)
		b.AddBytes(ls.sigAlg)
		b.AddBytes(ls.issuer)
		b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, notBefore)
			addTime(b, notAfter)
		})
		b.AddBytes(subject)
		b.AddBytes(spki)
		b.AddASN1(asn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if spec.keyUsage != 0 {
					addExtension(b, oidExtKeyUsage, true, func(b *cryptobyte.Builder) { addKeyUsage(b, spec.keyUsage) })
				}
				if len(eku) > 0 {
					addExtension(b, oidExtExtendedKeyUsage, false, func(b *cryptobyte.Builder) {
						b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
							for _, oid := range eku {
								b.AddASN1ObjectIdentifier(oid)
							}
						})
					})
				}
				// basicConstraints CA:FALSE, no path length: an empty SEQUENCE.
				addExtension(b, oidExtBasicConstraints, true, func(b *cryptobyte.Builder) {
					b.AddASN1(asn1.SEQUENCE, func(*cryptobyte.Builder) {})
				})
				addExtension(b, oidExtSubjectKeyID, false, func(b *cryptobyte.Builder) { b.AddASN1OctetString(ski) })
				if len(aki) > 0 {
					addExtension(b, oidExtAuthorityKeyID, false, func(b *cryptobyte.Builder) {
						b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(asn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(aki) })
						})
					})
				}
				if len(spec.dns) > 0 || len(spec.ips) > 0 {
					// Critical only when the subject is empty (RFC 5280,
					// 4.2.1.6); the subject always has the profile OU.
					addExtension(b, oidExtSubjectAltName, false, func(b *cryptobyte.Builder) {
						b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
							for _, d := range spec.dns {
								b.AddASN1(asn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(d)) })
							}
							for _, ip := range spec.ips {
								if ip4 := ip.To4(); ip4 != nil {
									ip = ip4
								}
								b.AddASN1(asn1.Tag(7).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(ip) })
							}
						})
					})
				}
			})
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil, errDecline
	}
	return out, nil
}

func addExtension(b *cryptobyte.Builder, oid encasn1.ObjectIdentifier, critical bool, value func(*cryptobyte.Builder)) {
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(asn1.OCTET_STRING, value)
	})
}

// addKeyUsage writes the key usage BIT STRING as crypto/x509 does: bit i of
// ku is bit i of the string, trailing zero bits dropped from the length but
// the second byte only present when it has a bit set.
func addKeyUsage(b *cryptobyte.Builder, ku x509.KeyUsage) {
	var a [2]byte
	a[0] = reverseBits(byte(ku))
	a[1] = reverseBits(byte(ku >> 8))
	bits := a[:1]
	if a[1] != 0 {
		bits = a[:2]
	}
	bitLen := len(bits) * 8
	for i := len(bits) - 1; i >= 0; i-- {
		if bits[i] != 0 {
			for x := bits[i]; x&1 == 0; x >>= 1 {
				bitLen--
			}
			break
		}
		bitLen -= 8
	}
	b.AddASN1(asn1.BIT_STRING, func(b *cryptobyte.Builder) {
		b.AddUint8(byte((8 - bitLen%8) % 8))
		b.AddBytes(bits)
	})
}

func reverseBits(x byte) byte {
	var r byte
	for range 8 {
		r = r<<1 | x&1
		x >>= 1
	}
	return r
}

// encodeSubject is asn1.Marshal(pkix.Name{CommonName: cn,
// OrganizationalUnit: []string{ou}}.ToRDNSequence()): the OU RDN, then the
// CN RDN when cn is not empty.
func encodeSubject(cn, ou string) ([]byte, error) {
	b := cryptobyte.NewBuilder(make([]byte, 0, 32+len(cn)+len(ou)))
	var err error
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if err = addRDN(b, oidAttrOU, ou); err != nil {
			return
		}
		if cn != "" {
			err = addRDN(b, oidAttrCN, cn)
		}
	})
	if err != nil {
		return nil, err
	}
	out, err := b.Bytes()
	if err != nil {
		return nil, errDecline
	}
	return out, nil
}

// addRDN writes SET { SEQUENCE { type, value } } with encoding/asn1's
// choice of string type: PrintableString when every byte allows it (no '*'
// or '&'), else UTF8String.
func addRDN(b *cryptobyte.Builder, oid encasn1.ObjectIdentifier, v string) error {
	tag := asn1.PrintableString
	for i := 0; i < len(v); i++ {
		if !printable(v[i]) {
			if !utf8.ValidString(v) {
				return errDecline
			}
			tag = asn1.UTF8String
			break
		}
	}
	b.AddASN1(asn1.SET, func(b *cryptobyte.Builder) {
		b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(v)) })
		})
	})
	return nil
}

// printable is encoding/asn1's PrintableString alphabet, as it marshals.
func printable(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		'\'' <= c && c <= ')' || '+' <= c && c <= '/' || c == ' ' || c == ':' || c == '=' || c == '?'
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func encodableTime(t time.Time) bool { return t.Year() >= 0 && t.Year() <= 9999 }

// addTime writes a UTC time as encoding/asn1 does: UTCTime for 1950–2049,
// GeneralizedTime otherwise, whole seconds.
func addTime(b *cryptobyte.Builder, t time.Time) {
	var buf [15]byte
	d := buf[:0]
	tag := asn1.UTCTime
	year := t.Year()
	if year < 1950 || year >= 2050 {
		tag = asn1.GeneralizedTime
		d = append(d, byte('0'+year/1000%10), byte('0'+year/100%10))
	}
	two := func(v int) { d = append(d, byte('0'+v/10%10), byte('0'+v%10)) }
	two(year % 100)
	_, month, day := t.Date()
	two(int(month))
	two(day)
	h, m, s := t.Clock()
	two(h)
	two(m)
	two(s)
	d = append(d, 'Z')
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(d) })
}
