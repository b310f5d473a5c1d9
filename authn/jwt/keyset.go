package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// minRSABits is the smallest RSA modulus accepted in a key set.
const minRSABits = 2048

// maxJWKSSize bounds a fetched JWKS document.
const maxJWKSSize = 1 << 20

// usableKeys keeps the public half of each signature key and refuses key sets
// with anything that must not verify tokens (symmetric keys, weak RSA). Keys
// marked for encryption (use: enc) are skipped.
func usableKeys(in []jose.JSONWebKey) ([]jose.JSONWebKey, error) {
	var out []jose.JSONWebKey
	for _, k := range in {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub := k.Public()
		switch key := pub.Key.(type) {
		case *rsa.PublicKey:
			if key.N.BitLen() < minRSABits {
				return nil, fmt.Errorf("key %q: RSA key of %d bits, want at least %d", k.KeyID, key.N.BitLen(), minRSABits)
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("key %q: %T keys cannot verify tokens (only RSA, EC and Ed25519 public keys)", k.KeyID, k.Key)
		}
		out = append(out, pub)
	}
	if len(out) == 0 {
		return nil, errors.New("no signature keys")
	}
	return out, nil
}

// keySource returns the keys that may have signed a token.
type keySource interface {
	// keys returns the candidate keys for kid ("" means any). refresh asks
	// for a fresh copy when the kid was not found.
	keys(ctx context.Context, kid string, refresh bool) ([]jose.JSONWebKey, error)
	close()
}

type staticKeys []jose.JSONWebKey

func (s staticKeys) keys(_ context.Context, kid string, _ bool) ([]jose.JSONWebKey, error) {
	return matching(s, kid), nil
}

func (staticKeys) close() {}

func matching(all []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return all
	}
	var out []jose.JSONWebKey
	for _, k := range all {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// errFetch wraps every failure to fetch the JWKS.
var errFetch = errors.New("jwt: fetch JWKS")

// remoteKeys is a JWKS fetched over HTTPS and cached.
type remoteKeys struct {
	uri             string
	client          *http.Client
	now             func() time.Time
	ttl             time.Duration // cache age that triggers a fetch
	refreshInterval time.Duration // least time between two fetches
	timeout         time.Duration

	group singleflight.Group

	mu        sync.Mutex
	cached    []jose.JSONWebKey
	fetchedAt time.Time // last successful fetch
	triedAt   time.Time // last attempt
	lastErr   error     // of the last attempt
}

func (r *remoteKeys) snapshot() ([]jose.JSONWebKey, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cached, r.fetchedAt
}

func (r *remoteKeys) keys(ctx context.Context, kid string, refresh bool) ([]jose.JSONWebKey, error) {
	cached, fetchedAt := r.snapshot()
	if cached == nil || refresh || r.now().Sub(fetchedAt) >= r.ttl {
		// fetch joins a fetch in flight and is rate-limited inside, so
		// callers arriving during the first fetch wait for it rather than
		// fail, and made-up kids cannot make more than one fetch per interval.
		keys, err := r.fetch(ctx)
		switch {
		case err == nil:
			cached = keys
		case cached == nil:
			// Never fetched successfully: an outage, not an unknown key.
			return nil, err
		}
		// Otherwise keep verifying with the keys we have while the issuer is down.
	}
	return matching(cached, kid), nil
}

// fetch gets the JWKS once for all concurrent callers. It runs under its own
// timeout rather than the first caller's context, so that one client giving
// up does not fail the others.
func (r *remoteKeys) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	v, err, _ := r.group.Do("jwks", func() (any, error) {
		// Within the refresh interval of the last attempt, answer with its
		// result rather than fetch again.
		r.mu.Lock()
		if !r.triedAt.IsZero() && r.now().Sub(r.triedAt) < r.refreshInterval {
			keys, err := r.cached, r.lastErr
			r.mu.Unlock()
			if keys == nil {
				return nil, err
			}
			return keys, nil
		}
		r.triedAt = r.now()
		r.mu.Unlock()

		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
		defer cancel()
		keys, err := r.get(fctx)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.lastErr = err
		if err != nil {
			return nil, err
		}
		r.cached, r.fetchedAt = keys, r.triedAt
		return keys, nil
	})
	if err != nil {
		return nil, err
	}
	keys, _ := v.([]jose.JSONWebKey)
	if keys == nil {
		return nil, fmt.Errorf("%w from %s: fetched recently without success", errFetch, r.uri)
	}
	return keys, nil
}

func (r *remoteKeys) get(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.uri, nil)
	if err != nil {
		return nil, fmt.Errorf("%w from %s: %w", errFetch, r.uri, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w from %s: %w", errFetch, r.uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w from %s: HTTP %s", errFetch, r.uri, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w from %s: %w", errFetch, r.uri, err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("%w from %s: document larger than %d bytes", errFetch, r.uri, maxJWKSSize)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("%w from %s: not a JWK Set: %w", errFetch, r.uri, err)
	}
	keys, err := usableKeys(set.Keys)
	if err != nil {
		return nil, fmt.Errorf("%w from %s: %w", errFetch, r.uri, err)
	}
	return keys, nil
}

func (r *remoteKeys) close() { r.client.CloseIdleConnections() }
