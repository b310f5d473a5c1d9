package pki_test

import (
	"crypto/x509"
	"strings"
	"testing"

	"github.com/sowerproject/sower/pki"
)

func TestPin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	root, inter := f.ca.Roots()[0], f.ca.Chain()[0]
	pin := pki.PinOf(root)
	if s := pin.String(); !strings.HasPrefix(s, "sha256:") || len(s) != len("sha256:")+64 {
		t.Fatalf("pin renders as %q", s)
	}
	if !pin.Matches(root) || pin.Matches(inter) {
		t.Fatal("Matches")
	}
	if !pin.MatchesChain([]*x509.Certificate{inter, root}) || pin.MatchesChain([]*x509.Certificate{inter}) {
		t.Fatal("MatchesChain")
	}
	tests := map[string]struct {
		in string
		ok bool
	}{
		"canonical":  {pin.String(), true},
		"spaces":     {"  " + pin.String() + "\n", true},
		"upper hex":  {"sha256:" + strings.ToUpper(pin.String()[7:]), true},
		"no prefix":  {pin.String()[7:], false},
		"other hash": {"sha1:" + pin.String()[7:], false},
		"short":      {pin.String()[:70], false},
		"long":       {pin.String() + "00", false},
		"not hex":    {"sha256:" + strings.Repeat("zz", 32), false},
		"empty":      {"", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := pki.ParsePin(tc.in)
			if tc.ok != (err == nil) || tc.ok && got != pin {
				t.Fatalf("ParsePin(%q) = %s, %v", tc.in, got, err)
			}
			if err != nil && !strings.Contains(err.Error(), "sha256:") {
				t.Fatalf("error %q does not show the expected form", err)
			}
		})
	}
}
