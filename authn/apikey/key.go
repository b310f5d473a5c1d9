package apikey

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
)

// crockford is Crockford's base32 alphabet in lower case, as Conjur writes API keys.
const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

const (
	// KeyBytes is how many random bytes an API key carries (256 bits).
	KeyBytes = 32
	// KeyLen is the length of a generated API key: 8 words of 7 digits.
	KeyLen = KeyBytes / 4 * wordDigits
	// wordDigits is how many base32 digits a 32-bit word needs.
	wordDigits = 7
)

// Generate returns a new API key made from KeyBytes bytes of r (crypto/rand
// when r is nil).
//
// Conjur's Credentials.random_api_key takes 32 random bytes, unpacks them as
// eight big-endian uint32 and encodes each in lower-case Crockford base32
// without leading zeros. Sower zero-pads each word to 7 digits, so keys have a
// fixed length and all 2^256 values stay distinct; they look and parse like
// Conjur's.
func Generate(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var raw [KeyBytes]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return "", fmt.Errorf("apikey: read randomness: %w", err)
	}
	out := make([]byte, KeyLen)
	for w := range KeyBytes / 4 {
		v := binary.BigEndian.Uint32(raw[4*w:])
		for d := wordDigits - 1; d >= 0; d-- {
			out[w*wordDigits+d] = crockford[v&31]
			v >>= 5
		}
	}
	return string(out), nil
}
