package seed_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/pki/pkitest"
	"github.com/sowerproject/sower/policy"
	"github.com/sowerproject/sower/seed"
	"github.com/sowerproject/sower/seed/archive"
)

// memStore is a seed.Store in memory that records what it was asked.
type memStore struct {
	mu      sync.Mutex
	records map[string]seed.Record
	enroll  map[string]seed.Enrollment
	events  []seed.Event
}

func newMemStore() *memStore {
	return &memStore{records: map[string]seed.Record{}, enroll: map[string]seed.Enrollment{}}
}

func (m *memStore) Put(_ context.Context, r seed.Record, e *seed.Enrollment) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records[r.ID] = r
	if e != nil {
		m.enroll[e.TokenHash] = *e
	}
	return nil
}

func (m *memStore) Audit(_ context.Context, e seed.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
	return nil
}

func (m *memStore) List(context.Context) ([]seed.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []seed.Record
	for _, r := range m.records {
		out = append(out, r)
	}
	return out, nil
}

func (m *memStore) Revoke(_ context.Context, id, by string, at time.Time) (seed.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[id]
	if !ok {
		return r, seed.ErrNotFound
	}
	r.RevokedAt, r.RevokedBy = at, by
	m.records[id] = r
	for h, e := range m.enroll {
		if e.SeedID == id {
			delete(m.enroll, h)
		}
	}
	return r, nil
}

const testPolicy = `
- !policy
  id: conjur
  body:
  - !policy
    id: seed-generation
    body:
    - !webservice
      annotations:
        sower/follower-hostnames: "*.followers.svc.cluster.local, leader-1.example"
    - !group consumers
    - !permit
      role: !group consumers
      privilege: execute
      resource: !webservice
  - !policy
    id: cluster/prod
    body:
    - !layer
    - !host standby-1
    - !host leader-1
    - !grant
      role: !layer
      members: [!host standby-1, !host leader-1]
- !host follower
- !host
  id: narrow
  annotations:
    sower/follower-hostnames: "east-*.followers.svc.cluster.local"
- !host stranger
- !grant
  role: !group conjur/seed-generation/consumers
  members:
  - !host follower
  - !host narrow
`

type fixture struct {
	issuer *seed.Issuer
	store  *memStore
	ca     *pki.CA
}

func newFixture(t testing.TB, allowPlain bool) fixture {
	t.Helper()
	ctx := context.Background()
	kr, err := pki.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.Bootstrap(ctx, pki.Config{Store: pkitest.NewMemStore(), Sealer: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close() })
	g := policy.NewGraph()
	cs, err := g.PlanAccount("acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	cs, err = g.Plan(policy.LoadRequest{Policy: policy.NewID("acme", "policy", "root"), Mode: policy.Append, Filename: "test.yml", Text: []byte(testPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	signer, err := ca.Issue(ctx, pki.ProfileLeaderServer, pki.Request{CommonName: "leader-1", DNSNames: []string{"leader-1.example"}})
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	iss, err := seed.New(seed.Config{
		Account: "acme", Cluster: "prod", Policy: seed.GraphPolicy{Graph: func() *policy.Graph { return g }}, CA: ca, Store: st,
		Signer:     func() (archive.Signer, error) { return archive.Signer{Key: signer.Key, Chain: signer.Chain}, nil },
		DataKey:    kr.Marshal,
		Endpoints:  func() archive.Endpoints { return archive.Endpoints{Leader: []string{"https://leader-1.example:8443"}} },
		Reserved:   func() []string { return []string{"leader-1.example"} },
		AllowPlain: allowPlain,
	})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{issuer: iss, store: st, ca: ca}
}

func TestFollowerSeedRoundTrip(t *testing.T) {
	f := newFixture(t, false)
	id, _ := age.GenerateX25519Identity()
	names := []string{"follower-0.followers.svc.cluster.local", "conjur.followers.svc.cluster.local"}
	iss, err := f.issuer.IssueFollower(context.Background(), seed.Request{Requester: "acme:host:follower", Recipient: id.Recipient().String(), Hostnames: names})
	if err != nil {
		t.Fatalf("IssueFollower: %v", err)
	}
	if bytes.Contains(iss.Archive, []byte("BEGIN")) {
		t.Fatal("a sealed seed carries PEM in the clear")
	}
	dir := filepath.Join(t.TempDir(), "seed")
	m, err := archive.Unpack(bytes.NewReader(iss.Archive), dir, f.ca.Pin(), id)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	if m.Kind != archive.KindFollower || m.Account != "acme" || !slices.Equal(m.Hostnames, names) {
		t.Fatalf("manifest %+v", m.Metadata)
	}
	certPEM, _ := os.ReadFile(filepath.Join(dir, "tls", "follower.pem"))
	certs, err := pki.ParseCertificatesPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(certs[0].DNSNames, names) || len(certs[0].IPAddresses) != 0 {
		t.Fatalf("Follower certificate names %v %v, want exactly %v", certs[0].DNSNames, certs[0].IPAddresses, names)
	}
	pool := x509.NewCertPool()
	for _, c := range f.ca.Roots() {
		pool.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: names[0]}); err != nil {
		t.Fatalf("certificate does not chain to the CA: %v", err)
	}
	for _, f := range []string{"tls/follower-key.pem", "tls/replication-key.pem", "data.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want 0600", f, st, err)
		}
	}
	if recs, _ := f.issuer.List(context.Background()); len(recs) != 1 || recs[0].Requester != "acme:host:follower" || len(recs[0].Serials) != 2 {
		t.Fatalf("records %+v", recs)
	}
}

func TestFollowerSeedRefusals(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	tests := map[string]struct {
		requester string
		names     []string
		recipient string
		want      error
		says      string
	}{
		"no execute":          {"acme:host:stranger", []string{"a.followers.svc.cluster.local"}, id.Recipient().String(), seed.ErrForbidden, "execute on acme:webservice:conjur/seed-generation"},
		"outside the pattern": {"acme:host:follower", []string{"evil.example.com"}, id.Recipient().String(), seed.ErrHostname, "sower/follower-hostnames on acme:webservice:conjur/seed-generation"},
		"too deep":            {"acme:host:follower", []string{"a.b.followers.svc.cluster.local"}, id.Recipient().String(), seed.ErrHostname, "matches none"},
		"leader's name":       {"acme:host:follower", []string{"leader-1.example"}, id.Recipient().String(), seed.ErrHostname, "Leader or Standby"},
		"caller narrows":      {"acme:host:narrow", []string{"west-1.followers.svc.cluster.local"}, id.Recipient().String(), seed.ErrHostname, "on acme:host:narrow"},
		"an IP":               {"acme:host:follower", []string{"10.0.0.1"}, id.Recipient().String(), seed.ErrHostname, "not a DNS name"},
		"no names":            {"acme:host:follower", nil, id.Recipient().String(), seed.ErrInvalidRequest, "at least one host name"},
		"plain refused":       {"acme:host:follower", []string{"a.followers.svc.cluster.local"}, "", seed.ErrPlainDisabled, "age X25519 recipient"},
		"bad recipient":       {"acme:host:follower", []string{"a.followers.svc.cluster.local"}, "age1nope", seed.ErrInvalidRequest, "recipient"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, false)
			_, err := f.issuer.IssueFollower(context.Background(), seed.Request{Requester: tc.requester, Recipient: tc.recipient, Hostnames: tc.names})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.want, tc.says)
			}
			if recs, _ := f.issuer.List(context.Background()); len(recs) != 0 {
				t.Fatalf("a refused request recorded a seed: %+v", recs)
			}
		})
	}
	// The narrower caller still gets names inside its own patterns.
	f := newFixture(t, false)
	if _, err := f.issuer.IssueFollower(context.Background(), seed.Request{Requester: "acme:host:narrow", Recipient: id.Recipient().String(), Hostnames: []string{"east-1.followers.svc.cluster.local"}}); err != nil {
		t.Fatalf("names inside both constraints: %v", err)
	}
	// Refusals of the execute rule are audited.
	f2 := newFixture(t, false)
	f2.issuer.IssueFollower(context.Background(), seed.Request{Requester: "acme:host:stranger", Recipient: id.Recipient().String(), Hostnames: []string{"a.followers.svc.cluster.local"}})
	if len(f2.store.events) != 1 || f2.store.events[0].Requester != "acme:host:stranger" {
		t.Fatalf("audit events %+v", f2.store.events)
	}
}

func TestPlainSeedOnlyWhenAllowed(t *testing.T) {
	f := newFixture(t, true)
	iss, err := f.issuer.IssueFollower(context.Background(), seed.Request{Requester: "acme:host:follower", Hostnames: []string{"a.followers.svc.cluster.local"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.UnpackPlain(bytes.NewReader(iss.Archive), filepath.Join(t.TempDir(), "s"), f.ca.Pin()); err != nil {
		t.Fatalf("UnpackPlain: %v", err)
	}
}

func TestStandbySeed(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	f := newFixture(t, false)
	ctx := context.Background()
	// The admin owns everything, so holds execute.
	if _, err := f.issuer.IssueStandby(ctx, seed.Request{Requester: "acme:user:admin", Recipient: id.Recipient().String(), Host: "conjur/cluster/prod/leader-2"}); !errors.Is(err, seed.ErrNotClusterMember) {
		t.Fatalf("host outside the layer: %v", err)
	}
	if _, err := f.issuer.IssueStandby(ctx, seed.Request{Requester: "acme:user:admin", Recipient: id.Recipient().String(), Host: "standby-1"}); !errors.Is(err, seed.ErrInvalidRequest) {
		t.Fatalf("host outside conjur/cluster: %v", err)
	}
	if _, err := f.issuer.IssueStandby(ctx, seed.Request{Requester: "acme:host:follower", Recipient: id.Recipient().String(), Host: "conjur/cluster/prod/standby-1"}); !errors.Is(err, seed.ErrForbidden) || !strings.Contains(err.Error(), "update on acme:policy:conjur/cluster/prod") {
		t.Fatalf("a Follower with execute asked for a Standby seed: %v", err)
	}
	iss, err := f.issuer.IssueStandby(ctx, seed.Request{Requester: "acme:user:admin", Recipient: id.Recipient().String(), Host: "conjur/cluster/prod/standby-1"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := archive.Open(bytes.NewReader(iss.Archive), f.ca.Pin(), id)
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := s.ReadFile("enrollment-token")
	if !ok || strings.TrimSpace(string(tok)) != iss.EnrollmentToken {
		t.Fatal("the seed lacks its enrollment token")
	}
	e, ok := f.store.enroll[seed.TokenHash(iss.EnrollmentToken)]
	if !ok || e.Host != "acme:host:conjur/cluster/prod/standby-1" || e.NodeName != "standby-1" || e.SeedID != iss.Record.ID {
		t.Fatalf("enrollment record %+v", e)
	}
	for _, p := range []string{"tls/node.pem", "tls/node-key.pem", "tls/etcd-peer.pem", "tls/etcd-peer-key.pem", "tls/ca.pem", "data.key"} {
		if _, ok := s.ReadFile(p); !ok {
			t.Errorf("Standby seed lacks %s", p)
		}
	}
	if _, err := f.issuer.Revoke(ctx, iss.Record.ID, "acme:user:admin"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.store.enroll[seed.TokenHash(iss.EnrollmentToken)]; ok {
		t.Fatal("revoking the seed left its enrollment token usable")
	}
}

// BenchmarkIssueFollowerSealed is the in-process cost of one sealed Follower
// seed: the permission and host-name checks, two certificates (key
// generation and signing), the signed manifest and the age sealing, and the
// record (an in-memory store here; etcd's write is in the storm benchmark).
//
//	go test -run '^$' -bench IssueFollowerSealed -benchmem ./seed
func BenchmarkIssueFollowerSealed(b *testing.B) {
	f := newFixture(b, false)
	id, _ := age.GenerateX25519Identity()
	req := seed.Request{Requester: "acme:host:follower", Recipient: id.Recipient().String(), Hostnames: []string{"f-0.followers.svc.cluster.local"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.issuer.IssueFollower(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStandbySeedNameRefusals: names a Standby's certificates must not
// carry are refused as invalid requests (422 on the Conjur path), each
// with what to ask for instead.
func TestStandbySeedNameRefusals(t *testing.T) {
	t.Parallel()
	id, _ := age.GenerateX25519Identity()
	f := newFixture(t, false)
	tests := map[string]struct {
		host string
		dns  []string
		ips  []net.IP
		want string
	}{
		"wildcard DNS name": {"conjur/cluster/prod/standby-1", []string{"*.example.com"}, nil, `DNS name "*.example.com" is a wildcard`},
		"unspecified IPv4":  {"conjur/cluster/prod/standby-1", nil, []net.IP{net.IPv4zero}, "IP address 0.0.0.0 names no single host"},
		"unspecified IPv6":  {"conjur/cluster/prod/standby-1", nil, []net.IP{net.IPv6unspecified}, "IP address :: names no single host"},
		"the Leader's name": {"conjur/cluster/prod/leader-1", nil, nil, `"leader-1" is the node name of this Leader`},
		"not a DNS name":    {"conjur/cluster/prod/standby-1", []string{"bad name"}, nil, `"bad name" is not a DNS name`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := f.issuer.IssueStandby(context.Background(), seed.Request{Requester: "acme:user:admin", Recipient: id.Recipient().String(), Host: tc.host, DNSNames: tc.dns, IPs: tc.ips})
			if !errors.Is(err, seed.ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("IssueStandby = %v, want ErrInvalidRequest saying %q", err, tc.want)
			}
		})
	}
}
