package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sowerproject/sower/pki"
)

// Defaults.
const (
	DefaultTokenFile    = "/run/conjur/access-token"
	DefaultJWTPath      = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultBackoff      = time.Second
	DefaultMaxBackoff   = time.Minute
	DefaultInitDeadline = 5 * time.Minute
	// DefaultRefreshFraction is how much of an access token's life passes
	// before the sidecar fetches the next: half, so that a token is
	// replaced with half its life (4 of Conjur's 8 minutes) still left for
	// retries.
	DefaultRefreshFraction = 0.5
	// maxResponse bounds what is read of an answer.
	maxResponse = 64 << 10
)

// Mode is how the client runs.
type Mode string

// The modes (CONTAINER_MODE).
const (
	// ModeInit authenticates once, writes the token and returns.
	ModeInit Mode = "init"
	// ModeSidecar keeps the token fresh until the context ends.
	ModeSidecar Mode = "sidecar"
)

// Errors.
var (
	// ErrConfig is matched by every configuration error.
	ErrConfig = errors.New("client: invalid configuration")
	// ErrRefused is matched when the server answered 401: it refused the
	// service-account token or the host.
	ErrRefused = errors.New("client: the server refused the service-account token (401)")
)

// Config is what the client needs. FromEnv fills it from Conjur's
// environment variables.
type Config struct {
	// AuthnURL is the authenticator's URL, https://<node>/authn-jwt/<service-id>.
	AuthnURL string
	// Account is the Conjur account.
	Account string
	// Host is the host to log in as ("host/..."); empty when the service's
	// token-app-property names it.
	Host string
	// JWTPath is the projected service-account token, read again for each
	// authentication (the kubelet rotates it).
	JWTPath string
	// TokenFile is where the access token goes.
	TokenFile string
	// Mode is ModeInit (default) or ModeSidecar.
	Mode Mode
	// Pin is the cluster CA's pin; CABundle, PEM, the CA bundle. One of
	// them is required; with both, the bundle must hold the pinned CA.
	Pin      pki.Pin
	CABundle []byte
	// RefreshInterval, when set, replaces DefaultRefreshFraction of the
	// token's life as the sidecar's refresh period (Conjur's
	// CONJUR_TOKEN_TIMEOUT); it is capped at 85% of the token's life.
	RefreshInterval time.Duration
	// Backoff is the first retry delay, doubled up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Deadline bounds init mode (default 5m).
	Deadline time.Duration
	Logger   *slog.Logger

	// HTTPClient replaces the client built from Pin and CABundle.
	HTTPClient *http.Client
	// Now and Sleep replace the clock, for tests.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

func (c *Config) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(c.AuthnURL)
	switch {
	case c.AuthnURL == "":
		return bad("the authenticator URL is required: set CONJUR_AUTHN_URL to https://<conjur>/authn-jwt/<service-id>")
	case err != nil || u.Scheme != "https" || u.Host == "":
		return bad("CONJUR_AUTHN_URL %q must be an https:// URL", c.AuthnURL)
	case c.Account == "":
		return bad("the account is required: set CONJUR_ACCOUNT")
	case c.Pin == (pki.Pin{}) && len(c.CABundle) == 0 && c.HTTPClient == nil:
		return bad("nothing to trust the server by: set SOWER_CA_PIN (from `sower ca pin`) or CONJUR_SSL_CERTIFICATE")
	case c.Mode != "" && c.Mode != ModeInit && c.Mode != ModeSidecar:
		return bad("CONTAINER_MODE %q is neither init nor sidecar", c.Mode)
	}
	if c.Mode == "" {
		c.Mode = ModeInit
	}
	if c.JWTPath == "" {
		c.JWTPath = DefaultJWTPath
	}
	if c.TokenFile == "" {
		c.TokenFile = DefaultTokenFile
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Deadline <= 0 {
		c.Deadline = DefaultInitDeadline
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// httpClient trusts the server by its CA bundle when given, else by the pin.
func (c *Config) httpClient() (*http.Client, error) {
	if c.HTTPClient != nil {
		return c.HTTPClient, nil
	}
	u, _ := url.Parse(c.AuthnURL)
	var cfg *tls.Config
	var err error
	if len(c.CABundle) > 0 {
		var roots []*x509.Certificate
		if roots, err = pki.ParseCertificatesPEM(c.CABundle); err != nil {
			return nil, fmt.Errorf("%w: CONJUR_SSL_CERTIFICATE: %v", ErrConfig, err)
		}
		if c.Pin != (pki.Pin{}) && !c.Pin.MatchesChain(roots) {
			return nil, fmt.Errorf("%w: CONJUR_SSL_CERTIFICATE does not hold the pinned CA %s", ErrConfig, c.Pin)
		}
		cfg, err = pki.ClientTLS(roots, u.Hostname(), nil)
	} else {
		cfg, err = pki.PinnedClientTLS(c.Pin, u.Hostname(), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// Token is an access token as the server sent it.
type Token struct {
	// JSON is the token in Conjur's JSON form, what the file holds.
	JSON      []byte
	Subject   string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Authenticate makes one attempt: read the service-account token, post it,
// check the answer.
func Authenticate(ctx context.Context, c Config, hc *http.Client) (*Token, error) {
	jwt, err := os.ReadFile(c.JWTPath)
	if err != nil {
		return nil, fmt.Errorf("read the service-account token %s (is the projected token volume mounted?): %w", c.JWTPath, err)
	}
	endpoint := strings.TrimSuffix(c.AuthnURL, "/") + "/" + url.PathEscape(c.Account)
	if c.Host != "" {
		endpoint += "/" + url.PathEscape(c.Host)
	}
	endpoint += "/authenticate"
	form := url.Values{"jwt": {strings.TrimSpace(string(jwt))}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach %s: %w", redact(endpoint), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", redact(endpoint), err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: check that the policy enables the authenticator, that the host exists and holds authenticate on it, "+
			"and that the token's audience and issuer are the service's (the server's log says which check failed)", ErrRefused)
	case resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("authenticate at %s: 403: the host exists but lacks authenticate on the authenticator's webservice; permit it in the policy", redact(endpoint))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("authenticate at %s: %s%s", redact(endpoint), resp.Status, errorMessage(body))
	}
	return ParseToken(body)
}

// ParseToken reads an access token in Conjur's JSON form (without checking
// its signature: the server that sent it over TLS is trusted).
func ParseToken(body []byte) (*Token, error) {
	var t struct {
		Protected, Payload, Signature string
	}
	if err := json.Unmarshal(body, &t); err != nil || t.Payload == "" || t.Signature == "" {
		return nil, errors.New("the server's answer is not an access token")
	}
	raw, err := base64.StdEncoding.DecodeString(t.Payload)
	if err != nil {
		if raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(t.Payload, "=")); err != nil {
			return nil, errors.New("the access token's payload is not base64")
		}
	}
	var p struct {
		Sub string  `json:"sub"`
		Iat float64 `json:"iat"`
		Exp float64 `json:"exp"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.Exp <= p.Iat {
		return nil, errors.New("the access token's payload has no valid iat and exp")
	}
	return &Token{JSON: bytes.Clone(body), Subject: p.Sub, IssuedAt: time.Unix(int64(p.Iat), 0), ExpiresAt: time.Unix(int64(p.Exp), 0)}, nil
}

// WriteTokenFile replaces path with data atomically: a reader sees the old
// token or the new one, never a part. The file is 0644, as Conjur's client
// writes it: the volume is the pod's own, shared with the application's
// containers, which may run as another user.
func WriteTokenFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write the access token to %s (is the volume mounted and writable?): %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write the access token to %s: %w", tmp, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write the access token to %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write the access token to %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the access token to %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace the access token %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Run authenticates and writes the token file: once (init mode, retrying
// until the deadline), or again and again until ctx ends (sidecar mode).
func Run(ctx context.Context, c Config) error {
	if err := c.check(); err != nil {
		return err
	}
	hc, err := c.httpClient()
	if err != nil {
		return err
	}
	if c.Mode == ModeInit {
		ictx, cancel := context.WithTimeout(ctx, c.Deadline)
		defer cancel()
		_, err := c.obtain(ictx, hc, time.Time{})
		return err
	}
	var current time.Time // expiry of the token in the file
	for {
		tok, err := c.obtain(ctx, hc, current)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		current = tok.ExpiresAt
		wait := c.refreshAfter(tok)
		c.Logger.Info("next access token", "in", wait.Round(time.Second).String(), "current_expires_at", tok.ExpiresAt.UTC())
		if err := c.Sleep(ctx, wait); err != nil {
			return nil
		}
	}
}

// obtain authenticates and writes the file, retrying with exponential
// backoff and jitter until it succeeds or ctx ends. current is the expiry
// of the token already in the file, to warn when it runs out.
func (c *Config) obtain(ctx context.Context, hc *http.Client, current time.Time) (*Token, error) {
	delay := c.Backoff
	for attempt := 1; ; attempt++ {
		tok, err := Authenticate(ctx, *c, hc)
		if err == nil {
			err = WriteTokenFile(c.TokenFile, tok.JSON)
		}
		if err == nil {
			c.Logger.Info("access token written", "file", c.TokenFile, "host", tok.Subject, "expires_at", tok.ExpiresAt.UTC(), "attempts", attempt)
			return tok, nil
		}
		if errors.Is(err, ErrConfig) {
			return nil, err
		}
		wait := delay/2 + rand.N(delay/2+1)
		attrs := []any{"attempt", attempt, "err", err.Error(), "retry_in", wait.Round(time.Millisecond).String()}
		if !current.IsZero() && !c.Now().Before(current) {
			attrs = append(attrs, "warning", fmt.Sprintf("the access token in %s expired at %s; the application's calls fail until a new one is written",
				c.TokenFile, current.UTC().Format(time.RFC3339)))
		}
		c.Logger.Warn("authentication failed; retrying", attrs...)
		if serr := c.Sleep(ctx, wait); serr != nil {
			return nil, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		delay = min(delay*2, c.MaxBackoff)
	}
}

// refreshAfter is how long the sidecar waits before fetching the next
// token: DefaultRefreshFraction of its life (or RefreshInterval, capped at
// 85% of it, conjur-api-go's own refresh point), less up to 10% jitter so
// that pods started together spread out, and never less than a second.
func (c *Config) refreshAfter(t *Token) time.Duration {
	life := t.ExpiresAt.Sub(t.IssuedAt)
	d := time.Duration(float64(life) * DefaultRefreshFraction)
	if c.RefreshInterval > 0 {
		d = min(c.RefreshInterval, time.Duration(float64(life)*0.85))
	}
	// Count from now, not from iat: the clocks may differ.
	if elapsed := c.Now().Sub(t.IssuedAt); elapsed > 0 && elapsed < d {
		d -= elapsed
	}
	d -= rand.N(d/10 + 1)
	return max(d, time.Second)
}

// errorMessage extracts the message of Conjur's error JSON, if any.
func errorMessage(body []byte) string {
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		return ""
	}
	return ": " + e.Error.Message
}

// redact drops a URL's query and user info for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "the authenticator"
	}
	u.RawQuery, u.User = "", nil
	return u.String()
}

// FromEnv reads Conjur's environment variables (and sower's) through
// getenv, which cmd passes as os.Getenv:
//
//	CONJUR_AUTHN_URL          https://<conjur>/authn-jwt/<service-id>; or
//	CONJUR_APPLIANCE_URL + CONJUR_AUTHN_JWT_SERVICE_ID (or AUTHENTICATOR_ID)
//	CONJUR_ACCOUNT            the account (required)
//	CONJUR_AUTHN_LOGIN        host to log in as, optional ("host/..."); also CONJUR_AUTHN_JWT_HOST_ID
//	JWT_TOKEN_PATH            projected token (default DefaultJWTPath)
//	CONJUR_AUTHN_TOKEN_FILE   where the access token goes (default DefaultTokenFile)
//	CONTAINER_MODE            init (default) or sidecar
//	CONJUR_SSL_CERTIFICATE    the CA bundle, PEM (or CONJUR_CERT_FILE, its path, read by cmd)
//	SOWER_CA_PIN              the cluster CA pin, sha256:<hex>
//	CONJUR_TOKEN_TIMEOUT      sidecar refresh period (Go duration, "6m"), optional
//	SOWER_AUTHN_DEADLINE      how long init mode keeps trying (default 5m)
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		AuthnURL: getenv("CONJUR_AUTHN_URL"), Account: getenv("CONJUR_ACCOUNT"),
		Host:    first(getenv("CONJUR_AUTHN_LOGIN"), getenv("CONJUR_AUTHN_JWT_HOST_ID")),
		JWTPath: getenv("JWT_TOKEN_PATH"), TokenFile: getenv("CONJUR_AUTHN_TOKEN_FILE"),
		Mode: Mode(strings.ToLower(strings.TrimSpace(getenv("CONTAINER_MODE")))), CABundle: []byte(getenv("CONJUR_SSL_CERTIFICATE")),
	}
	if c.AuthnURL == "" {
		if base, id := getenv("CONJUR_APPLIANCE_URL"), first(getenv("CONJUR_AUTHN_JWT_SERVICE_ID"), getenv("AUTHENTICATOR_ID")); base != "" && id != "" {
			c.AuthnURL = strings.TrimSuffix(base, "/") + "/authn-jwt/" + url.PathEscape(id)
		}
	}
	if p := getenv("SOWER_CA_PIN"); p != "" {
		pin, err := pki.ParsePin(p)
		if err != nil {
			return Config{}, fmt.Errorf("%w: SOWER_CA_PIN: %v", ErrConfig, err)
		}
		c.Pin = pin
	}
	for name, dst := range map[string]*time.Duration{"CONJUR_TOKEN_TIMEOUT": &c.RefreshInterval, "SOWER_AUTHN_DEADLINE": &c.Deadline} {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return Config{}, fmt.Errorf("%w: %s %q is not a duration such as 6m", ErrConfig, name, v)
			}
			*dst = d
		}
	}
	return c, c.check()
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
