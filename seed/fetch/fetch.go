// Package fetch is the client side of seed distribution: what a Follower
// pod's init container runs to get its seed (seed 000's flow). It makes an
// ephemeral age identity in memory, authenticates (with the pod's projected
// service-account token through the JWT authenticator, or with an API key),
// asks the Leader for a Follower seed sealed to that identity, verifies it
// against the CA pin and unpacks it. Failures are retried with exponential
// backoff and jitter until a deadline.
package fetch

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
	"strconv"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
)

// Config is what a fetch needs. cmd/sower-seed-fetcher fills it from
// Conjur's seed-fetcher environment variables.
type Config struct {
	// SeedURL is the Follower seed endpoint,
	// https://<leader>/configuration/<account>/seed/follower.
	SeedURL string
	// Account is the Conjur account.
	Account string
	// Hostnames are the Follower's names (FOLLOWER_HOSTNAME).
	Hostnames []string
	// Dir is where the seed is unpacked (a directory sower owns: not a
	// mount point itself).
	Dir string
	// Pin is the cluster CA pin; required.
	Pin pki.Pin
	// CABundle optionally lets the TLS client verify the Leader by its CA
	// bundle (CONJUR_SSL_CERTIFICATE); without it the pin alone is used.
	CABundle []byte

	// AuthnURL is the authenticator's base URL: .../authn-jwt/<service-id>
	// for a JWT, .../authn for an API key. Empty derives it from SeedURL.
	AuthnURL string
	// JWTPath is the projected service-account token file (JWT authn).
	JWTPath string
	// Login is the host to log in as ("host/..."). With APIKey it
	// authenticates by API key instead of a JWT; with a JWT it names the
	// host in the authenticator's URL (needed when the authenticator has
	// no token-app-property).
	Login, APIKey string

	// Deadline bounds all attempts; Backoff is the first retry delay.
	Deadline time.Duration
	Backoff  time.Duration
	Logger   *slog.Logger
}

// Result is an unpacked seed.
type Result struct {
	Manifest archive.Manifest
	Attempts int
}

// Run fetches, verifies and unpacks the seed, retrying until the deadline.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Deadline)
	defer cancel()
	hc, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	return c.retry(ctx, hc)
}

// MaxRetryAfter bounds the wait a server's Retry-After may ask for.
const MaxRetryAfter = time.Minute

// busyError is a refusal that said when to come back (503 or 429 with
// Retry-After: a Leader whose seed queue is full).
type busyError struct {
	err   error
	after time.Duration
}

func (e *busyError) Error() string { return e.err.Error() }
func (e *busyError) Unwrap() error { return e.err }

// retryAfter reads a Retry-After of whole seconds (the form sower and
// Conjur send), bounded by MaxRetryAfter; zero when absent or not seconds.
func retryAfter(resp *http.Response) time.Duration {
	if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After")))
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, MaxRetryAfter)
}

// retry makes attempts until one succeeds or the deadline passes, with
// exponential backoff and jitter; a refusal with Retry-After waits at
// least that long, plus up to a quarter more so a storm of fetchers told
// the same second does not come back at once.
func (c *Config) retry(ctx context.Context, hc *http.Client) (*Result, error) {
	delay := c.Backoff
	for attempt := 1; ; attempt++ {
		m, err := c.once(ctx, hc)
		if err == nil {
			return &Result{Manifest: m, Attempts: attempt}, nil
		}
		// Retry until the deadline: in a cluster starting up, the Leader,
		// its policy or the network may simply not be there yet.
		wait := delay/2 + rand.N(delay/2+1)
		if be, ok := errors.AsType[*busyError](err); ok {
			wait = max(wait, be.after+rand.N(be.after/4+1))
		}
		c.Logger.Warn("seed fetch failed; retrying", "attempt", attempt, "err", err, "retry_in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		case <-time.After(wait):
		}
		delay = min(delay*2, 30*time.Second)
	}
}

func (c *Config) check() error {
	switch {
	case c.SeedURL == "":
		return errors.New("fetch: the seed URL is required (CONJUR_SEED_FILE_URL)")
	case c.Pin == (pki.Pin{}):
		return errors.New("fetch: the CA pin is required (SOWER_CA_PIN, from `sower ca pin` on the Leader)")
	case len(c.Hostnames) == 0:
		return errors.New("fetch: the Follower's host name is required (FOLLOWER_HOSTNAME)")
	case c.Dir == "":
		return errors.New("fetch: the seed directory is required (SEEDFILE_DIR)")
	case c.APIKey == "" && c.JWTPath == "":
		return errors.New("fetch: give a JWT file (JWT_TOKEN_PATH) or an API key (CONJUR_AUTHN_API_KEY)")
	}
	u, err := url.Parse(c.SeedURL)
	if err != nil || u.Scheme != "https" {
		return fmt.Errorf("fetch: seed URL %q must be https", c.SeedURL)
	}
	if c.Deadline <= 0 {
		c.Deadline = 5 * time.Minute
	}
	if c.Backoff <= 0 {
		c.Backoff = 500 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// httpClient trusts the Leader by its CA bundle when given, else by the pin.
func (c *Config) httpClient() (*http.Client, error) {
	u, _ := url.Parse(c.SeedURL)
	var cfg *tls.Config
	var err error
	if len(c.CABundle) > 0 {
		var roots []*x509.Certificate
		roots, err = pki.ParseCertificatesPEM(c.CABundle)
		if err != nil {
			return nil, fmt.Errorf("fetch: CONJUR_SSL_CERTIFICATE: %w", err)
		}
		if !c.Pin.MatchesChain(roots) {
			return nil, fmt.Errorf("fetch: CONJUR_SSL_CERTIFICATE does not hold the pinned CA %s", c.Pin)
		}
		cfg, err = pki.ClientTLS(roots, u.Hostname(), nil)
	} else {
		cfg, err = pki.PinnedClientTLS(c.Pin, u.Hostname(), nil)
	}
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr, Timeout: time.Minute}, nil
}

// once is one attempt: authenticate, request, verify, unpack.
func (c *Config) once(ctx context.Context, hc *http.Client) (archive.Manifest, error) {
	token, err := c.authenticate(ctx, hc)
	if err != nil {
		return archive.Manifest{}, err
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return archive.Manifest{}, err
	}
	form := url.Values{"follower_hostnames": {strings.Join(c.Hostnames, ",")}, "recipient": {id.Recipient().String()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.SeedURL, strings.NewReader(form.Encode()))
	if err != nil {
		return archive.Manifest{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", `Token token="`+token+`"`)
	resp, err := hc.Do(req)
	if err != nil {
		return archive.Manifest{}, fmt.Errorf("request the seed: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, archive.DefaultMaxArchiveSize+1))
	if err != nil {
		return archive.Manifest{}, fmt.Errorf("read the seed: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("request the seed: %s%s", resp.Status, errorMessage(body))
		if after := retryAfter(resp); after > 0 {
			return archive.Manifest{}, &busyError{err: err, after: after}
		}
		return archive.Manifest{}, err
	}
	m, err := archive.Unpack(bytes.NewReader(body), c.Dir, c.Pin, id)
	if err != nil {
		return archive.Manifest{}, fmt.Errorf("verify and unpack the seed: %w", err)
	}
	return m, nil
}

// authenticate returns a base64 access token.
func (c *Config) authenticate(ctx context.Context, hc *http.Client) (string, error) {
	base := c.AuthnURL
	var body io.Reader
	var contentType string
	if c.APIKey != "" {
		if base == "" {
			base = strings.Split(c.SeedURL, "/configuration/")[0] + "/authn/" + url.PathEscape(c.Account)
		}
		base += "/" + url.PathEscape(c.Login) + "/authenticate"
		body, contentType = strings.NewReader(c.APIKey), "text/plain"
	} else {
		jwt, err := os.ReadFile(c.JWTPath)
		if err != nil {
			return "", fmt.Errorf("read the service-account token: %w", err)
		}
		if base == "" {
			return "", errors.New("the JWT authenticator URL is required (CONJUR_AUTHN_URL, .../authn-jwt/<service id>)")
		}
		base += "/" + url.PathEscape(c.Account)
		if c.Login != "" {
			// Conjur's authn-jwt path names the host when the
			// authenticator has no token-app-property to find it in the
			// token: /authn-jwt/<id>/<account>/<host>/authenticate.
			base += "/" + url.PathEscape(c.Login)
		}
		base += "/authenticate"
		body, contentType = strings.NewReader(url.Values{"jwt": {strings.TrimSpace(string(jwt))}}.Encode()), "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base, body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept-Encoding", "base64")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("authenticate: %w", err)
	}
	defer resp.Body.Close()
	tok, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("authenticate: %s", resp.Status)
	}
	if _, err := base64.StdEncoding.DecodeString(string(tok)); err != nil {
		return "", errors.New("authenticate: the server sent no base64 token")
	}
	return string(tok), nil
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
