package jwt

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/sowerproject/sower/authn"
)

// Defaults.
const (
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// DefaultRefreshInterval is the least time between two JWKS fetches, so
	// that tokens with made-up kids cannot make sower hammer the issuer.
	DefaultRefreshInterval = 10 * time.Second
	// DefaultCacheTTL is how long a fetched JWKS is used before it is fetched
	// again on the next verification.
	DefaultCacheTTL = time.Hour
	// DefaultFetchTimeout bounds one JWKS fetch.
	DefaultFetchTimeout = 10 * time.Second
	// MaxTokenSize bounds the tokens Verify reads.
	MaxTokenSize = 16 << 10
)

// DefaultAlgorithms is the allow-list of signature algorithms: asymmetric
// ones only. "none" and HMAC (HS256, ...) are never accepted: with HMAC a
// public key would become a shared secret anyone can sign with.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Option changes an optional behaviour of an Authenticator.
type Option func(*options)

type options struct {
	client          *http.Client
	now             func() time.Time
	leeway          time.Duration
	algs            []string
	refreshInterval time.Duration
	cacheTTL        time.Duration
	fetchTimeout    time.Duration
}

// WithHTTPClient sets the client that fetches jwks-uri; it replaces the
// ca-cert setting (the client's own TLS settings apply). Use it to add a
// bearer token for a Kubernetes API server's JWKS endpoint.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLeeway sets the clock skew allowed on exp, nbf and iat (default DefaultLeeway).
func WithLeeway(d time.Duration) Option { return func(o *options) { o.leeway = d } }

// WithAlgorithms narrows the algorithm allow-list. Algorithms outside
// DefaultAlgorithms make New fail.
func WithAlgorithms(algs ...string) Option { return func(o *options) { o.algs = algs } }

// WithRefreshInterval sets the least time between two JWKS fetches.
func WithRefreshInterval(d time.Duration) Option { return func(o *options) { o.refreshInterval = d } }

// WithCacheTTL sets how long a fetched JWKS is trusted before being fetched again.
func WithCacheTTL(d time.Duration) Option { return func(o *options) { o.cacheTTL = d } }

// Authenticator verifies tokens of one authn-jwt service.
type Authenticator struct {
	settings Settings
	o        options
	algs     []jose.SignatureAlgorithm
	keys     keySource
}

// New checks settings and returns an Authenticator. With jwks-uri nothing is
// fetched until the first Verify. Close releases idle connections.
func New(s Settings, opts ...Option) (*Authenticator, error) {
	o := options{now: time.Now, leeway: DefaultLeeway, algs: DefaultAlgorithms,
		refreshInterval: DefaultRefreshInterval, cacheTTL: DefaultCacheTTL, fetchTimeout: DefaultFetchTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	if len(o.algs) == 0 {
		return nil, settingsError("the algorithm allow-list is empty")
	}
	a := &Authenticator{settings: s, o: o}
	for _, alg := range o.algs {
		if !slices.Contains(DefaultAlgorithms, alg) {
			return nil, settingsError("algorithm %q cannot be allowed; choose from %s", alg, strings.Join(DefaultAlgorithms, ", "))
		}
		a.algs = append(a.algs, jose.SignatureAlgorithm(alg))
	}
	if s.PublicKeys != "" {
		keys, err := parsePublicKeys(s.PublicKeys)
		if err != nil {
			return nil, err
		}
		a.keys = staticKeys(keys)
		return a, nil
	}
	client := o.client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if s.CACert != "" {
			pool, err := parseCACert(s.CACert)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		client = &http.Client{Transport: tr, Timeout: o.fetchTimeout,
			// A JWKS URL that redirects to plain HTTP would lose the TLS guarantee.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if req.URL.Scheme != "https" || len(via) >= 3 {
					return fmt.Errorf("refusing redirect to %s", req.URL.Redacted())
				}
				return nil
			}}
	}
	a.keys = &remoteKeys{uri: s.JWKSURI, client: client, now: o.now, ttl: o.cacheTTL,
		refreshInterval: o.refreshInterval, timeout: o.fetchTimeout}
	return a, nil
}

// Close releases the JWKS client's idle connections. It is idempotent.
func (a *Authenticator) Close() error {
	a.keys.close()
	return nil
}

// Settings returns the settings the Authenticator was made with.
func (a *Authenticator) Settings() Settings { return a.settings }

// Claims are a verified token's claims.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	Expiry    time.Time
	NotBefore time.Time // zero when absent
	IssuedAt  time.Time // zero when absent
	// KeyID and Algorithm are from the token's header.
	KeyID     string
	Algorithm string
	// Raw holds every claim as decoded from JSON (numbers are float64).
	Raw map[string]any
}

// header is the part of a JOSE header read before go-jose parses the token,
// to give each refusal its reason.
type header struct {
	Alg string          `json:"alg"`
	KID string          `json:"kid"`
	Enc json.RawMessage `json:"enc"`
}

// parseHeader checks the compact form and reads the header. It accepts
// only what go-jose would parse as a JWS, so that what follows is a
// signature question.
func (a *Authenticator) parseHeader(raw string) (header, error) {
	var h header
	if len(raw) > MaxTokenSize {
		return h, authn.Refuse(authn.ReasonMalformed, "JWT is %d bytes, more than %d", len(raw), MaxTokenSize)
	}
	if raw == "" {
		return h, authn.Refuse(authn.ReasonMissing, "no JWT")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return h, authn.Refuse(authn.ReasonMalformed, "JWT has %d dot-separated parts, want 3 (a signed JWT in compact form)", len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, authn.Refuse(authn.ReasonMalformed, "JWT header is not base64url: %w", err)
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, authn.Refuse(authn.ReasonMalformed, "JWT header is not a JSON object: %w", err)
	}
	if h.Enc != nil {
		return h, authn.Refuse(authn.ReasonMalformed, "JWT is encrypted (JWE); a signed JWT is required")
	}
	if !slices.Contains(a.algs, jose.SignatureAlgorithm(h.Alg)) {
		return h, authn.Refuse(authn.ReasonAlgorithm, "JWT alg %s is not allowed (allowed: %s)", strconv.Quote(truncate(h.Alg)), strings.Join(a.o.algs, ", "))
	}
	return h, nil
}

// Verify checks a JWT and returns its claims; see the package documentation
// for the checks. Every failure is an authn refusal.
func (a *Authenticator) Verify(ctx context.Context, raw string) (*Claims, error) {
	raw = strings.TrimSpace(raw)
	h, err := a.parseHeader(raw)
	if err != nil {
		return nil, err
	}
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(h.Alg)})
	if err != nil {
		return nil, authn.Refuse(authn.ReasonMalformed, "JWT does not parse: %w", err)
	}
	keys, err := a.candidates(ctx, h)
	if err != nil {
		return nil, err
	}
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != h.Alg {
			continue
		}
		// With no destination, Claims only verifies the signature.
		if tok.Claims(k.Key) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, authn.Refuse(authn.ReasonSignature, "JWT signature (alg %s, kid %q) does not verify with any of %d candidate keys", h.Alg, truncate(h.KID), len(keys))
	}
	var std josejwt.Claims
	var rawClaims map[string]any
	if err := tok.UnsafeClaimsWithoutVerification(&std, &rawClaims); err != nil { // verified just above
		return nil, authn.Refuse(authn.ReasonMalformed, "JWT claims do not decode: %w", err)
	}
	c := &Claims{Issuer: std.Issuer, Subject: std.Subject, Audience: std.Audience, KeyID: h.KID, Algorithm: h.Alg, Raw: rawClaims}
	if std.Expiry != nil {
		c.Expiry = std.Expiry.Time()
	}
	if std.NotBefore != nil {
		c.NotBefore = std.NotBefore.Time()
	}
	if std.IssuedAt != nil {
		c.IssuedAt = std.IssuedAt.Time()
	}
	if err := a.checkClaims(c); err != nil {
		return nil, err
	}
	return c, nil
}

func (a *Authenticator) candidates(ctx context.Context, h header) ([]jose.JSONWebKey, error) {
	keys, err := a.keys.keys(ctx, h.KID, false)
	if err == nil && len(keys) == 0 {
		keys, err = a.keys.keys(ctx, h.KID, true)
	}
	if err != nil {
		return nil, authn.Refuse(authn.ReasonUnavailable, "no JWKS to verify with: %w", err)
	}
	if len(keys) == 0 {
		return nil, authn.Refuse(authn.ReasonUnknownKey, "no key has kid %q", truncate(h.KID))
	}
	return keys, nil
}

func (a *Authenticator) checkClaims(c *Claims) error {
	if a.settings.Issuer != "" && c.Issuer != a.settings.Issuer {
		return authn.Refuse(authn.ReasonIssuer, "JWT iss %q is not %q", truncate(c.Issuer), a.settings.Issuer)
	}
	if a.settings.Audience != "" && !slices.Contains(c.Audience, a.settings.Audience) {
		return authn.Refuse(authn.ReasonAudience, "JWT aud %q does not contain %q", truncateAll(c.Audience), a.settings.Audience)
	}
	if c.Expiry.IsZero() {
		return authn.Refuse(authn.ReasonMissingClaim, "JWT has no exp")
	}
	now := a.o.now()
	if !now.Before(c.Expiry.Add(a.o.leeway)) {
		return authn.Refuse(authn.ReasonExpired, "JWT expired at %s", c.Expiry.UTC().Format(time.RFC3339))
	}
	if !c.NotBefore.IsZero() && now.Add(a.o.leeway).Before(c.NotBefore) {
		return authn.Refuse(authn.ReasonNotYetValid, "JWT is not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	if !c.IssuedAt.IsZero() && now.Add(a.o.leeway).Before(c.IssuedAt) {
		return authn.Refuse(authn.ReasonNotYetValid, "JWT is issued in the future (%s)", c.IssuedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// truncate keeps attacker-chosen text short in log details.
func truncate(s string) string {
	const n = 128
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func truncateAll(ss []string) []string {
	if len(ss) > 8 {
		ss = ss[:8]
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = truncate(s)
	}
	return out
}
