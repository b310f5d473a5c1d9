package pki

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	casapi "github.com/smallstep/certificates/cas/apiv1"
	"go.step.sm/crypto/x509util"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// memStore is the smallest Store for these in-package tests (pkitest
// imports pki, so it cannot be used here).
type memStore map[string][]byte

func (m memStore) Get(_ context.Context, k string) ([]byte, error) {
	v, ok := m[k]
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

func (m memStore) Put(_ context.Context, k string, v []byte) error { m[k] = v; return nil }

// fixedClock stands still at t0, with sub-second digits that the
// certificate's whole seconds must drop as crypto/x509 does.
type fixedClock struct{}

func (fixedClock) Now() time.Time                         { return t0() }
func (fixedClock) After(d time.Duration) <-chan time.Time { return nil }

func bootstrapCA(t testing.TB, kt KeyType) *CA {
	t.Helper()
	kr, err := GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := Bootstrap(context.Background(), Config{Store: memStore{}, Sealer: kr}, WithKeyType(kt), WithClock(fixedClock{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close() })
	return ca
}

// leafRequests are requests every default profile accepts, with DNS names
// and IP addresses where the profile allows them.
var leafRequests = map[ProfileName]Request{
	ProfileLeaderServer:   {CommonName: "leader-0", DNSNames: []string{"Leader.Example", "leader-0.sower.svc"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("fd00::1")}},
	ProfileEtcdPeer:       {CommonName: "leader-0", IPAddresses: []net.IP{net.ParseIP("192.0.2.7")}},
	ProfileEtcdClient:     {CommonName: "leader-0"},
	ProfileFollowerServer: {CommonName: "follower_0@x", DNSNames: []string{"conjur-follower.conjur.svc.cluster.local"}},
	ProfileFollowerClient: {CommonName: "follower-0"},
	ProfileAdminClient:    {CommonName: "älice*&"},
}

// referenceTBS is the TBSCertificate the soft CAS path (what Issue used
// for every certificate whose key it made) produces for leaf's request,
// with leaf's serial, subject key id and validity.
func referenceTBS(t *testing.T, ca *CA, profile ProfileName, req Request, leaf *x509.Certificate) []byte {
	t.Helper()
	p := ca.profiles[profile]
	n, err := p.checkRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	ku := p.KeyUsage
	if _, isRSA := leaf.PublicKey.(*rsa.PublicKey); isRSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: n.commonName, OrganizationalUnit: []string{"sower-profile:" + string(profile)}},
		DNSNames:              n.dns,
		IPAddresses:           n.ips,
		NotBefore:             t0().Add(-backdate),
		NotAfter:              t0().Add(p.Lifetime),
		KeyUsage:              ku,
		ExtKeyUsage:           p.ExtKeyUsage,
		BasicConstraintsValid: true,
		PublicKey:             leaf.PublicKey,
		SerialNumber:          leaf.SerialNumber,
		SubjectKeyId:          leaf.SubjectKeyId,
	}
	resp, err := ca.state.Load().cas.CreateCertificate(&casapi.CreateCertificateRequest{Template: tmpl, Lifetime: p.Lifetime, Backdate: backdate})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Certificate.RawTBSCertificate
}

// TestLeafSignerMatchesCryptoX509 issues, for every profile and for CA and
// leaf keys of each kind, a certificate through the fast path and compares
// it with what the soft CAS makes of the same template: identical
// TBSCertificate, a signature that verifies with the CA's key, a chain that
// verifies for the profile's usage, x509util's serial and key id.
func TestLeafSignerMatchesCryptoX509(t *testing.T) {
	t.Parallel()
	leafKeys := []KeyType{KeyECDSAP256, KeyECDSAP384, KeyEd25519, KeyRSA2048}
	for _, caKT := range []KeyType{KeyECDSAP256, KeyECDSAP384, KeyEd25519} {
		t.Run(string(caKT), func(t *testing.T) {
			t.Parallel()
			ca := bootstrapCA(t, caKT)
			if ca.state.Load().leaf == nil {
				t.Fatalf("no fast signer for a %s CA", caKT)
			}
			for profile, req := range leafRequests {
				for _, leafKT := range leafKeys {
					req := req
					req.KeyType = leafKT
					crt, err := ca.Issue(context.Background(), profile, req)
					if err != nil {
						t.Fatalf("%s/%s: %v", profile, leafKT, err)
					}
					leaf := crt.Leaf()
					if want := referenceTBS(t, ca, profile, req, leaf); !bytes.Equal(leaf.RawTBSCertificate, want) {
						t.Fatalf("%s/%s: TBSCertificate differs from crypto/x509's\n got %x\nwant %x", profile, leafKT, leaf.RawTBSCertificate, want)
					}
					checkIssued(t, ca, profile, req, crt)
				}
			}
		})
	}
}

func checkIssued(t *testing.T, ca *CA, profile ProfileName, req Request, crt *Issued) {
	t.Helper()
	leaf, chain := crt.Leaf(), ca.Chain()
	if err := leaf.CheckSignatureFrom(chain[0]); err != nil {
		t.Fatalf("%s: signature: %v", profile, err)
	}
	wantSKI, err := x509util.GenerateSubjectKeyID(crt.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(leaf.SubjectKeyId, wantSKI) || !bytes.Equal(leaf.AuthorityKeyId, chain[0].SubjectKeyId) {
		t.Fatalf("%s: SKI %x (want %x), AKI %x (want %x)", profile, leaf.SubjectKeyId, wantSKI, leaf.AuthorityKeyId, chain[0].SubjectKeyId)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Fatalf("%s: serial %x outside (0, 2^128)", profile, leaf.SerialNumber)
	}
	if len(crt.Chain) != 1+len(chain) {
		t.Fatalf("%s: chain of %d, want leaf and %d CA certificates", profile, len(crt.Chain), len(chain))
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(chain[len(chain)-1])
	for _, c := range chain[:len(chain)-1] {
		inter.AddCert(c)
	}
	p := ca.profiles[profile]
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: p.ExtKeyUsage, CurrentTime: leaf.NotBefore.Add(time.Hour)}
	if len(req.DNSNames) > 0 {
		opts.DNSName = strings.ToLower(req.DNSNames[0])
	}
	if _, err := leaf.Verify(opts); err != nil {
		t.Fatalf("%s: verify: %v", profile, err)
	}
	// A usage the profile does not grant is refused.
	other := x509.ExtKeyUsageServerAuth
	if p.hasUsage(other) {
		other = x509.ExtKeyUsageCodeSigning
	}
	opts.KeyUsages = []x509.ExtKeyUsage{other}
	if _, err := leaf.Verify(opts); err == nil {
		t.Fatalf("%s: verified for %v, which the profile does not grant", profile, other)
	}
}

// TestLeafSignerFallback: a CA whose key the fast path does not sign with
// (RSA) issues through the soft CAS, and a spec with a usage the fast path
// does not encode declines instead of producing another encoding.
func TestLeafSignerFallback(t *testing.T) {
	t.Parallel()
	ca := bootstrapCA(t, KeyRSA2048)
	if ca.state.Load().leaf != nil {
		t.Fatal("fast signer for an RSA CA; the soft CAS should sign for it")
	}
	req := leafRequests[ProfileFollowerServer]
	crt, err := ca.Issue(context.Background(), ProfileFollowerServer, req)
	if err != nil {
		t.Fatal(err)
	}
	checkIssued(t, ca, ProfileFollowerServer, req, crt)

	ls := bootstrapCA(t, KeyECDSAP256).state.Load().leaf
	key, _ := KeyECDSAP256.Generate()
	spec := &leafSpec{commonName: "x", ou: "sower-profile:x", notBefore: t0(), notAfter: t0().Add(time.Hour),
		keyUsage: x509.KeyUsageDigitalSignature, extKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageMicrosoftKernelCodeSigning}, pub: key.Public()}
	if _, err := ls.sign(spec); err != errDecline {
		t.Fatalf("unknown extended key usage: %v, want errDecline", err)
	}
	spec.extKeyUsage = nil
	spec.dns = []string{"bücher.example"}
	if _, err := ls.sign(spec); err != errDecline {
		t.Fatalf("non-ASCII DNS name: %v, want errDecline", err)
	}
}

func t0() time.Time { return time.Date(2031, 3, 1, 12, 0, 0, 987654321, time.FixedZone("CET", 3600)) }

// tbsOf returns the TBSCertificate of a DER certificate without parsing
// the rest (crypto/x509 refuses some certificates it creates).
func tbsOf(der []byte) []byte {
	s := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !s.ReadASN1(&cert, asn1.SEQUENCE) || !cert.ReadASN1Element(&tbs, asn1.SEQUENCE) {
		return nil
	}
	return tbs
}

// FuzzLeafTBS compares the fast path's TBSCertificate with crypto/x509's
// for arbitrary names, addresses, lifetimes and usages: when crypto/x509
// encodes a template and the fast path does not decline, the two must be
// byte-identical; when crypto/x509 refuses, the fast path must decline.
func FuzzLeafTBS(f *testing.F) {
	f.Add("follower-0", "follower-server", "conjur-follower.conjur.svc.cluster.local", []byte{10, 0, 0, 1}, int64(1900000000), int64(3*86400), uint16(x509.KeyUsageDigitalSignature), uint8(2))
	f.Add("", "", "", []byte{}, int64(-700000000), int64(1), uint16(0), uint8(0))
	f.Add("älice*&", "p:q", "A.b", []byte(net.ParseIP("fd00::1")), int64(2600000000), int64(86400*365*40), uint16(0x1ff), uint8(0xff))
	f.Add("\xff", "x", "x", []byte{1, 2, 3}, int64(253402300799), int64(2), uint16(1<<8), uint8(4))
	ca := bootstrapCA(f, KeyECDSAP256)
	st := ca.state.Load()
	key, err := KeyECDSAP256.Generate()
	if err != nil {
		f.Fatal(err)
	}
	ekus := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageAny,
		x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageTimeStamping,
		x509.ExtKeyUsageOCSPSigning, x509.ExtKeyUsageIPSECUser}
	serial := new(big.Int).Lsh(big.NewInt(0xdead), 100)
	f.Fuzz(func(t *testing.T, cn, ou, dns string, ip []byte, notBefore, lifetime int64, ku uint16, ekuMask uint8) {
		spec := &leafSpec{commonName: cn, ou: ou, notBefore: time.Unix(notBefore, 0), keyUsage: x509.KeyUsage(ku), pub: key.Public()}
		spec.notAfter = spec.notBefore.Add(time.Duration(lifetime) * time.Second)
		for d := range strings.SplitSeq(dns, ",") {
			if d != "" {
				spec.dns = append(spec.dns, d)
			}
		}
		if len(ip) == net.IPv4len || len(ip) == net.IPv6len {
			spec.ips = []net.IP{ip}
		}
		for i, u := range ekus {
			if ekuMask&(1<<i) != 0 {
				spec.extKeyUsage = append(spec.extKeyUsage, u)
			}
		}
		spki, keyBits, err := marshalSPKI(spec.pub)
		if err != nil {
			t.Fatal(err)
		}
		ski := subjectKeyID(keyBits)
		got, gotErr := st.leaf.tbs(spec, serial, ski, spki)
		if gotErr != nil && gotErr != errDecline {
			t.Fatalf("tbs: %v (want a TBSCertificate or errDecline)", gotErr)
		}
		tmpl := spec.template()
		tmpl.SerialNumber, tmpl.SubjectKeyId = serial, ski
		der, wantErr := x509.CreateCertificate(rand.Reader, tmpl, st.chain[0], spec.pub, st.signer)
		switch {
		case wantErr != nil && gotErr == nil:
			t.Fatalf("crypto/x509 refuses (%v) what the fast path encoded", wantErr)
		case wantErr == nil && gotErr == nil && !bytes.Equal(got, tbsOf(der)):
			t.Fatalf("TBSCertificate differs\n got %x\nwant %x", got, tbsOf(der))
		}
	})
}
