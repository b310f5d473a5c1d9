package jwt

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Settings are an authn-jwt service's settings, named after the Conjur
// variables that hold them.
type Settings struct {
	// JWKSURI is jwks-uri: an https URL serving a JWK Set.
	JWKSURI string
	// PublicKeys is public-keys: {"type":"jwks","value":{"keys":[...]}}.
	PublicKeys string
	// CACert is ca-cert: PEM certificates that the jwks-uri server's chain
	// must lead to (instead of the system roots).
	CACert string
	// ProviderURI is provider-uri (OIDC discovery); sower does not support it
	// and New says to use jwks-uri.
	ProviderURI string
	// Issuer is issuer: the required iss. Required with public-keys.
	Issuer string
	// Audience is audience: a value the token's aud must contain.
	Audience string
	// TokenAppProperty is token-app-property: the claim naming the host.
	TokenAppProperty string
	// IdentityPath is identity-path: the policy path prefixed to that host.
	IdentityPath string
}

// ErrSettings is matched by every settings error from New.
var ErrSettings = errors.New("jwt: invalid authenticator settings")

func settingsError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSettings, fmt.Sprintf(format, args...))
}

// validate applies Conjur's rules on which settings go together.
func (s Settings) validate() error {
	switch {
	case s.ProviderURI != "":
		return settingsError("provider-uri is not supported; set jwks-uri to the provider's JWKS URL instead")
	case s.JWKSURI == "" && s.PublicKeys == "":
		return settingsError("one of jwks-uri and public-keys has to be set")
	case s.JWKSURI != "" && s.PublicKeys != "":
		return settingsError("jwks-uri and public-keys cannot both be set")
	case s.CACert != "" && s.JWKSURI == "":
		return settingsError("ca-cert can be set only with jwks-uri")
	case s.PublicKeys != "" && s.Issuer == "":
		return settingsError("issuer is mandatory when public-keys is set")
	}
	if s.JWKSURI != "" {
		u, err := url.Parse(s.JWKSURI)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return settingsError("jwks-uri %q must be an https:// URL", s.JWKSURI)
		}
	}
	if s.TokenAppProperty != "" {
		if _, err := parseClaimPath(s.TokenAppProperty); err != nil {
			return settingsError("token-app-property: %v", err)
		}
	}
	return nil
}

// parsePublicKeys reads the public-keys variable.
func parsePublicKeys(v string) ([]jose.JSONWebKey, error) {
	var pk struct {
		Type  string              `json:"type"`
		Value *jose.JSONWebKeySet `json:"value"`
	}
	if err := json.Unmarshal([]byte(v), &pk); err != nil {
		return nil, settingsError("public-keys is not valid JSON: %v", err)
	}
	if pk.Type != "jwks" {
		return nil, settingsError("public-keys type %q is not valid; valid types are: jwks", pk.Type)
	}
	if pk.Value == nil || len(pk.Value.Keys) == 0 {
		return nil, settingsError("public-keys value is not a valid JWKS (RFC 7517): no keys")
	}
	keys, err := usableKeys(pk.Value.Keys)
	if err != nil {
		return nil, settingsError("public-keys: %v", err)
	}
	return keys, nil
}

func parseCACert(pemText string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	rest := []byte(pemText)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, settingsError("ca-cert: %v", err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 || strings.TrimSpace(string(rest)) != "" {
		return nil, settingsError("ca-cert must be one or more PEM certificates")
	}
	return pool, nil
}
