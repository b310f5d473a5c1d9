package token

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sowerproject/sower/authn"
)

// Defaults.
const (
	// DefaultTTL is how long an access token lives, as in Conjur.
	DefaultTTL = 8 * time.Minute
	// DefaultLeeway absorbs clock skew between nodes when checking exp and iat.
	DefaultLeeway = 30 * time.Second
	// DefaultReloadInterval is the least time between two reloads of the key
	// ring caused by tokens with an unknown key id.
	DefaultReloadInterval = time.Second
	// DefaultRetention is how long a key is kept after a newer key has
	// appeared, on top of MaxTTL and the leeway: time for every node to load
	// the newer key and stop signing with the old one.
	DefaultRetention = 10 * time.Minute
	// MaxTokenSize bounds what Verify reads; our tokens are about 400 bytes.
	MaxTokenSize = 8 << 10
)

var (
	// ErrKeyStoreRequired is returned by New without a KeyStore.
	ErrKeyStoreRequired = errors.New("token: Config.Keys (the key store) is required")
	// ErrSealerRequired is returned by New without a Sealer.
	ErrSealerRequired = errors.New("token: Config.Sealer is required")
	// ErrAlgorithm is returned for an algorithm the ring cannot sign with.
	ErrAlgorithm = errors.New("token: unsupported algorithm (use EdDSA or ES256)")
	// ErrNoSigningKey is returned by Issue before any key is loaded.
	ErrNoSigningKey = errors.New("token: no signing key loaded (the Leader creates one with EnsureKey; other nodes call Load)")
	// ErrEmptySubject is returned by Issue for an empty subject.
	ErrEmptySubject = errors.New("token: subject is empty")
)

// Config holds a Service's dependencies and settings.
type Config struct {
	Keys   KeyStore
	Sealer authn.Sealer
	// TTL is the lifetime of issued tokens. Default DefaultTTL (8 minutes).
	TTL time.Duration
	// MaxTTL is the longest lifetime Verify accepts, so that raising TTL on
	// one node does not make other nodes refuse its tokens. Default: the
	// larger of TTL and one hour.
	MaxTTL time.Duration
	// Leeway is the clock skew allowed on exp and iat. Default DefaultLeeway.
	Leeway time.Duration
	// Algorithm is what new keys sign with. Default EdDSA.
	Algorithm Algorithm
	// Retention: see DefaultRetention.
	Retention time.Duration
}

// Option changes an optional behaviour of a Service.
type Option func(*Service)

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithRandom replaces crypto/rand for key generation (tests only).
func WithRandom(r io.Reader) Option { return func(s *Service) { s.rand = r } }

// WithReloadInterval sets the least time between two reloads of the key ring
// triggered by unknown key ids (default DefaultReloadInterval).
func WithReloadInterval(d time.Duration) Option { return func(s *Service) { s.reloadEvery = d } }

// Claims are what a verified access token says.
type Claims struct {
	// Subject is the login: "admin", "host/myapp", ...
	Subject  string
	IssuedAt time.Time
	Expires  time.Time
	// KeyID is the id of the key that signed the token.
	KeyID string
	// CIDR, when set, lists the only networks the token may be used from
	// (Conjur's "cidr" claim): a token of a role with restricted_to carries
	// the role's networks, and the server refuses it from elsewhere.
	CIDR []string
}

// IssueOption sets an optional claim of an issued token.
type IssueOption func(*payload)

// WithCIDR restricts the token to the networks (CIDR notation) in the
// "cidr" claim. An empty list adds no claim.
func WithCIDR(networks []string) IssueOption {
	return func(p *payload) {
		if len(networks) > 0 {
			p.CIDR = slices.Clone(networks)
		}
	}
}

// Token is an issued access token.
type Token struct {
	// JSON is the token as Conjur serves it from /authenticate.
	JSON   []byte
	Claims Claims
}

// Base64 returns the token in standard base64, as served for
// "Accept-Encoding: base64" and as sent in the Authorization header.
func (t *Token) Base64() string { return base64.StdEncoding.EncodeToString(t.JSON) }

// AuthorizationHeader returns the value of an Authorization header carrying
// the token: Token token="<base64>".
func (t *Token) AuthorizationHeader() string { return `Token token="` + t.Base64() + `"` }

// Service issues and verifies access tokens with the cluster key ring.
type Service struct {
	cfg         Config
	now         func() time.Time
	rand        io.Reader
	reloadEvery time.Duration

	ring atomic.Pointer[ring]

	reloadMu   sync.Mutex
	lastReload time.Time

	verified verifiedCache
}

// New returns a Service with no keys loaded; call Load or EnsureKey.
func New(cfg Config, opts ...Option) (*Service, error) {
	if cfg.Keys == nil {
		return nil, ErrKeyStoreRequired
	}
	if cfg.Sealer == nil {
		return nil, ErrSealerRequired
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = max(cfg.TTL, time.Hour)
	}
	if cfg.MaxTTL < cfg.TTL {
		return nil, fmt.Errorf("token: MaxTTL %s is shorter than TTL %s", cfg.MaxTTL, cfg.TTL)
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Algorithm == "" {
		cfg.Algorithm = EdDSA
	}
	if cfg.Algorithm != EdDSA && cfg.Algorithm != ES256 {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, cfg.Algorithm)
	}
	s := &Service{cfg: cfg, now: time.Now, reloadEvery: DefaultReloadInterval}
	for _, o := range opts {
		o(s)
	}
	s.ring.Store(newRing(nil))
	return s, nil
}

// Load reads the key ring from the store. Call it at start and whenever the
// store reports a change. Keys already loaded are not opened again. A key
// that fails to open is left out and reported in the error, and the others
// are still loaded.
func (s *Service) Load(ctx context.Context) error {
	stored, err := s.cfg.Keys.Keys(ctx)
	if err != nil {
		return fmt.Errorf("token: read signing keys: %w", err)
	}
	old := s.ring.Load()
	keys := make([]*signingKey, 0, len(stored))
	var errs []error
	for _, sk := range stored {
		if k, ok := old.byKID[sk.KID]; ok {
			keys = append(keys, k)
			continue
		}
		k, err := openKey(s.cfg.Sealer, sk)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, k)
	}
	s.ring.Store(newRing(keys))
	return errors.Join(errs...)
}

// EnsureKey loads the ring and, when it is empty, creates the first key.
func (s *Service) EnsureKey(ctx context.Context) error {
	if err := s.Load(ctx); err != nil {
		return err
	}
	if s.ring.Load().current != nil {
		return nil
	}
	_, err := s.Rotate(ctx)
	return err
}

// Rotate creates a new key, stores it, and signs with it from now on. It
// returns the new key's id. Tokens signed by older keys keep verifying.
func (s *Service) Rotate(ctx context.Context) (string, error) {
	k, err := newSigningKey(s.cfg.Algorithm, s.now().UTC(), s.rand)
	if err != nil {
		return "", err
	}
	sk, err := k.seal(s.cfg.Sealer)
	if err != nil {
		return "", err
	}
	if err := s.cfg.Keys.AddKey(ctx, sk); err != nil {
		return "", fmt.Errorf("token: store new signing key: %w", err)
	}
	if err := s.Load(ctx); err != nil {
		return "", err
	}
	// The store may lag behind a write (a follower's view); make sure this
	// node signs with the key it just made.
	if s.ring.Load().byKID[k.kid] == nil {
		old := s.ring.Load()
		keys := []*signingKey{k}
		for _, o := range old.byKID {
			keys = append(keys, o)
		}
		s.ring.Store(newRing(keys))
	}
	return k.kid, nil
}

// Prune deletes keys that can no longer have signed a valid token: a key goes
// once a newer key has existed for MaxTTL + Leeway + Retention. It returns
// the ids it deleted.
func (s *Service) Prune(ctx context.Context) ([]string, error) {
	if err := s.Load(ctx); err != nil {
		return nil, err
	}
	r := s.ring.Load()
	keys := make([]*signingKey, 0, len(r.byKID))
	for _, k := range r.byKID {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].created.Before(keys[j].created) })
	now := s.now()
	keep := s.cfg.MaxTTL + s.cfg.Leeway + s.cfg.Retention
	var deleted []string
	for i := 0; i+1 < len(keys); i++ {
		successor := keys[i+1]
		if now.Sub(successor.created) < keep {
			break
		}
		if err := s.cfg.Keys.DeleteKey(ctx, keys[i].kid); err != nil {
			return deleted, fmt.Errorf("token: delete signing key %s: %w", keys[i].kid, err)
		}
		deleted = append(deleted, keys[i].kid)
	}
	if len(deleted) > 0 {
		return deleted, s.Load(ctx)
	}
	return nil, nil
}

// KeyIDs returns the ids of the loaded keys, the signing key first.
func (s *Service) KeyIDs() []string {
	r := s.ring.Load()
	var ids []string
	if r.current != nil {
		ids = append(ids, r.current.kid)
	}
	for kid := range r.byKID {
		if r.current == nil || kid != r.current.kid {
			ids = append(ids, kid)
		}
	}
	sort.Strings(ids[min(1, len(ids)):])
	return ids
}

// TTL returns the lifetime of issued tokens.
func (s *Service) TTL() time.Duration { return s.cfg.TTL }

type header struct {
	Alg string `json:"alg"`
	KID string `json:"kid,omitempty"`
	Typ string `json:"typ,omitempty"`
}

type payload struct {
	Sub  string   `json:"sub"`
	Iat  int64    `json:"iat"`
	Exp  int64    `json:"exp"`
	CIDR []string `json:"cidr,omitempty"`
}

// Issue signs a token for subject, valid from now for TTL.
func (s *Service) Issue(subject string, opts ...IssueOption) (*Token, error) {
	if subject == "" {
		return nil, ErrEmptySubject
	}
	k := s.ring.Load().current
	if k == nil {
		return nil, ErrNoSigningKey
	}
	now := s.now().Truncate(time.Second)
	exp := now.Add(s.cfg.TTL)
	p := payload{Sub: subject, Iat: now.Unix(), Exp: exp.Unix()}
	for _, o := range opts {
		o(&p)
	}
	pl, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("token: encode payload: %w", err)
	}
	enc := base64.StdEncoding
	input := make([]byte, 0, len(k.protected)+1+enc.EncodedLen(len(pl)))
	input = append(input, k.protected...)
	input = append(input, '.')
	input = enc.AppendEncode(input, pl)
	sig, err := k.sign(input)
	if err != nil {
		return nil, fmt.Errorf("token: sign with key %s: %w", k.kid, err)
	}
	var b bytes.Buffer
	b.Grow(len(input) + 64 + base64.RawURLEncoding.EncodedLen(len(sig)))
	b.WriteString(`{"protected":"`)
	b.WriteString(k.protected)
	b.WriteString(`","payload":"`)
	b.Write(input[len(k.protected)+1:])
	b.WriteString(`","signature":"`)
	b.WriteString(base64.RawURLEncoding.EncodeToString(sig))
	b.WriteString(`"}`)
	return &Token{JSON: b.Bytes(), Claims: Claims{Subject: subject, IssuedAt: now, Expires: exp, KeyID: k.kid, CIDR: p.CIDR}}, nil
}

// serialized is the JSON serialization of a token, before verification.
type serialized struct {
	Protected string `json:"protected"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

// parsed is a structurally valid token whose signature is not yet checked.
type parsed struct {
	serialized
	header header
	sig    []byte
}

// parse checks the token's structure: the three fields, the header, the
// signature's encoding. It does not look at the payload, which is only read
// once the signature holds.
func parse(raw []byte) (*parsed, error) {
	if len(raw) > MaxTokenSize {
		return nil, authn.Refuse(authn.ReasonMalformed, "access token is %d bytes, more than %d", len(raw), MaxTokenSize)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, authn.Refuse(authn.ReasonMissing, "access token is empty")
	}
	if raw[0] != '{' {
		return nil, authn.Refuse(authn.ReasonMalformed, "access token is not a JSON object (send the JSON token, base64-encoded, in the Authorization header)")
	}
	var p parsed
	if err := json.Unmarshal(raw, &p.serialized); err != nil {
		return nil, authn.Refuse(authn.ReasonMalformed, "access token is not valid JSON: %w", err)
	}
	if p.Protected == "" || p.Payload == "" || p.Signature == "" {
		return nil, authn.Refuse(authn.ReasonMalformed, "access token lacks protected, payload or signature")
	}
	hdr, err := decodeSegment(p.Protected)
	if err != nil {
		return nil, authn.Refuse(authn.ReasonMalformed, "access token header is not base64: %w", err)
	}
	if err := json.Unmarshal(hdr, &p.header); err != nil {
		return nil, authn.Refuse(authn.ReasonMalformed, "access token header is not a JSON object: %w", err)
	}
	if p.sig, err = decodeSegment(p.Signature); err != nil {
		return nil, authn.Refuse(authn.ReasonMalformed, "access token signature is not base64: %w", err)
	}
	return &p, nil
}

// decodeSegment decodes base64 in either alphabet, with or without padding.
func decodeSegment(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// Verify checks an access token (its JSON form) and returns its claims. The
// signature is checked by key id against the ring, then exp and iat with the
// leeway. A token whose key id is unknown makes the ring reload (at most once
// per reload interval) before it is refused.
func (s *Service) Verify(ctx context.Context, raw []byte) (Claims, error) {
	var sum [sha256.Size]byte
	r := s.ring.Load()
	if len(raw) <= MaxTokenSize {
		sum = sha256.Sum256(raw)
		if c, ok := s.verified.get(sum, r); ok {
			return c, s.checkTimes(c)
		}
	}
	p, err := parse(raw)
	if err != nil {
		return Claims{}, err
	}
	k, err := s.keyFor(ctx, p)
	if err != nil {
		return Claims{}, err
	}
	input := make([]byte, 0, len(p.Protected)+1+len(p.Payload))
	input = append(append(append(input, p.Protected...), '.'), p.Payload...)
	if !k.verify(input, p.sig) {
		return Claims{}, authn.Refuse(authn.ReasonSignature, "access token signature does not verify with key %s", k.kid)
	}
	c, err := s.claims(p, k)
	if err != nil {
		return Claims{}, err
	}
	if s.ring.Load() == r {
		s.verified.put(sum, r, c)
	}
	return c, nil
}

func (s *Service) keyFor(ctx context.Context, p *parsed) (*signingKey, error) {
	r := s.ring.Load()
	if k := r.byProtected[p.Protected]; k != nil {
		return k, nil
	}
	alg := Algorithm(p.header.Alg)
	if alg != EdDSA && alg != ES256 {
		return nil, authn.Refuse(authn.ReasonAlgorithm, "access token algorithm %q is not EdDSA or ES256", truncate(p.header.Alg))
	}
	if p.header.KID == "" {
		return nil, authn.Refuse(authn.ReasonUnknownKey, "access token has no kid")
	}
	k := r.byKID[p.header.KID]
	if k == nil {
		if err := s.reload(ctx); err != nil {
			return nil, authn.Refuse(authn.ReasonUnavailable, "reload signing keys for kid %q: %w", truncate(p.header.KID), err)
		}
		if k = s.ring.Load().byKID[p.header.KID]; k == nil {
			return nil, authn.Refuse(authn.ReasonUnknownKey, "no signing key has kid %q", truncate(p.header.KID))
		}
	}
	if k.alg != alg {
		return nil, authn.Refuse(authn.ReasonAlgorithm, "access token says alg %s but key %s is %s", alg, k.kid, k.alg)
	}
	return k, nil
}

// reload loads the ring unless it was loaded within the reload interval.
func (s *Service) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	now := s.now()
	if !s.lastReload.IsZero() && now.Sub(s.lastReload) < s.reloadEvery {
		return nil
	}
	s.lastReload = now
	return s.Load(ctx)
}

func (s *Service) claims(p *parsed, k *signingKey) (Claims, error) {
	body, err := decodeSegment(p.Payload)
	if err != nil {
		return Claims{}, authn.Refuse(authn.ReasonMalformed, "access token payload is not base64: %w", err)
	}
	var pl struct {
		Sub *string         `json:"sub"`
		Iat json.RawMessage `json:"iat"`
		Exp json.RawMessage `json:"exp"`
		// CIDR is Conjur's network restriction; absent means none.
		CIDR *[]string `json:"cidr"`
	}
	if err := json.Unmarshal(body, &pl); err != nil {
		return Claims{}, authn.Refuse(authn.ReasonMalformed, "access token payload is not a JSON object: %w", err)
	}
	if pl.Sub == nil || *pl.Sub == "" {
		return Claims{}, authn.Refuse(authn.ReasonMissingClaim, "access token has no sub")
	}
	iat, ok := unixSeconds(pl.Iat)
	if !ok {
		return Claims{}, authn.Refuse(authn.ReasonMissingClaim, "access token iat is missing or not a number")
	}
	exp, ok := unixSeconds(pl.Exp)
	if !ok {
		return Claims{}, authn.Refuse(authn.ReasonMissingClaim, "access token exp is missing or not a number")
	}
	c := Claims{Subject: *pl.Sub, IssuedAt: time.Unix(iat, 0), Expires: time.Unix(exp, 0), KeyID: k.kid}
	if pl.CIDR != nil {
		if len(*pl.CIDR) == 0 {
			// Present but empty would allow nowhere; Conjur never
			// writes it, so it is a forgery or a bug.
			return Claims{}, authn.Refuse(authn.ReasonMalformed, "access token cidr claim is empty")
		}
		c.CIDR = *pl.CIDR
	}
	if exp <= iat {
		return Claims{}, authn.Refuse(authn.ReasonMalformed, "access token expires (%d) before it is issued (%d)", exp, iat)
	}
	if life := time.Duration(exp-iat) * time.Second; life > s.cfg.MaxTTL {
		return Claims{}, authn.Refuse(authn.ReasonLifetime, "access token for %q lives %s, more than %s", c.Subject, life, s.cfg.MaxTTL)
	}
	if err := s.checkTimes(c); err != nil {
		return Claims{}, err
	}
	return c, nil
}

// checkTimes checks exp and iat against the clock, with the leeway.
func (s *Service) checkTimes(c Claims) error {
	now := s.now()
	if !now.Before(c.Expires.Add(s.cfg.Leeway)) {
		return authn.Refuse(authn.ReasonExpired, "access token for %q expired at %s", c.Subject, c.Expires.UTC().Format(time.RFC3339))
	}
	if c.IssuedAt.After(now.Add(s.cfg.Leeway)) {
		return authn.Refuse(authn.ReasonNotYetValid, "access token for %q is issued in the future (%s)", c.Subject, c.IssuedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// unixSeconds reads a JSON number (not a string: Conjur clients read iat and
// exp as numbers) as whole seconds within a sane range.
func unixSeconds(n json.RawMessage) (int64, bool) {
	if len(n) == 0 || (n[0] != '-' && (n[0] < '0' || n[0] > '9')) {
		return 0, false
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, i > 0 && i < 1<<40
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != math.Trunc(f) || f <= 0 || f >= 1<<40 {
		return 0, false
	}
	return int64(f), true
}

// truncate keeps attacker-chosen text short in log details.
func truncate(s string) string {
	const n = 64
	if len(s) > n {
		return strconv.Quote(s[:n]) + "..."
	}
	return s
}
