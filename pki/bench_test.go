package pki_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/sowerproject/sower/pki"
)

// reportCPU adds the CPU time per operation since start (see cpuTime).
func reportCPU(b *testing.B, start time.Duration) {
	if used := cpuTime() - start; used > 0 && b.N > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

var followerReq = pki.Request{CommonName: "follower-0", DNSNames: []string{"conjur-follower.conjur.svc.cluster.local"}}

// BenchmarkIssueFollower is the measure of issue 3: one Follower server
// certificate, key generation and signing, in process. The CA generates the
// key, so it signs through the soft CAS directly.
func BenchmarkIssueFollower(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		if _, err := f.ca.Issue(ctx, pki.ProfileFollowerServer, followerReq); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssueFollowerCSR is the same certificate through smallstep's
// embedded authority (authority.Sign): the requester makes a key and a CSR,
// the authority verifies the CSR's signature (twice: once in Sign, once in
// x509util.NewCertificate), then signs.
func BenchmarkIssueFollowerCSR(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		_, csr, err := pki.NewCSR(followerReq, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.ca.Issue(ctx, pki.ProfileFollowerServer, pki.RequestFromCSR(csr)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssueFollowerStdlib is the floor: key generation and
// crypto/x509.CreateCertificate with the same kind of keys, no profile and
// no smallstep. CreateCertificate verifies the signature it made, so one
// ECDSA verification is in every path.
func BenchmarkIssueFollowerStdlib(b *testing.B) {
	inter := newExternal(b, "Issuing CA", nil, true, t0.Add(24*time.Hour), 0)
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		key, err := pki.KeyECDSAP256.Generate()
		if err != nil {
			b.Fatal(err)
		}
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: followerReq.CommonName},
			DNSNames:     followerReq.DNSNames,
			NotBefore:    t0,
			NotAfter:     t0.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, inter.cert, key.Public(), inter.key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal1KiB(b *testing.B) {
	k := mustKeyring(b)
	v := make([]byte, 1024)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		if _, err := k.Seal("/sower/secrets/x", v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen1KiB(b *testing.B) {
	k := mustKeyring(b)
	sealed, _ := k.Seal("/sower/secrets/x", make([]byte, 1024))
	b.SetBytes(1024)
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		if _, err := k.Open("/sower/secrets/x", sealed); err != nil {
			b.Fatal(err)
		}
	}
}
