package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"

	"go.step.sm/crypto/keyutil"
)

// KeyType names a key algorithm for CA keys and generated certificate keys.
type KeyType string

// Supported key types. ECDSA P-256 is the default: fast to generate and to
// verify, and accepted by every TLS stack sower talks to.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyEd25519   KeyType = "ed25519"
	KeyRSA2048   KeyType = "rsa-2048"
	KeyRSA3072   KeyType = "rsa-3072"
	KeyRSA4096   KeyType = "rsa-4096"
)

// DefaultKeyType is used when neither the CA options nor the request name one.
const DefaultKeyType = KeyECDSAP256

var keyTypeParams = map[KeyType]struct {
	kty, crv string
	size     int
}{
	KeyECDSAP256: {"EC", "P-256", 0},
	KeyECDSAP384: {"EC", "P-384", 0},
	KeyEd25519:   {"OKP", "Ed25519", 0},
	KeyRSA2048:   {"RSA", "", 2048},
	KeyRSA3072:   {"RSA", "", 3072},
	KeyRSA4096:   {"RSA", "", 4096},
}

// ParseKeyType accepts the names of the constants above, case-insensitively.
func ParseKeyType(s string) (KeyType, error) {
	k := KeyType(strings.ToLower(strings.TrimSpace(s)))
	if _, ok := keyTypeParams[k]; !ok {
		return "", fmt.Errorf("pki: unknown key type %q (use one of ecdsa-p256, ecdsa-p384, ed25519, rsa-2048, rsa-3072, rsa-4096)", s)
	}
	return k, nil
}

// Generate creates a new private key of this type.
func (k KeyType) Generate() (crypto.Signer, error) {
	p, ok := keyTypeParams[k]
	if !ok {
		return nil, fmt.Errorf("pki: unknown key type %q", string(k))
	}
	s, err := keyutil.GenerateSigner(p.kty, p.crv, p.size)
	if err != nil {
		return nil, fmt.Errorf("pki: generate %s key: %w", k, err)
	}
	return s, nil
}

// checkPublicKey refuses keys too weak (or too exotic) to be certified.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521() {
			return fmt.Errorf("ECDSA curve %s is not supported (use P-256 or P-384)", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too short (at least 2048)", k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("public key type %T is not supported", pub)
	}
	return nil
}
