package pki_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sowerproject/sower/pki"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// fuzzKeyring is a fixed test key so that the sealed seeds in testdata stay
// valid. It protects nothing.
const fuzzKeyring = "sower-data-keyring v1\n1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n2 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n"

const fuzzAAD = "/sower/secrets/db-password"

func fuzzKeys(t testing.TB) *pki.Keyring {
	k, err := pki.ParseKeyring([]byte(fuzzKeyring))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Seed values are built here and, with -update, written to testdata/fuzz in
// the corpus file format, so `go test` replays them on every run.
func fuzzSeeds(t testing.TB) map[string][][]any {
	k := fuzzKeys(t)
	sealed, err := k.Seal(fuzzAAD, []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	crt := f.issue(t, pki.ProfileAdminClient, pki.Request{CommonName: "alice"})
	keyPEM, _ := crt.KeyPEM()
	return map[string][][]any{
		"FuzzParsePin": {
			{f.ca.Pin().String()}, {"sha256:"}, {"sha256:zz"}, {""},
		},
		"FuzzOpen": {
			{fuzzAAD, sealed}, {fuzzAAD, sealed[:30]}, {"/other", sealed}, {fuzzAAD, []byte("S1")},
		},
		"FuzzParseKeyring": {
			{[]byte(fuzzKeyring)}, {[]byte("sower-data-keyring v1\n")}, {[]byte("sower-data-keyring v1\n4294967295 AAAA\n")},
		},
		"FuzzParseSerial": {
			{"3a:f1:07"}, {"0xff"}, {"12345"}, {"::"}, {"-1"},
		},
		"FuzzParseIssued": {
			{crt.CertPEM(), keyPEM}, {f.ca.BundlePEM(), keyPEM}, {[]byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"), []byte{}},
		},
	}
}

func TestFuzzCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	for name, seeds := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, args := range seeds {
			var b bytes.Buffer
			b.WriteString("go test fuzz v1\n")
			for _, a := range args {
				switch v := a.(type) {
				case string:
					fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
				case []byte:
					fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
				}
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func FuzzParsePin(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		p, err := pki.ParsePin(s)
		if err != nil {
			return
		}
		back, err := pki.ParsePin(p.String())
		if err != nil || back != p {
			t.Fatalf("round trip of %q: %v", s, err)
		}
	})
}

// FuzzOpen: sealed values come from etcd, which an attacker may write to.
// Open must never panic, and never accept anything but the seeded value.
func FuzzOpen(f *testing.F) {
	k := fuzzKeys(f)
	f.Fuzz(func(t *testing.T, aad string, data []byte) {
		plain, err := k.Open(aad, data)
		if err != nil {
			if plain != nil {
				t.Fatal("bytes returned with an error")
			}
			return
		}
		if aad != fuzzAAD || string(plain) != "hunter2" {
			t.Fatalf("opened a forged value: aad %q, plaintext %q", aad, plain)
		}
	})
}

func FuzzParseKeyring(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := pki.ParseKeyring(data)
		if err != nil {
			return
		}
		back, err := pki.ParseKeyring(k.Marshal())
		if err != nil || fmt.Sprint(back.Versions()) != fmt.Sprint(k.Versions()) || back.Primary() != k.Primary() {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseSerial(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		n, err := pki.ParseSerial(s)
		if err != nil {
			return
		}
		back, err := pki.ParseSerial(pki.FormatSerial(n))
		if err != nil || back.Cmp(n) != 0 {
			t.Fatalf("round trip of %q: %v", s, err)
		}
	})
}

// FuzzParseIssued: seeds carry certificates and keys in PEM.
func FuzzParseIssued(f *testing.F) {
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		if _, err := pki.ParseCertificatesPEM(certPEM); err != nil {
			return
		}
		c, err := pki.ParseIssued(certPEM, keyPEM)
		if err != nil {
			return
		}
		if _, err := c.TLSCertificate(); err != nil {
			t.Fatalf("parsed but unusable: %v", err)
		}
	})
}
