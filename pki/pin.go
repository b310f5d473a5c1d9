package pki

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// PinPrefix is the only hash algorithm a pin may name. The format follows
// kubeadm's --discovery-token-ca-cert-hash: "sha256:" and the lower-case hex
// SHA-256 of the certificate's DER SubjectPublicKeyInfo.
const PinPrefix = "sha256:"

// ErrPinMismatch is returned when no certificate of a chain matches the pin.
var ErrPinMismatch = errors.New("pki: no certificate in the chain matches the CA pin")

// Pin is the SHA-256 of a CA's public key. A client that holds a pin trusts a
// server whose chain leads to that key, and nothing else: this is how a node
// with nothing but a seed URL and a pin bootstraps trust.
type Pin [sha256.Size]byte

// PinOf returns the pin of a certificate's public key.
func PinOf(cert *x509.Certificate) Pin {
	return Pin(sha256.Sum256(cert.RawSubjectPublicKeyInfo))
}

// String renders the pin as "sha256:<hex>".
func (p Pin) String() string { return PinPrefix + hex.EncodeToString(p[:]) }

// Matches reports whether cert carries the pinned public key.
func (p Pin) Matches(cert *x509.Certificate) bool {
	got := PinOf(cert)
	return subtle.ConstantTimeCompare(got[:], p[:]) == 1
}

// MatchesChain reports whether any certificate of chain carries the pinned key.
// Callers pass a chain that has already been verified, so that a pin can only
// match a CA that actually signed the leaf.
func (p Pin) MatchesChain(chain []*x509.Certificate) bool {
	for _, c := range chain {
		if p.Matches(c) {
			return true
		}
	}
	return false
}

// ParsePin parses "sha256:<64 hex digits>".
func ParsePin(s string) (Pin, error) {
	var p Pin
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, PinPrefix) {
		return p, fmt.Errorf("pki: CA pin must start with %q (run `sower ca pin` on the Leader to get it)", PinPrefix)
	}
	raw, err := hex.DecodeString(strings.TrimPrefix(s, PinPrefix))
	if err != nil || len(raw) != sha256.Size {
		return p, fmt.Errorf("pki: CA pin must be %q followed by %d hex digits", PinPrefix, 2*sha256.Size)
	}
	copy(p[:], raw)
	return p, nil
}
