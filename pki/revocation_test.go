package pki_test

import (
	"math/big"
	"slices"
	"testing"

	"github.com/sowerproject/sower/pki"
)

func TestRevokedSet(t *testing.T) {
	t.Parallel()
	a, b, c := big.NewInt(1), new(big.Int).Lsh(big.NewInt(1), 120), big.NewInt(0xabcdef)
	s := pki.NewRevokedSet(a, nil)
	s.Add(b)
	if !s.IsRevoked(big.NewInt(1)) || !s.IsRevoked(new(big.Int).Set(b)) || s.IsRevoked(c) || s.IsRevoked(nil) {
		t.Fatal("membership wrong")
	}
	if got := s.Serials(); len(got) != 2 || got[0].Cmp(a) != 0 || got[1].Cmp(b) != 0 {
		t.Fatalf("Serials = %v", got)
	}
	s.Remove(a)
	if s.IsRevoked(a) || s.Len() != 1 {
		t.Fatal("Remove")
	}
	s.Replace([]*big.Int{c})
	if s.IsRevoked(b) || !s.IsRevoked(c) || s.Len() != 1 {
		t.Fatal("Replace")
	}
	var zero pki.RevokedSet
	zero.Add(a)
	if !zero.IsRevoked(a) {
		t.Fatal("zero value must be usable")
	}
}

func TestSerialFormat(t *testing.T) {
	t.Parallel()
	n, _ := new(big.Int).SetString("3af107c2", 16)
	tests := map[string]struct {
		in   string
		want *big.Int
	}{
		"colon hex":       {"3a:f1:07:c2", n},
		"colon hex upper": {"3A:F1:07:C2", n},
		"0x hex":          {"0x3af107c2", n},
		"decimal":         {"988874690", n},
		"bare hex":        {"3af107c2", n},
		"spaces":          {"  3a:f1:07:c2\n", n},
		"empty":           {"", nil},
		"negative":        {"-5", nil},
		"double colon":    {"3a::f1", nil},
		"leading colon":   {":3a", nil},
		"not a number":    {"revoke-me", nil},
		"too long":        {"0x" + string(slices.Repeat([]byte("f"), 41)), nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := pki.ParseSerial(tc.in)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("parsed %q as %v", tc.in, got)
				}
				return
			}
			if err != nil || got.Cmp(tc.want) != 0 {
				t.Fatalf("ParseSerial(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
	if got := pki.FormatSerial(n); got != "3a:f1:07:c2" {
		t.Fatalf("FormatSerial = %q", got)
	}
	for n, want := range map[int64]string{0: "00:00", 17: "00:11", 0x1234: "12:34"} {
		if got := pki.FormatSerial(big.NewInt(n)); got != want {
			t.Fatalf("FormatSerial(%d) = %q, want %q", n, got, want)
		}
	}
	back, err := pki.ParseSerial(pki.FormatSerial(n))
	if err != nil || back.Cmp(n) != 0 {
		t.Fatal("round trip")
	}
}
