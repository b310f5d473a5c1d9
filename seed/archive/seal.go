package archive

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// The age v1 file format (https://age-encryption.org/v1), written here for
// a whole payload held in memory: the header (one line per recipient
// stanza, its body in base64 wrapped at 64 columns, then the MAC line),
// a 16-byte nonce, and the payload in ChaCha20-Poly1305 chunks of 64 KiB
// (STREAM: an 11-byte big-endian counter and a last-chunk flag as the
// nonce). age.Encrypt streams the same bytes through a chunk buffer it
// grows per file and copies into the destination: for a seed, about 30 KB
// allocated and two copies of the archive, a fifth of a seed's garbage.
// age.Decrypt opens what this writes (seal_test.go).
const (
	ageIntro        = "age-encryption.org/v1\n"
	ageFileKeySize  = 16
	ageNonceSize    = 16
	ageChunkSize    = 64 << 10
	ageStanzaColumn = 64
)

// ageSealedSize is the length of the payload part (nonce and chunks) of
// an age file of n plaintext bytes.
func ageSealedSize(n int) int {
	chunks := max(1, (n+ageChunkSize-1)/ageChunkSize)
	return ageNonceSize + n + chunks*chacha20poly1305.Overhead
}

// sealAge writes plaintext to w as an age file encrypted to r. It takes
// recipients without labels (age.RecipientWithLabels, which age checks
// across recipients, goes through age.Encrypt instead).
func sealAge(w io.Writer, r age.Recipient, plaintext []byte) error {
	var fileKey [ageFileKeySize]byte
	rand.Read(fileKey[:])
	defer clear(fileKey[:])
	stanzas, err := r.Wrap(fileKey[:])
	if err != nil {
		return err
	}
	if len(stanzas) == 0 {
		return fmt.Errorf("the recipient made no stanza")
	}
	hdrLen := len(ageIntro) + len("--- ") + base64.RawStdEncoding.EncodedLen(sha256.Size) + 1
	for _, s := range stanzas {
		if !validAgeString(s.Type) {
			return fmt.Errorf("invalid stanza type %q", s.Type)
		}
		hdrLen += len("-> ") + len(s.Type) + 1
		for _, a := range s.Args {
			if !validAgeString(a) {
				return fmt.Errorf("invalid stanza argument %q", a)
			}
			hdrLen += 1 + len(a)
		}
		b64 := base64.RawStdEncoding.EncodedLen(len(s.Body))
		hdrLen += b64 + b64/ageStanzaColumn + 1
	}
	size := hdrLen + ageSealedSize(len(plaintext))
	var out []byte
	bb, direct := w.(*bytes.Buffer)
	if direct {
		bb.Grow(size)
		out = bb.AvailableBuffer()
	} else {
		out = make([]byte, 0, size)
	}

	out = append(out, ageIntro...)
	for _, s := range stanzas {
		out = append(out, "-> "...)
		out = append(out, s.Type...)
		for _, a := range s.Args {
			out = append(out, ' ')
			out = append(out, a...)
		}
		out = append(out, '\n')
		out = appendWrappedBase64(out, s.Body)
		out = append(out, '\n')
	}
	out = append(out, "---"...)
	hmacKey, err := hkdf.Key(sha256.New, fileKey[:], nil, "header", 32)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, hmacKey)
	mac.Write(out)
	var sum [sha256.Size]byte
	out = append(out, ' ')
	out = base64.RawStdEncoding.AppendEncode(out, mac.Sum(sum[:0]))
	out = append(out, '\n')

	nonce := out[len(out) : len(out)+ageNonceSize]
	rand.Read(nonce)
	out = out[:len(out)+ageNonceSize]
	key, err := hkdf.Key(sha256.New, fileKey[:], nonce, "payload", chacha20poly1305.KeySize)
	if err != nil {
		return err
	}
	aead, err := chacha20poly1305.New(key)
	clear(key)
	if err != nil {
		return err
	}
	var chunkNonce [chacha20poly1305.NonceSize]byte
	for counter := uint64(0); ; counter++ {
		n := min(len(plaintext), ageChunkSize)
		last := n == len(plaintext)
		binary.BigEndian.PutUint64(chunkNonce[3:11], counter)
		if last {
			chunkNonce[11] = 1
		}
		out = aead.Seal(out, chunkNonce[:], plaintext[:n], nil)
		plaintext = plaintext[n:]
		if last {
			break
		}
	}
	if len(out) != size {
		return fmt.Errorf("internal error: sealed %d bytes, expected %d", len(out), size)
	}
	_, err = w.Write(out) // into a bytes.Buffer: onto itself
	return err
}

// appendWrappedBase64 appends data in unpadded base64 with a newline
// after every 64 characters, so that the last line is shorter than 64
// (empty when the length is a multiple of 48 bytes), as age writes stanza
// bodies.
func appendWrappedBase64(dst, data []byte) []byte {
	for len(data) >= ageStanzaColumn/4*3 {
		dst = base64.RawStdEncoding.AppendEncode(dst, data[:ageStanzaColumn/4*3])
		dst = append(dst, '\n')
		data = data[ageStanzaColumn/4*3:]
	}
	return base64.RawStdEncoding.AppendEncode(dst, data)
}

// validAgeString is age's rule for stanza types and arguments: non-empty,
// printable ASCII without spaces.
func validAgeString(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}
