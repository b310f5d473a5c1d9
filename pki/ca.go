package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/authority"
	casapi "github.com/smallstep/certificates/cas/apiv1"
	"github.com/smallstep/certificates/cas/softcas"
	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"

	"github.com/sowerproject/sower/internal/keypool"
)

// DefaultCAStoreKey is the etcd key the CA record (certificates and sealed
// keys) is stored under when Config.StoreKey is empty.
const DefaultCAStoreKey = "/sower/pki/ca"

// Default CA lifetimes. Leaf lifetimes are in the profile table.
const (
	DefaultRootLifetime         = 10 * 365 * day
	DefaultIntermediateLifetime = 5 * 365 * day
)

// backdate makes a new certificate valid slightly in the past, so a peer
// whose clock lags a little does not refuse it as "not yet valid".
const backdate = time.Minute

// Config holds what every CA constructor requires.
type Config struct {
	// Store persists the CA record; required.
	Store Store
	// Sealer seals the CA's private keys before they reach the Store (the
	// cluster's data key, a *Keyring); required.
	Sealer Sealer
	// StoreKey is where the CA record lives; DefaultCAStoreKey if empty.
	StoreKey string
	// Name prefixes the CA subjects at bootstrap: "<Name> Root CA",
	// "<Name> Intermediate CA". Default "sower cluster".
	Name string
}

func (c *Config) check() error {
	switch {
	case c.Store == nil:
		return errors.New("pki: Config.Store is required")
	case c.Sealer == nil:
		return errors.New("pki: Config.Sealer is required (the cluster's data keyring)")
	}
	if c.StoreKey == "" {
		c.StoreKey = DefaultCAStoreKey
	}
	if c.Name == "" {
		c.Name = "sower cluster"
	}
	return nil
}

// Option adjusts a CA.
type Option func(*options)

type options struct {
	clock                Clock
	profiles             []Profile
	keyType              KeyType
	rootLifetime         time.Duration
	intermediateLifetime time.Duration
	keyPassword          []byte
	keyPool              int
}

// WithClock sets the clock used for validity periods (tests).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithProfiles replaces the profiles with the same names in the default
// table; other defaults stay.
func WithProfiles(ps ...Profile) Option {
	return func(o *options) { o.profiles = append(o.profiles, ps...) }
}

// WithKeyType sets the key type of CA keys created at bootstrap and the
// default type of generated certificate keys. Default ECDSA P-256.
func WithKeyType(k KeyType) Option { return func(o *options) { o.keyType = k } }

// WithRootLifetime sets the validity of a root created at bootstrap.
func WithRootLifetime(d time.Duration) Option { return func(o *options) { o.rootLifetime = d } }

// WithIntermediateLifetime sets the validity of intermediates created at
// bootstrap, import of a root, and RotateIntermediate.
func WithIntermediateLifetime(d time.Duration) Option {
	return func(o *options) { o.intermediateLifetime = d }
}

// WithKeyPassword decrypts an encrypted PEM key given to Import.
func WithKeyPassword(pw []byte) Option { return func(o *options) { o.keyPassword = pw } }

// WithKeyPool keeps up to n keys of the CA's key type generated ahead, for
// certificates whose key the CA makes (no CSR): a burst of seed requests
// then spends no time on key generation until the pool runs dry. The pool
// starts filling with the first such certificate and stops with Close.
// Each key is used once.
func WithKeyPool(n int) Option { return func(o *options) { o.keyPool = n } }

// CA is the cluster certificate authority: it issues certificates under the
// profile table, signing with smallstep's embedded authority. Every node that
// can read the Store and holds the data key can Load it, so a Standby takes
// over issuing after a failover. A CA is safe for concurrent use.
type CA struct {
	cfg      Config
	opts     options
	profiles map[ProfileName]Profile

	mu     sync.Mutex // serializes RotateIntermediate and Close
	state  atomic.Pointer[caState]
	closed bool

	// keys is the pool of WithKeyPool (nil without): it starts filling
	// with the first certificate whose key the CA makes.
	keys *keypool.Pool[crypto.Signer]
}

// caState is one issuing configuration; RotateIntermediate swaps it whole.
type caState struct {
	chain   []*x509.Certificate // issuing CA first, trust anchor last
	signer  crypto.Signer       // key of chain[0]
	rootKey crypto.Signer       // key of the anchor when held (bootstrap, root import)
	auth    *authority.Authority
	cas     *softcas.SoftCAS
	// leaf signs certificates whose key the CA made without crypto/x509's
	// re-verification (leafsign.go); nil when the issuing key is not one
	// it handles, and then the soft CAS signs them.
	leaf *leafSigner
	pin  Pin
}

func newCA(cfg Config, opts []Option) (*CA, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	o := options{
		clock:                SystemClock(),
		keyType:              DefaultKeyType,
		rootLifetime:         DefaultRootLifetime,
		intermediateLifetime: DefaultIntermediateLifetime,
	}
	for _, fn := range opts {
		fn(&o)
	}
	if _, ok := keyTypeParams[o.keyType]; !ok {
		return nil, fmt.Errorf("pki: unknown key type %q", string(o.keyType))
	}
	if o.rootLifetime <= 0 || o.intermediateLifetime <= 0 {
		return nil, errors.New("pki: CA lifetimes must be positive")
	}
	ca := &CA{cfg: cfg, opts: o, profiles: map[ProfileName]Profile{}}
	if o.keyPool > 0 {
		ca.keys = keypool.New(o.keyPool, o.keyType.Generate)
	}
	for _, p := range defaultProfiles {
		ca.profiles[p.Name] = p
	}
	for _, p := range o.profiles {
		if err := p.validate(); err != nil {
			return nil, err
		}
		p.ExtKeyUsage = slices.Clone(p.ExtKeyUsage)
		ca.profiles[p.Name] = p
	}
	return ca, nil
}

// Bootstrap creates the cluster CA, a root and an intermediate, and stores
// it (keys sealed) under Config.StoreKey. It refuses with ErrCAExists if a CA
// is already stored. Inputs: an empty store and the data keyring. Output: the
// CA, ready to issue; its Pin is what joining nodes are given.
func Bootstrap(ctx context.Context, cfg Config, opts ...Option) (*CA, error) {
	ca, err := newCA(cfg, opts)
	if err != nil {
		return nil, err
	}
	if err := ca.refuseExisting(ctx); err != nil {
		return nil, err
	}
	rootKey, err := ca.opts.keyType.Generate()
	if err != nil {
		return nil, err
	}
	now := ca.opts.clock.Now()
	root, err := createCA(&x509.Certificate{
		Subject:    pkix.Name{CommonName: ca.cfg.Name + " Root CA"},
		NotBefore:  now.Add(-backdate),
		NotAfter:   now.Add(ca.opts.rootLifetime),
		MaxPathLen: 1,
	}, nil, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("pki: create root: %w", err)
	}
	return ca.startFromRoot(ctx, root, rootKey)
}

// Import stores an existing CA instead of creating one. certPEM holds the CA
// certificate first, optionally followed by its issuers; keyPEM holds its
// private key (encrypted keys need WithKeyPassword). For a root (self-signed)
// CA, sower creates its own intermediate under it, as Bootstrap does; for an
// intermediate, sower issues with it directly, and the last certificate of
// certPEM is the trust anchor clients pin. The key must match the
// certificate, and the certificate must be a CA, currently valid.
func Import(ctx context.Context, cfg Config, certPEM, keyPEM []byte, opts ...Option) (*CA, error) {
	ca, err := newCA(cfg, opts)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: import CA certificate: %w", err)
	}
	key, err := parsePrivateKeyPEM(keyPEM, ca.opts.keyPassword)
	if err != nil {
		return nil, fmt.Errorf("pki: import CA key: %w", err)
	}
	if err := checkImportedChain(certs, key, ca.opts.clock.Now()); err != nil {
		return nil, err
	}
	if err := ca.refuseExisting(ctx); err != nil {
		return nil, err
	}
	top := certs[0]
	if isSelfSigned(top) && !(top.MaxPathLen == 0 && top.MaxPathLenZero) {
		return ca.startFromRoot(ctx, top, key)
	}
	// An intermediate, or a root whose path length forbids intermediates:
	// issue with it directly. Without a root key to sign with,
	// RotateIntermediate is refused.
	st, err := ca.newState(certs, key, nil)
	if err != nil {
		return nil, err
	}
	if err := ca.persist(ctx, st); err != nil {
		return nil, err
	}
	ca.state.Store(st)
	return ca, nil
}

// Load reads the CA stored under Config.StoreKey: this is how a Standby takes
// over issuing after a failover. It fails with an error wrapping ErrNotFound
// if no CA has been bootstrapped or imported.
func Load(ctx context.Context, cfg Config, opts ...Option) (*CA, error) {
	ca, err := newCA(cfg, opts)
	if err != nil {
		return nil, err
	}
	sealed, err := ca.cfg.Store.Get(ctx, ca.cfg.StoreKey)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("pki: no cluster CA at %q (bootstrap the Leader, or import a CA, first): %w", ca.cfg.StoreKey, err)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	plain, err := ca.cfg.Sealer.Open(ca.cfg.StoreKey, sealed)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	defer clear(plain)
	var rec caRecord
	if err := json.Unmarshal(plain, &rec); err != nil || rec.Format != caRecordFormat {
		return nil, fmt.Errorf("pki: load CA: the record at %q is not a sower CA record (format %d)", ca.cfg.StoreKey, rec.Format)
	}
	chain, err := ParseCertificatesPEM([]byte(rec.Chain))
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	signer, err := parsePrivateKeyPEM([]byte(rec.IssuerKey), nil)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA issuer key: %w", err)
	}
	var rootKey crypto.Signer
	if rec.RootKey != "" {
		if rootKey, err = parsePrivateKeyPEM([]byte(rec.RootKey), nil); err != nil {
			return nil, fmt.Errorf("pki: load CA root key: %w", err)
		}
		if !keyutil.Equal(rootKey.Public(), chain[len(chain)-1].PublicKey) {
			return nil, fmt.Errorf("%w: stored root key", ErrKeyMismatch)
		}
	}
	if !keyutil.Equal(signer.Public(), chain[0].PublicKey) {
		return nil, fmt.Errorf("%w: stored issuer key", ErrKeyMismatch)
	}
	st, err := ca.newState(chain, signer, rootKey)
	if err != nil {
		return nil, err
	}
	ca.state.Store(st)
	return ca, nil
}

// RotateIntermediate replaces the issuing intermediate with a new one signed
// by the root, and stores it. Certificates issued before keep verifying (the
// root, and so the pin, do not change); new ones carry the new intermediate.
// It needs the root key: a CA imported as an intermediate returns
// ErrNoRootKey. Other nodes see the new intermediate when they Load again.
func (ca *CA) RotateIntermediate(ctx context.Context) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	old := ca.state.Load()
	if old.rootKey == nil {
		return fmt.Errorf("%w: import a new intermediate instead", ErrNoRootKey)
	}
	root := old.chain[len(old.chain)-1]
	st, err := ca.intermediateState(root, old.rootKey)
	if err != nil {
		return err
	}
	if err := ca.persist(ctx, st); err != nil {
		return err
	}
	ca.state.Store(st)
	return nil
}

// Close releases the embedded authority. It is idempotent.
func (ca *CA) Close() error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.closed {
		return nil
	}
	ca.closed = true
	if ca.keys != nil {
		ca.keys.Stop()
	}
	if st := ca.state.Load(); st != nil {
		return st.auth.Shutdown()
	}
	return nil
}

// Roots returns the trust anchor (the root, or the top of an imported chain)
// for verifiers' pools.
func (ca *CA) Roots() []*x509.Certificate {
	c := ca.state.Load().chain
	return []*x509.Certificate{c[len(c)-1]}
}

// Chain returns the CA chain issued certificates carry: the issuing CA first,
// the trust anchor last.
func (ca *CA) Chain() []*x509.Certificate { return slices.Clone(ca.state.Load().chain) }

// BundlePEM is the CA chain in PEM, what `GET /ca` serves and clients load
// with ParseCertificatesPEM.
func (ca *CA) BundlePEM() []byte { return EncodeCertificatesPEM(ca.state.Load().chain) }

// Pin is the pin of the trust anchor's key, what `sower ca pin` prints. It
// does not change when the intermediate rotates.
func (ca *CA) Pin() Pin { return ca.state.Load().pin }

// Profile returns the profile of that name.
func (ca *CA) Profile(name ProfileName) (Profile, bool) {
	p, ok := ca.profiles[name]
	p.ExtKeyUsage = slices.Clone(p.ExtKeyUsage)
	return p, ok
}

// Profiles returns the CA's profile table, sorted by name.
func (ca *CA) Profiles() []Profile {
	out := make([]Profile, 0, len(ca.profiles))
	for _, name := range slices.Sorted(maps.Keys(ca.profiles)) {
		p, _ := ca.Profile(name)
		out = append(out, p)
	}
	return out
}

// MaxLifetime is the longest lifetime of any profile: a revoked serial can be
// forgotten that long after its revocation (an etcd lease of this length on
// the revocation entry is enough).
func (ca *CA) MaxLifetime() time.Duration {
	var m time.Duration
	for _, p := range ca.profiles {
		m = max(m, p.Lifetime)
	}
	return m
}

func (ca *CA) refuseExisting(ctx context.Context) error {
	_, err := ca.cfg.Store.Get(ctx, ca.cfg.StoreKey)
	switch {
	case err == nil:
		return fmt.Errorf("%w at %q: load it instead, or remove it deliberately before creating another", ErrCAExists, ca.cfg.StoreKey)
	case errors.Is(err, ErrNotFound):
		return nil
	default:
		return fmt.Errorf("pki: check for an existing CA: %w", err)
	}
}

// startFromRoot creates an intermediate under root and stores both.
func (ca *CA) startFromRoot(ctx context.Context, root *x509.Certificate, rootKey crypto.Signer) (*CA, error) {
	st, err := ca.intermediateState(root, rootKey)
	if err != nil {
		return nil, err
	}
	if err := ca.persist(ctx, st); err != nil {
		return nil, err
	}
	ca.state.Store(st)
	return ca, nil
}

func (ca *CA) intermediateState(root *x509.Certificate, rootKey crypto.Signer) (*caState, error) {
	key, err := ca.opts.keyType.Generate()
	if err != nil {
		return nil, err
	}
	now := ca.opts.clock.Now()
	notAfter := now.Add(ca.opts.intermediateLifetime)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	inter, err := createCA(&x509.Certificate{
		Subject:        pkix.Name{CommonName: ca.cfg.Name + " Intermediate CA"},
		NotBefore:      now.Add(-backdate),
		NotAfter:       notAfter,
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}, root, key.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("pki: create intermediate: %w", err)
	}
	return ca.newState([]*x509.Certificate{inter, root}, key, rootKey)
}

// createCA signs a CA certificate; parent nil means self-signed.
func createCA(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	if parent == nil {
		parent = tmpl
	}
	return x509util.CreateCertificate(tmpl, parent, pub, signer)
}

func (ca *CA) newState(chain []*x509.Certificate, signer, rootKey crypto.Signer) (*caState, error) {
	cas, err := softcas.New(context.Background(), casapi.Options{
		Type:             casapi.SoftCAS,
		Signer:           signer,
		CertificateChain: chain,
	})
	if err != nil {
		return nil, fmt.Errorf("pki: start signer: %w", err)
	}
	auth, err := authority.NewEmbedded(
		authority.WithX509RootCerts(chain[len(chain)-1]),
		authority.WithX509SignerChain(chain, signer),
	)
	if err != nil {
		return nil, fmt.Errorf("pki: start embedded authority: %w", err)
	}
	return &caState{
		chain:   chain,
		signer:  signer,
		rootKey: rootKey,
		auth:    auth,
		cas:     cas,
		leaf:    newLeafSigner(chain[0], signer),
		pin:     PinOf(chain[len(chain)-1]),
	}, nil
}

const caRecordFormat = 1

// caRecord is the stored CA, sealed whole under the data key so that it is
// written and read in one operation: no reader sees a new certificate with
// an old key.
type caRecord struct {
	Format    int    `json:"format"`
	Chain     string `json:"chain"`
	IssuerKey string `json:"issuer_key"`
	RootKey   string `json:"root_key,omitempty"`
}

func (ca *CA) persist(ctx context.Context, st *caState) error {
	issuerKey, err := encodePrivateKeyPEM(st.signer)
	if err != nil {
		return err
	}
	rec := caRecord{Format: caRecordFormat, Chain: string(EncodeCertificatesPEM(st.chain)), IssuerKey: string(issuerKey)}
	if st.rootKey != nil {
		rootKey, err := encodePrivateKeyPEM(st.rootKey)
		if err != nil {
			return err
		}
		rec.RootKey = string(rootKey)
	}
	plain, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("pki: encode CA record: %w", err)
	}
	defer clear(plain)
	sealed, err := ca.cfg.Sealer.Seal(ca.cfg.StoreKey, plain)
	if err != nil {
		return fmt.Errorf("pki: seal CA record: %w", err)
	}
	if err := ca.cfg.Store.Put(ctx, ca.cfg.StoreKey, sealed); err != nil {
		return fmt.Errorf("pki: store CA record at %q: %w", ca.cfg.StoreKey, err)
	}
	return nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// checkImportedChain validates what Import was given.
func checkImportedChain(certs []*x509.Certificate, key crypto.Signer, now time.Time) error {
	top := certs[0]
	if !keyutil.Equal(key.Public(), top.PublicKey) {
		return fmt.Errorf("%w: the key file holds the key of another certificate", ErrKeyMismatch)
	}
	for i, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return fmt.Errorf("%w: %q lacks basicConstraints CA:TRUE", ErrNotCA, c.Subject.String())
		}
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return fmt.Errorf("%w: %q lacks the keyCertSign key usage", ErrNotCA, c.Subject.String())
		}
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("%w: %q is valid from %s to %s", ErrExpired, c.Subject.String(),
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
		if i+1 < len(certs) {
			if err := c.CheckSignatureFrom(certs[i+1]); err != nil {
				return fmt.Errorf("pki: import: %q is not signed by the next certificate %q (give the CA first, then its issuers in order): %w",
					c.Subject.String(), certs[i+1].Subject.String(), err)
			}
		}
	}
	return nil
}

// EncodeCertificatesPEM renders certificates as concatenated PEM blocks.
func EncodeCertificatesPEM(certs []*x509.Certificate) []byte {
	n := 0
	for _, c := range certs {
		n += pemSize("CERTIFICATE", len(c.Raw))
	}
	b := make([]byte, 0, n)
	for _, c := range certs {
		b = appendPEM(b, "CERTIFICATE", c.Raw)
	}
	return b
}

// ParseCertificatesPEM parses one or more PEM certificates, in order. Blocks
// of other types are refused rather than skipped, so a key pasted into a
// certificate field is noticed.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("pki: want PEM \"CERTIFICATE\" blocks, found %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("pki: no PEM certificate found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("pki: trailing data after the last PEM certificate")
	}
	return out, nil
}

// parsePrivateKeyPEM reads one PEM private key: PKCS #8, SEC 1 (EC) or
// PKCS #1 (RSA), encrypted only if a password is given. It deliberately
// accepts fewer formats than pemutil.Parse: keys arrive in seeds and imports,
// and formats whose key derivation cost is chosen by the file (OpenSSH,
// cosign) would let a crafted file stall the parser.
func parsePrivateKeyPEM(data, password []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("more than one PEM block where one private key was expected")
	}
	der := block.Bytes
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] == "4,ENCRYPTED" {
		if len(password) == 0 {
			return nil, errors.New("the private key is encrypted: give its password")
		}
		var err error
		if der, err = pemutil.DecryptPEMBlock(block, password); err != nil {
			return nil, fmt.Errorf("decrypt private key (wrong password?): %w", err)
		}
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(der)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(der)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	if err := checkPublicKey(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

func encodePrivateKeyPEM(k crypto.Signer) ([]byte, error) {
	if ec, ok := k.(*ecdsa.PrivateKey); ok {
		var buf [p256PKCS8Len]byte
		if der, ok := appendP256PKCS8(buf[:0], ec); ok {
			defer clear(buf[:])
			return appendPEM(make([]byte, 0, pemSize("PRIVATE KEY", len(der))), "PRIVATE KEY", der), nil
		}
	}
	block, err := pemutil.Serialize(k, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	if len(block.Headers) > 0 {
		return pem.EncodeToMemory(block), nil
	}
	return appendPEM(make([]byte, 0, pemSize(block.Type, len(block.Bytes))), block.Type, block.Bytes), nil
}
