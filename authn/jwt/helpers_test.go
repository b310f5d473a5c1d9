package jwt_test

import (
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sowerproject/sower/authn/internal/jwttest"
)

// signBytes signs an arbitrary payload (not necessarily JSON).
func signBytes(t *testing.T, k jwttest.Key, payload []byte) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Alg, Key: k.Priv}, (&jose.SignerOptions{}).WithHeader("kid", k.KID))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}
