package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sowerproject/sower/authn"
)

// Algorithm is a signature algorithm for access tokens, named as in JWS.
type Algorithm string

// The algorithms the key ring signs with.
const (
	EdDSA Algorithm = "EdDSA"
	ES256 Algorithm = "ES256"
)

// KeyAADPrefix prefixes the additional authenticated data a signing key is
// sealed under; the key id follows, so a record moved to another id fails to open.
const KeyAADPrefix = "sower/authn/token/key/"

// SealedKey is one signing key as stored: its id and the sealed private key.
type SealedKey struct {
	KID    string
	Sealed []byte
}

// KeyStore keeps the sealed signing keys; the server implements it on etcd
// (one key per record, under a prefix that every node watches).
type KeyStore interface {
	// Keys returns every stored key.
	Keys(ctx context.Context) ([]SealedKey, error)
	// AddKey stores a new key.
	AddKey(ctx context.Context, k SealedKey) error
	// DeleteKey removes a key; deleting a missing key is not an error.
	DeleteKey(ctx context.Context, kid string) error
}

// keyRecord is the sealed plaintext of a signing key.
type keyRecord struct {
	Alg     Algorithm `json:"alg"`
	Created time.Time `json:"created"`
	PKCS8   []byte    `json:"pkcs8"`
}

// signingKey is a loaded key.
type signingKey struct {
	kid     string
	alg     Algorithm
	created time.Time
	priv    crypto.Signer
	pub     crypto.PublicKey
	// protected is the base64 protected header this key signs with.
	protected string
}

func newSigningKey(alg Algorithm, created time.Time, r io.Reader) (*signingKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(r)
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), r)
	default:
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, alg)
	}
	if err != nil {
		return nil, fmt.Errorf("token: generate %s key: %w", alg, err)
	}
	return loadedKey(alg, created, priv)
}

func loadedKey(alg Algorithm, created time.Time, priv crypto.Signer) (*signingKey, error) {
	pub := priv.Public()
	switch p := pub.(type) {
	case ed25519.PublicKey:
		if alg != EdDSA {
			return nil, fmt.Errorf("token: an Ed25519 key cannot sign %s", alg)
		}
	case *ecdsa.PublicKey:
		if alg != ES256 || p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("token: an ECDSA key on %s cannot sign %s", p.Curve.Params().Name, alg)
		}
	default:
		return nil, fmt.Errorf("token: unsupported key type %T", pub)
	}
	kid, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	hdr, _ := json.Marshal(header{Alg: string(alg), KID: kid, Typ: "JWT"})
	return &signingKey{
		kid: kid, alg: alg, created: created, priv: priv, pub: pub,
		protected: base64.StdEncoding.EncodeToString(hdr),
	}, nil
}

// keyID is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key.
func keyID(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("token: key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

func (k *signingKey) seal(s authn.Sealer) (SealedKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return SealedKey{}, fmt.Errorf("token: encode key %s: %w", k.kid, err)
	}
	plain, err := json.Marshal(keyRecord{Alg: k.alg, Created: k.created.UTC(), PKCS8: der})
	if err != nil {
		return SealedKey{}, fmt.Errorf("token: encode key %s: %w", k.kid, err)
	}
	sealed, err := s.Seal(KeyAADPrefix+k.kid, plain)
	if err != nil {
		return SealedKey{}, fmt.Errorf("token: seal key %s: %w", k.kid, err)
	}
	return SealedKey{KID: k.kid, Sealed: sealed}, nil
}

func openKey(s authn.Sealer, sk SealedKey) (*signingKey, error) {
	plain, err := s.Open(KeyAADPrefix+sk.KID, sk.Sealed)
	if err != nil {
		return nil, fmt.Errorf("token: open signing key %s (is this node's data key the cluster's?): %w", sk.KID, err)
	}
	var rec keyRecord
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, fmt.Errorf("token: decode signing key %s: %w", sk.KID, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(rec.PKCS8)
	if err != nil {
		return nil, fmt.Errorf("token: decode signing key %s: %w", sk.KID, err)
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("token: signing key %s is a %T", sk.KID, parsed)
	}
	k, err := loadedKey(rec.Alg, rec.Created, signer)
	if err != nil {
		return nil, fmt.Errorf("token: signing key %s: %w", sk.KID, err)
	}
	if k.kid != sk.KID {
		return nil, fmt.Errorf("token: signing key stored as %s has id %s", sk.KID, k.kid)
	}
	return k, nil
}

// sign signs the JWS signing input.
func (k *signingKey) sign(input []byte) ([]byte, error) {
	switch priv := k.priv.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(priv, input), nil
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	}
	return nil, errors.New("token: unsupported key")
}

// verify checks a JWS signature over input.
func (k *signingKey) verify(input, sig []byte) bool {
	switch pub := k.pub.(type) {
	case ed25519.PublicKey:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, input, sig)
	case *ecdsa.PublicKey:
		if len(sig) != 64 {
			return false
		}
		h := sha256.Sum256(input)
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pub, h[:], r, s)
	}
	return false
}

// ring is an immutable set of loaded keys.
type ring struct {
	byKID       map[string]*signingKey
	byProtected map[string]*signingKey
	current     *signingKey // the newest key: the one that signs
}

func newRing(keys []*signingKey) *ring {
	r := &ring{byKID: make(map[string]*signingKey, len(keys)), byProtected: make(map[string]*signingKey, len(keys))}
	for _, k := range keys {
		r.byKID[k.kid] = k
		r.byProtected[k.protected] = k
		if r.current == nil || k.created.After(r.current.created) ||
			(k.created.Equal(r.current.created) && k.kid > r.current.kid) {
			r.current = k
		}
	}
	return r
}
