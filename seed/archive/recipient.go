package archive

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sowerproject/sower/internal/keypool"
)

// Ephemerals is a pool of X25519 keys for sealing: age makes a new
// ephemeral key for every sealed file, and making it is half the cost of
// sealing (one scalar multiplication of two). A seed service that keeps
// some ready seals a burst of seeds at half the cost. Each key seals one
// seed and is dropped.
type Ephemerals = keypool.Pool[*ecdh.PrivateKey]

// NewEphemerals starts a pool of n ephemeral keys; Stop it when done.
func NewEphemerals(n int) *Ephemerals {
	return keypool.New(n, func() (*ecdh.PrivateKey, error) { return ecdh.X25519().GenerateKey(rand.Reader) })
}

// x25519Label is the HKDF info of age's X25519 recipient stanza (age v1
// format, https://age-encryption.org/v1).
const x25519Label = "age-encryption.org/v1/X25519"

// pooledRecipient wraps age file keys for an X25519 recipient exactly as
// age's own X25519Recipient does (same stanza, same key derivation), with
// the ephemeral key taken from a pool. age.Decrypt with the recipient's
// X25519Identity opens what it wraps.
type pooledRecipient struct {
	pub  *ecdh.PublicKey
	pool *Ephemerals
}

// PooledRecipient returns a recipient equivalent to r whose ephemeral keys
// come from pool.
func PooledRecipient(r *age.X25519Recipient, pool *Ephemerals) (age.Recipient, error) {
	raw, err := decodeAgeRecipient(r.String())
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecipient, err)
	}
	return &pooledRecipient{pub: pub, pool: pool}, nil
}

// Wrap implements age.Recipient.
func (r *pooledRecipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	eph, err := r.pool.Get()
	if err != nil {
		return nil, err
	}
	shared, err := eph.ECDH(r.pub) // refuses an all-zero result (low-order point)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecipient, err)
	}
	ours, theirs := eph.PublicKey().Bytes(), r.pub.Bytes()
	salt := make([]byte, 0, len(ours)+len(theirs))
	salt = append(append(salt, ours...), theirs...)
	wrapKey, err := hkdf.Key(sha256.New, shared, salt, x25519Label, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.New(wrapKey)
	if err != nil {
		return nil, err
	}
	// The wrapping key is used once, so the nonce is all zeros (as in age).
	body := aead.Seal(nil, make([]byte, chacha20poly1305.NonceSize), fileKey, nil)
	return []*age.Stanza{{
		Type: "X25519",
		Args: []string{base64.RawStdEncoding.EncodeToString(ours)},
		Body: body,
	}}, nil
}

// bech32 (BIP 173), the encoding of age recipients: decoding only, of
// strings age.ParseX25519Recipient has already accepted.
const bech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

var errBech32 = errors.New("not a valid age1 recipient")

func bech32Polymod(values []byte) uint32 {
	gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	chk := uint32(1)
	for _, v := range values {
		top := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i := range 5 {
			if (top>>i)&1 == 1 {
				chk ^= gen[i]
			}
		}
	}
	return chk
}

// decodeAgeRecipient returns the 32-byte key of an "age1..." string.
func decodeAgeRecipient(s string) ([]byte, error) {
	s = strings.ToLower(s)
	sep := strings.LastIndexByte(s, '1')
	if sep < 1 || s[:sep] != "age" || len(s)-sep-1 < 6 {
		return nil, fmt.Errorf("%w: %w", ErrBadRecipient, errBech32)
	}
	hrp, data := s[:sep], s[sep+1:]
	values := make([]byte, 0, 2*len(hrp)+1+len(data))
	for i := range len(hrp) {
		values = append(values, hrp[i]>>5)
	}
	values = append(values, 0)
	for i := range len(hrp) {
		values = append(values, hrp[i]&31)
	}
	for i := range len(data) {
		d := strings.IndexByte(bech32Charset, data[i])
		if d < 0 {
			return nil, fmt.Errorf("%w: %w", ErrBadRecipient, errBech32)
		}
		values = append(values, byte(d))
	}
	if bech32Polymod(values) != 1 {
		return nil, fmt.Errorf("%w: %w", ErrBadRecipient, errBech32)
	}
	// Regroup the 5-bit words (without the 6 checksum words) into bytes.
	words := values[len(values)-len(data) : len(values)-6]
	var out []byte
	acc, bits := uint32(0), uint(0)
	for _, w := range words {
		acc = acc<<5 | uint32(w)
		bits += 5
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
		}
	}
	if bits >= 5 || acc&(1<<bits-1) != 0 || len(out) != 32 {
		return nil, fmt.Errorf("%w: %w", ErrBadRecipient, errBech32)
	}
	return out, nil
}
