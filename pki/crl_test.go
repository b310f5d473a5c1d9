package pki_test

import (
	"crypto/x509"
	"math/big"
	"testing"
	"time"
)

// TestCRLListsSerialsSignedByTheIssuingCA: the list etcd's listeners read
// names exactly the revoked serials and verifies against the issuing CA.
func TestCRLListsSerialsSignedByTheIssuingCA(t *testing.T) {
	f := newFixture(t)
	serials := []*big.Int{big.NewInt(0x3af1), big.NewInt(7)}
	der, err := f.ca.CRL(serials, big.NewInt(1), time.Now(), time.Hour)
	if err != nil {
		t.Fatalf("CRL: %v", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(f.ca.Chain()[0]); err != nil {
		t.Fatalf("CRL not signed by the issuing CA: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 2 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(serials[0]) != 0 {
		t.Fatalf("entries %v", crl.RevokedCertificateEntries)
	}
	empty, err := f.ca.CRL(nil, big.NewInt(2), time.Now(), time.Hour)
	if err != nil {
		t.Fatalf("an empty CRL (what a new node starts with): %v", err)
	}
	if crl, err := x509.ParseRevocationList(empty); err != nil || len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("empty CRL: %v %v", crl, err)
	}
}
