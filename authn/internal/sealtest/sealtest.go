// Package sealtest provides a real AES-GCM authn.Sealer for tests, standing in
// for the server's data-key sealer.
package sealtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
)

// Sealer seals with AES-256-GCM under a random key; Fail makes the next calls fail.
type Sealer struct {
	aead cipher.AEAD
	Fail error
}

// New returns a Sealer with a fresh random key.
func New() *Sealer {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &Sealer{aead: aead}
}

// Seal implements authn.Sealer.
func (s *Sealer) Seal(aad string, plaintext []byte) ([]byte, error) {
	if s.Fail != nil {
		return nil, s.Fail
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plaintext, []byte(aad)), nil
}

// Open implements authn.Sealer.
func (s *Sealer) Open(aad string, ciphertext []byte) ([]byte, error) {
	if s.Fail != nil {
		return nil, s.Fail
	}
	n := s.aead.NonceSize()
	if len(ciphertext) < n {
		return nil, errors.New("sealtest: ciphertext too short")
	}
	return s.aead.Open(nil, ciphertext[:n], ciphertext[n:], []byte(aad))
}
