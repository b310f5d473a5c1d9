package apikey

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/bcrypt"

	"github.com/sowerproject/sower/authn"
)

// PepperAAD is the additional authenticated data under which the pepper is sealed.
const PepperAAD = "sower/authn/apikey/pepper"

// PepperBytes is the size of a pepper made by NewPepper, and the least New accepts.
const PepperBytes = 32

// SchemeHMACSHA256 names how Credential.APIKeyHash was computed; a record with
// another scheme is refused, so that a future scheme can be rolled out.
const SchemeHMACSHA256 = "hmac-sha256-v1"

// bcryptCost is the work factor for passwords; Conjur uses 12.
const bcryptCost = 12

var (
	// ErrPepperTooShort is returned for a pepper of fewer than PepperBytes bytes.
	ErrPepperTooShort = errors.New("apikey: pepper must be at least 32 bytes")
)

// NewPepper returns a new random pepper (r is crypto/rand when nil). The
// Leader makes one when the cluster is created, seals it with SealPepper and
// stores it; every node opens it with OpenPepper.
func NewPepper(r io.Reader) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	p := make([]byte, PepperBytes)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, fmt.Errorf("apikey: read randomness for pepper: %w", err)
	}
	return p, nil
}

// SealPepper seals the pepper for storage.
func SealPepper(s authn.Sealer, pepper []byte) ([]byte, error) {
	if len(pepper) < PepperBytes {
		return nil, ErrPepperTooShort
	}
	out, err := s.Seal(PepperAAD, pepper)
	if err != nil {
		return nil, fmt.Errorf("apikey: seal pepper: %w", err)
	}
	return out, nil
}

// OpenPepper opens a pepper sealed by SealPepper.
func OpenPepper(s authn.Sealer, sealed []byte) ([]byte, error) {
	p, err := s.Open(PepperAAD, sealed)
	if err != nil {
		return nil, fmt.Errorf("apikey: open pepper (is this node's data key the cluster's?): %w", err)
	}
	if len(p) < PepperBytes {
		return nil, ErrPepperTooShort
	}
	return p, nil
}

// hasher computes the keyed hashes of API keys and the pre-hash of passwords.
type hasher struct{ pepper []byte }

// apiKeyHash is HMAC-SHA256(pepper, "apikey\0" role "\0" key). Binding the role
// id means a hash copied to another role's record does not log that role in.
func (h hasher) apiKeyHash(roleID, key string) []byte {
	m := hmac.New(sha256.New, h.pepper)
	m.Write([]byte("apikey\x00"))
	m.Write([]byte(roleID))
	m.Write([]byte{0})
	m.Write([]byte(key))
	return m.Sum(nil)
}

// passwordInput turns a password into bcrypt's input: the peppered HMAC in
// base64 (44 bytes, under bcrypt's 72-byte limit, so long passwords are not
// truncated).
func (h hasher) passwordInput(roleID, password string) []byte {
	m := hmac.New(sha256.New, h.pepper)
	m.Write([]byte("password\x00"))
	m.Write([]byte(roleID))
	m.Write([]byte{0})
	m.Write([]byte(password))
	sum := m.Sum(nil)
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sum)))
	base64.StdEncoding.Encode(out, sum)
	return out
}

func (h hasher) passwordHash(roleID, password string) ([]byte, error) {
	return bcrypt.GenerateFromPassword(h.passwordInput(roleID, password), bcryptCost)
}

func (h hasher) checkPassword(stored []byte, roleID, password string) bool {
	return bcrypt.CompareHashAndPassword(stored, h.passwordInput(roleID, password)) == nil
}

func equalHash(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
