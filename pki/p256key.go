package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
)

// The PKCS #8 encoding of an ECDSA P-256 private key has one layout: a
// fixed 35-byte prefix (lengths, version 0, the id-ecPublicKey algorithm
// with the prime256v1 curve, then inside the octet string the SEC 1
// ECPrivateKey: version 1 and the 32-byte scalar), 4 bytes that introduce
// the public key, and the 65-byte uncompressed point. It is written here
// byte for byte as x509.MarshalPKCS8PrivateKey writes it (which leaves the
// curve out of the inner SEC 1 structure, RFC 5915 section 3, since the
// algorithm identifier names it), without encoding/asn1's reflection or
// cryptobyte's builders: every certificate key a seed carries is encoded
// once. Other keys take the general path.
var (
	p256PKCS8Prefix = []byte{
		0x30, 0x81, 0x87, // SEQUENCE, 135 bytes: PrivateKeyInfo
		0x02, 0x01, 0x00, // INTEGER 0: version
		0x30, 0x13, // SEQUENCE, 19 bytes: AlgorithmIdentifier
		0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // OID 1.2.840.10045.2.1 id-ecPublicKey
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // OID 1.2.840.10045.3.1.7 prime256v1
		0x04, 0x6d, // OCTET STRING, 109 bytes
		0x30, 0x6b, // SEQUENCE, 107 bytes: ECPrivateKey
		0x02, 0x01, 0x01, // INTEGER 1: version
		0x04, 0x20, // OCTET STRING, 32 bytes: the private scalar
	}
	p256PKCS8PublicKey = []byte{
		0xa1, 0x44, // [1], 68 bytes
		0x03, 0x42, 0x00, // BIT STRING, 66 bytes, no unused bits: the public point
	}
)

// p256PKCS8Len is the length of every P-256 PKCS #8 private key.
const p256PKCS8Len = 138

// appendP256PKCS8 appends k's PKCS #8 DER when k is a P-256 key, and
// reports whether it did.
func appendP256PKCS8(dst []byte, k *ecdsa.PrivateKey) ([]byte, bool) {
	if k.Curve != elliptic.P256() {
		return dst, false
	}
	d, err := k.Bytes()
	if err != nil || len(d) != 32 {
		return dst, false
	}
	defer clear(d)
	pub, err := k.PublicKey.Bytes()
	if err != nil || len(pub) != 65 {
		return dst, false
	}
	dst = append(dst, p256PKCS8Prefix...)
	dst = append(dst, d...)
	dst = append(dst, p256PKCS8PublicKey...)
	return append(dst, pub...), true
}
