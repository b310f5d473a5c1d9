package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"go.step.sm/crypto/pemutil"
)

// TestP256PKCS8MatchesX509: the hand-written P-256 encoding is byte for
// byte what x509.MarshalPKCS8PrivateKey writes (and pemutil, which calls
// it, as the key PEM did before), for many keys, including scalars with
// leading zero bytes, and it parses back to the same key.
func TestP256PKCS8MatchesX509(t *testing.T) {
	keys := make([]*ecdsa.PrivateKey, 0, 520)
	for range 500 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	// Small scalars: the 32 bytes must be left-padded with zeros.
	for _, b := range [][]byte{{1}, {0x7f}, {0x80}, {1, 0}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}} {
		raw := make([]byte, 32)
		copy(raw[32-len(b):], b)
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	for i, k := range keys {
		want, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendP256PKCS8([]byte("prefix"), k)
		if !ok || string(got[len("prefix"):]) != string(want) {
			t.Fatalf("key %d: got %x (ok %v), want %x", i, got, ok, want)
		}
		if len(want) != p256PKCS8Len {
			t.Fatalf("key %d: %d bytes, want %d", i, len(want), p256PKCS8Len)
		}
		pemGot, err := encodePrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		block, err := pemutil.Serialize(k, pemutil.WithPKCS8(true))
		if err != nil {
			t.Fatal(err)
		}
		if pemWant := pem.EncodeToMemory(block); string(pemGot) != string(pemWant) {
			t.Fatalf("key %d: PEM\n%s\nwant\n%s", i, pemGot, pemWant)
		}
		back, err := parsePrivateKeyPEM(pemGot, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !k.Equal(back) {
			t.Fatalf("key %d: parsed back to a different key", i)
		}
	}
}

// Keys of other curves keep the general encoding.
func TestP256PKCS8OtherCurves(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := appendP256PKCS8(nil, k); ok {
			t.Fatalf("%s: encoded as P-256", c.Params().Name)
		}
		got, err := encodePrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := x509.MarshalPKCS8PrivateKey(k)
		if b, _ := pem.Decode(got); b == nil || b.Type != "PRIVATE KEY" || string(b.Bytes) != string(want) {
			t.Fatalf("%s: PEM %s", c.Params().Name, got)
		}
	}
}
