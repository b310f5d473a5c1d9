package seed

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
)

// WebserviceID is the Conjur resource that gates seed issuance, relative to
// the account.
const WebserviceID = "webservice:conjur/seed-generation"

// DefaultTTL is how long a seed (and a Standby's enrollment token) is valid.
const DefaultTTL = time.Hour

// Policy is what the Issuer asks the permission graph. Ids are
// "account:kind:id".
type Policy interface {
	Allowed(role, privilege, resource string) bool
	// Annotation returns a resource's annotation value.
	Annotation(resource, name string) (string, bool)
	// IsMember reports whether member belongs to role, directly or not.
	IsMember(role, member string) bool
}

// CA issues certificates under the cluster's profiles.
type CA interface {
	Issue(ctx context.Context, profile pki.ProfileName, req pki.Request) (*pki.Issued, error)
	Pin() pki.Pin
	BundlePEM() []byte
}

// Store records seeds and refusals, and holds Standby enrollment tokens.
type Store interface {
	// Put records an issued seed and, for a Standby, its enrollment in one
	// transaction.
	Put(ctx context.Context, r Record, e *Enrollment) error
	// Audit records a refused request.
	Audit(ctx context.Context, e Event) error
	// List returns every seed record, oldest first.
	List(ctx context.Context) ([]Record, error)
	// Revoke marks a seed revoked, revokes its certificate serials and
	// deletes its enrollment token, in one transaction.
	Revoke(ctx context.Context, id, by string, at time.Time) (Record, error)
}

// Record is the audit record of one issued seed.
type Record struct {
	ID        string       `json:"id"`
	Kind      archive.Kind `json:"kind"`
	Requester string       `json:"requester"`
	// Host is the Standby's host id; empty for Followers.
	Host      string    `json:"host,omitempty"`
	Node      string    `json:"node,omitempty"`
	Hostnames []string  `json:"hostnames,omitempty"`
	Serials   []string  `json:"serials"`
	Sealed    bool      `json:"sealed"`
	From      string    `json:"from,omitempty"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
}

// Enrollment is a Standby's single-use enrollment token as stored: only its
// hash is the key.
type Enrollment struct {
	TokenHash string    `json:"-"`
	SeedID    string    `json:"seed_id"`
	Host      string    `json:"host"`
	NodeName  string    `json:"node_name"`
	ExpiresAt time.Time `json:"expires_at"`
	// Serials are the seed's certificate serials (hex): the Leader binds
	// the enrolling node's etcd access to them (cluster.CertsPrefix).
	Serials []string `json:"serials,omitempty"`
}

// TokenHash is the hex SHA-256 under which an enrollment token is stored.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Event is a refused seed request, for the audit trail.
type Event struct {
	At        time.Time    `json:"at"`
	Kind      archive.Kind `json:"kind"`
	Requester string       `json:"requester"`
	Hostnames []string     `json:"hostnames,omitempty"`
	Host      string       `json:"host,omitempty"`
	From      string       `json:"from,omitempty"`
	Reason    string       `json:"reason"`
}

// Config holds an Issuer's dependencies.
type Config struct {
	Account string
	Cluster string
	Policy  Policy
	CA      CA
	Store   Store
	// Signer returns the key and chain that sign seeds (the Leader's node
	// certificate, which chains to the cluster CA).
	Signer func() (archive.Signer, error)
	// DataKey returns the data key ring file's bytes (pki.Keyring.Marshal).
	DataKey func() []byte
	// Endpoints returns the cluster's REST endpoints for the manifest.
	Endpoints func() archive.Endpoints
	// Reserved returns the names of the cluster's own nodes, which a
	// Follower certificate may never carry.
	Reserved func() []string
	// TTL of seeds; DefaultTTL when zero.
	TTL time.Duration
	// AllowPlain lets callers ask for unsealed seeds (Conjur's seed
	// fetcher expects a plain tar). Off by default.
	AllowPlain bool
	// Ephemerals, when set, supplies the ephemeral keys of sealing, made
	// ahead of a burst. The caller stops it.
	Ephemerals *archive.Ephemerals
	// MaxConcurrent is how many seeds are signed and sealed at once
	// (default GOMAXPROCS): the rest wait their turn in arrival order, so
	// that a storm of seeds keeps at most that many goroutines busy with
	// cryptography and the node's other requests (status, reads, logins)
	// do not queue behind hundreds of them.
	MaxConcurrent int
	// MaxWaiting is how many seed requests may wait for their turn
	// (default DefaultMaxWaiting); beyond it a request is refused at once
	// with ErrBusy.
	MaxWaiting int
}

// DefaultMaxWaiting is how many seed requests wait for a core before more
// are refused with ErrBusy: about a second of a storm at the rates a Leader
// sustains (docs/benchmarks.md).
const DefaultMaxWaiting = 1024

// BusyRetryAfter is the wait an ErrBusy answer suggests (Retry-After).
const BusyRetryAfter = time.Second

// Option changes optional behaviour.
type Option func(*Issuer)

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(i *Issuer) { i.now = now } }

// Issuer issues seeds.
type Issuer struct {
	c   Config
	now func() time.Time

	// builder is reused while the signing certificate stays the same:
	// making one checks the signer's chain, which costs two signature
	// verifications per seed otherwise.
	mu          sync.Mutex
	builder     *archive.Builder
	builderLeaf *x509.Certificate

	// slots holds one token per seed being signed and sealed; waiting
	// counts the requests queued for one.
	slots   chan struct{}
	waiting atomic.Int64
}

// New checks the dependencies.
func New(c Config, opts ...Option) (*Issuer, error) {
	switch {
	case c.Account == "":
		return nil, errors.New("seed: Account is required")
	case c.Policy == nil:
		return nil, errors.New("seed: Policy is required")
	case c.CA == nil:
		return nil, errors.New("seed: CA is required")
	case c.Store == nil:
		return nil, errors.New("seed: Store is required")
	case c.Signer == nil || c.DataKey == nil || c.Endpoints == nil:
		return nil, errors.New("seed: Signer, DataKey and Endpoints are required")
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.Cluster == "" {
		c.Cluster = c.Account
	}
	if c.Reserved == nil {
		c.Reserved = func() []string { return nil }
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = runtime.GOMAXPROCS(0)
	}
	if c.MaxWaiting <= 0 {
		c.MaxWaiting = DefaultMaxWaiting
	}
	i := &Issuer{c: c, now: time.Now, slots: make(chan struct{}, c.MaxConcurrent)}
	for _, o := range opts {
		o(i)
	}
	return i, nil
}

// Request is what a caller asks for.
type Request struct {
	// Requester is the caller's role id ("account:host:id").
	Requester string
	// From is the caller's address, for the audit trail.
	From string
	// Recipient is the age X25519 recipient ("age1...") the seed is sealed
	// to. Empty asks for a plain seed, which needs Config.AllowPlain.
	Recipient string
	// Hostnames are the Follower's DNS names.
	Hostnames []string
	// Host is the Standby's host id, "conjur/cluster/<cluster>/<node>"
	// (relative to the account) or fully qualified.
	Host string
	// DNSNames and IPs are extra names of the Standby's certificates.
	DNSNames []string
	IPs      []net.IP
}

// Issued is an issued seed.
type Issued struct {
	Record  Record
	Archive []byte
	CAPin   pki.Pin
	// EnrollmentToken is set for Standby seeds; it is also inside the seed.
	EnrollmentToken string
}

// acquire waits for a turn to sign and seal (Config.MaxConcurrent), in
// arrival order, or refuses with ErrBusy when Config.MaxWaiting requests
// already wait. The returned release gives the turn back; calling it
// again does nothing.
func (i *Issuer) acquire(ctx context.Context) (release func(), err error) {
	release = sync.OnceFunc(func() { <-i.slots })
	select {
	case i.slots <- struct{}{}:
		return release, nil
	default:
	}
	if i.waiting.Add(1) > int64(i.c.MaxWaiting) {
		i.waiting.Add(-1)
		return nil, fmt.Errorf("%w: %d wait for one of %d signing turns (the limit is %d); try again in %s", ErrBusy, i.c.MaxWaiting, i.c.MaxConcurrent, i.c.MaxWaiting, BusyRetryAfter)
	}
	defer i.waiting.Add(-1)
	select {
	case i.slots <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (i *Issuer) webservice() string { return i.c.Account + ":" + WebserviceID }

// authorize applies the execute rule and records a refusal.
func (i *Issuer) authorize(ctx context.Context, kind archive.Kind, req Request) error {
	if i.c.Policy.Allowed(req.Requester, "execute", i.webservice()) {
		return nil
	}
	i.refuse(ctx, kind, req, "no execute on "+i.webservice())
	return fmt.Errorf("%w: %s needs execute on %s", ErrForbidden, req.Requester, i.webservice())
}

func (i *Issuer) refuse(ctx context.Context, kind archive.Kind, req Request, reason string) {
	_ = i.c.Store.Audit(ctx, Event{At: i.now().UTC(), Kind: kind, Requester: req.Requester, Hostnames: req.Hostnames, Host: req.Host, From: req.From, Reason: reason})
}

// recipient parses the age recipient, or allows a plain seed.
func (i *Issuer) recipient(s string) (age.Recipient, error) {
	if s == "" {
		if !i.c.AllowPlain {
			return nil, fmt.Errorf("%w: send an age X25519 recipient (age1...) to receive the seed sealed; this server does not hand out seeds in the clear", ErrPlainDisabled)
		}
		return nil, nil
	}
	r, err := archive.ParseRecipient(s)
	if err != nil {
		return nil, fmt.Errorf("%w: recipient: %v", ErrInvalidRequest, err)
	}
	if i.c.Ephemerals == nil {
		return r, nil
	}
	pr, err := archive.PooledRecipient(r, i.c.Ephemerals)
	if err != nil {
		return nil, fmt.Errorf("%w: recipient: %v", ErrInvalidRequest, err)
	}
	return pr, nil
}

// IssueFollower issues a Follower seed.
func (i *Issuer) IssueFollower(ctx context.Context, req Request) (*Issued, error) {
	if err := i.authorize(ctx, archive.KindFollower, req); err != nil {
		return nil, err
	}
	rcpt, err := i.recipient(req.Recipient)
	if err != nil {
		return nil, err
	}
	var callerPatterns []string
	if v, ok := i.c.Policy.Annotation(req.Requester, HostnamesAnnotation); ok {
		callerPatterns = parsePatterns(v)
	}
	wsPatterns := []string{}
	if v, ok := i.c.Policy.Annotation(i.webservice(), HostnamesAnnotation); ok {
		wsPatterns = parsePatterns(v)
	}
	reserved := map[string]bool{}
	for _, n := range i.c.Reserved() {
		reserved[strings.ToLower(n)] = true
	}
	if err := checkHostnames(req.Hostnames, wsPatterns, callerPatterns, reserved, i.webservice(), req.Requester); err != nil {
		i.refuse(ctx, archive.KindFollower, req, err.Error())
		return nil, err
	}
	names := make([]string, len(req.Hostnames))
	for k, n := range req.Hostnames {
		names[k] = strings.ToLower(strings.TrimSuffix(n, "."))
	}
	release, err := i.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	server, err := i.c.CA.Issue(ctx, pki.ProfileFollowerServer, pki.Request{CommonName: names[0], DNSNames: names})
	if err != nil {
		return nil, fmt.Errorf("seed: issue the Follower server certificate: %w", err)
	}
	client, err := i.c.CA.Issue(ctx, pki.ProfileFollowerClient, pki.Request{CommonName: names[0]})
	if err != nil {
		return nil, fmt.Errorf("seed: issue the Follower replication certificate: %w", err)
	}
	files, err := certFiles(map[string]*pki.Issued{"tls/follower": server, "tls/replication": client})
	if err != nil {
		return nil, err
	}
	return i.build(ctx, release, archive.KindFollower, req, rcpt, names, "", "", files, nil, server, client)
}

// ClusterOf returns the cluster name of a Standby host id
// "conjur/cluster/<name>/<node>", and the node's name.
func ClusterOf(hostID string) (cluster, node string, ok bool) {
	rest, found := strings.CutPrefix(hostID, "conjur/cluster/")
	if !found {
		return "", "", false
	}
	cluster, node, found = strings.Cut(rest, "/")
	if !found || cluster == "" || node == "" || strings.Contains(node, "/") {
		return "", "", false
	}
	return cluster, node, true
}

// checkStandbyNames refuses what a Standby's certificates must not carry:
// a wildcard or malformed DNS name, an address that names no one host
// (0.0.0.0, ::, multicast), and the issuing Leader's own node name, whose
// certificate would let the new node pass for the Leader.
func (i *Issuer) checkStandbyNames(node string, req Request) error {
	for _, n := range req.DNSNames {
		name := strings.ToLower(strings.TrimSuffix(n, "."))
		if strings.Contains(name, "*") {
			return fmt.Errorf("%w: DNS name %q is a wildcard; a Standby's certificate names the machine itself (for example standby-1.example.com)", ErrInvalidRequest, n)
		}
		if net.ParseIP(name) != nil || !validDNSName(name) {
			return fmt.Errorf("%w: %q is not a DNS name; give IP addresses as IPs", ErrInvalidRequest, n)
		}
	}
	for _, ip := range req.IPs {
		if ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("%w: IP address %v names no single host; give the Standby's own address", ErrInvalidRequest, ip)
		}
	}
	if signer, err := i.c.Signer(); err == nil && len(signer.Chain) > 0 && strings.EqualFold(signer.Chain[0].Subject.CommonName, node) {
		return fmt.Errorf("%w: %q is the node name of this Leader; declare the Standby under its own name in conjur/cluster/%s", ErrInvalidRequest, node, i.c.Cluster)
	}
	return nil
}

// IssueStandby issues a Standby seed for a host declared in the cluster
// policy.
func (i *Issuer) IssueStandby(ctx context.Context, req Request) (*Issued, error) {
	if err := i.authorize(ctx, archive.KindStandby, req); err != nil {
		return nil, err
	}
	rcpt, err := i.recipient(req.Recipient)
	if err != nil {
		return nil, err
	}
	hostID := strings.TrimPrefix(strings.TrimPrefix(req.Host, i.c.Account+":"), "host:")
	cluster, node, ok := ClusterOf(hostID)
	if !ok {
		err := fmt.Errorf("%w: Standby host %q must be declared in the cluster policy as conjur/cluster/<cluster>/<node name>", ErrInvalidRequest, req.Host)
		i.refuse(ctx, archive.KindStandby, req, err.Error())
		return nil, err
	}
	// A Standby joins the quorum and holds the data key: beyond the
	// seed-generation gate, the caller must manage the cluster's policy.
	clusterPolicy := i.c.Account + ":policy:conjur/cluster/" + cluster
	if !i.c.Policy.Allowed(req.Requester, "update", clusterPolicy) {
		i.refuse(ctx, archive.KindStandby, req, "no update on "+clusterPolicy)
		return nil, fmt.Errorf("%w: a Standby seed needs update on %s", ErrForbidden, clusterPolicy)
	}
	host := i.c.Account + ":host:" + hostID
	layer := i.c.Account + ":layer:conjur/cluster/" + cluster
	if !i.c.Policy.IsMember(layer, host) {
		err := fmt.Errorf("%w: %s is not a member of %s; grant it the layer in policy conjur/cluster/%s", ErrNotClusterMember, host, layer, cluster)
		i.refuse(ctx, archive.KindStandby, req, err.Error())
		return nil, err
	}
	if err := i.checkStandbyNames(node, req); err != nil {
		i.refuse(ctx, archive.KindStandby, req, err.Error())
		return nil, err
	}
	dns := append([]string{node}, req.DNSNames...)
	ips := append([]net.IP{net.IPv4(127, 0, 0, 1)}, req.IPs...)
	release, err := i.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	nodeCert, err := i.c.CA.Issue(ctx, pki.ProfileLeaderServer, pki.Request{CommonName: node, DNSNames: dns, IPAddresses: ips})
	if err != nil {
		return nil, fmt.Errorf("seed: issue the Standby's node certificate: %w", err)
	}
	peerCert, err := i.c.CA.Issue(ctx, pki.ProfileEtcdPeer, pki.Request{CommonName: node, DNSNames: dns, IPAddresses: ips})
	if err != nil {
		return nil, fmt.Errorf("seed: issue the Standby's etcd peer certificate: %w", err)
	}
	files, err := certFiles(map[string]*pki.Issued{"tls/node": nodeCert, "tls/etcd-peer": peerCert})
	if err != nil {
		return nil, err
	}
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	files = append(files, archive.File{Path: "enrollment-token", Mode: 0o600, Data: []byte(token + "\n")})
	enroll := &Enrollment{TokenHash: TokenHash(token), Host: host, NodeName: node}
	iss, err := i.build(ctx, release, archive.KindStandby, req, rcpt, dns, host, node, files, enroll, nodeCert, peerCert)
	if err != nil {
		return nil, err
	}
	iss.EnrollmentToken = token
	return iss, nil
}

func certFiles(certs map[string]*pki.Issued) ([]archive.File, error) {
	var files []archive.File
	for base, is := range certs {
		keyPEM, err := is.KeyPEM()
		if err != nil {
			return nil, err
		}
		files = append(files,
			archive.File{Path: base + ".pem", Mode: 0o644, Data: is.CertPEM()},
			archive.File{Path: base + "-key.pem", Mode: 0o600, Data: keyPEM})
	}
	return files, nil
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}

func newID() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// build signs and seals the archive and records it. It calls release
// once the cryptography is done: the record's wait for etcd holds no
// signing turn (and lets the store commit many records together).
func (i *Issuer) build(ctx context.Context, release func(), kind archive.Kind, req Request, rcpt age.Recipient, names []string, host, node string, files []archive.File, enroll *Enrollment, certs ...*pki.Issued) (*Issued, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	now := i.now().UTC()
	exp := now.Add(i.c.TTL)
	files = append(files,
		archive.File{Path: "tls/ca.pem", Mode: 0o644, Data: i.c.CA.BundlePEM()},
		archive.File{Path: "data.key", Mode: 0o600, Data: i.c.DataKey()})
	if node == "" {
		node = names[0]
	}
	md := archive.Metadata{
		SeedID: id, Kind: kind, Account: i.c.Account, Cluster: i.c.Cluster,
		Node:      archive.Node{Name: node, Role: host},
		Hostnames: names, Endpoints: i.c.Endpoints(), CAPin: i.c.CA.Pin(),
		IssuedAt: now, ExpiresAt: exp,
	}
	b, err := i.builderFor()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(archiveSizeHint(files))
	if rcpt != nil {
		_, err = b.Seal(&buf, rcpt, md, files)
	} else {
		_, err = b.WritePlain(&buf, md, files)
	}
	if err != nil {
		return nil, fmt.Errorf("seed: build the archive: %w", err)
	}
	rec := Record{ID: id, Kind: kind, Requester: req.Requester, Host: host, Node: node, Hostnames: names,
		Sealed: rcpt != nil, From: req.From, IssuedAt: now, ExpiresAt: exp}
	for _, c := range certs {
		rec.Serials = append(rec.Serials, c.Leaf().SerialNumber.Text(16))
	}
	release()
	if enroll != nil {
		enroll.SeedID, enroll.ExpiresAt, enroll.Serials = id, exp, rec.Serials
	}
	if err := i.c.Store.Put(ctx, rec, enroll); err != nil {
		return nil, fmt.Errorf("seed: record seed %s: %w", id, err)
	}
	return &Issued{Record: rec, Archive: buf.Bytes(), CAPin: i.c.CA.Pin()}, nil
}

// builderFor returns the archive builder of the current signing certificate.
func (i *Issuer) builderFor() (*archive.Builder, error) {
	signer, err := i.c.Signer()
	if err != nil || len(signer.Chain) == 0 {
		return nil, fmt.Errorf("seed: signing key: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.builder != nil && i.builderLeaf.Equal(signer.Chain[0]) {
		return i.builder, nil
	}
	b, err := archive.NewBuilder(signer)
	if err != nil {
		return nil, fmt.Errorf("seed: signing key: %w", err)
	}
	i.builder, i.builderLeaf = b, signer.Chain[0]
	return b, nil
}

// archiveSizeHint estimates the archive's size from above, without much
// to spare (a Follower seed is about 16.5 KiB): the files with their tar
// headers and padding, and 8 KiB for the manifest, the signature with its
// chain, the tar's end and age's framing.
func archiveSizeHint(files []archive.File) int {
	n := 8 << 10
	for _, f := range files {
		n += len(f.Data) + 1024
	}
	return n
}

// List returns the seed records.
func (i *Issuer) List(ctx context.Context) ([]Record, error) { return i.c.Store.List(ctx) }

// Revoke voids a seed: its certificates are revoked and its enrollment
// token deleted.
func (i *Issuer) Revoke(ctx context.Context, id, by string) (Record, error) {
	return i.c.Store.Revoke(ctx, id, by, i.now().UTC())
}
