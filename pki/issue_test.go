package pki_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/keyutil"

	"github.com/sowerproject/sower/pki"
)

func ipList(ss ...string) []net.IP {
	var out []net.IP
	for _, s := range ss {
		out = append(out, net.ParseIP(s))
	}
	return out
}

// TestProfilesIssue issues one certificate per default profile and checks
// that it carries exactly what the profile fixes.
func TestProfilesIssue(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := map[pki.ProfileName]struct {
		req      pki.Request
		eku      []x509.ExtKeyUsage
		lifetime time.Duration
	}{
		pki.ProfileLeaderServer:   {pki.Request{CommonName: "leader-0", DNSNames: []string{"Leader.Example"}, IPAddresses: ipList("10.0.0.1")}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, 7 * 24 * time.Hour},
		pki.ProfileEtcdPeer:       {pki.Request{CommonName: "leader-0", IPAddresses: ipList("10.0.0.1", "fd00::1")}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, 7 * 24 * time.Hour},
		pki.ProfileEtcdClient:     {pki.Request{CommonName: "leader-0"}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, 7 * 24 * time.Hour},
		pki.ProfileFollowerServer: {pki.Request{CommonName: "follower-0", DNSNames: []string{"conjur-follower.conjur.svc.cluster.local"}}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, 3 * 24 * time.Hour},
		pki.ProfileFollowerClient: {pki.Request{CommonName: "follower-0"}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, 3 * 24 * time.Hour},
		pki.ProfileAdminClient:    {pki.Request{CommonName: "alice"}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, 24 * time.Hour},
	}
	if len(tests) != len(pki.DefaultProfiles()) {
		t.Fatalf("test covers %d profiles, table has %d", len(tests), len(pki.DefaultProfiles()))
	}
	for name, tc := range tests {
		t.Run(string(name), func(t *testing.T) {
			t.Parallel()
			crt := f.issue(t, name, tc.req)
			leaf := crt.Leaf()
			if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(leaf.ExtKeyUsage, tc.eku) {
				t.Fatalf("usages: CA %v, KU %v, EKU %v", leaf.IsCA, leaf.KeyUsage, leaf.ExtKeyUsage)
			}
			if got := leaf.NotAfter.Sub(f.clock.Now()); got != tc.lifetime {
				t.Fatalf("lifetime %s, want %s", got, tc.lifetime)
			}
			if leaf.NotBefore.After(f.clock.Now()) {
				t.Fatal("not valid at issuance")
			}
			if p, ok := pki.ProfileOf(leaf); !ok || p != name {
				t.Fatalf("ProfileOf = %q, %v", p, ok)
			}
			if leaf.Subject.CommonName != tc.req.CommonName || len(leaf.DNSNames) != len(tc.req.DNSNames) || len(leaf.IPAddresses) != len(tc.req.IPAddresses) {
				t.Fatalf("names: %v %v %v", leaf.Subject, leaf.DNSNames, leaf.IPAddresses)
			}
			for _, d := range leaf.DNSNames {
				if d != strings.ToLower(d) {
					t.Fatalf("DNS name %q not normalized", d)
				}
			}
			if crt.Key == nil || !keyutil.Equal(crt.Key.Public(), leaf.PublicKey) {
				t.Fatal("generated key missing or not the leaf's")
			}
			if len(crt.Chain) != 3 || !crt.Chain[2].Equal(f.ca.Roots()[0]) {
				t.Fatal("chain must run to the root, which pinning clients need to see")
			}
			usage := tc.eku[0]
			verifyChain(t, crt, f.ca.Roots(), f.clock.Now(), usage)

			// Round trip through PEM, as a seed carries it.
			keyPEM, err := crt.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			back, err := pki.ParseIssued(crt.CertPEM(), keyPEM)
			if err != nil || !back.Leaf().Equal(leaf) || len(back.Chain) != 3 {
				t.Fatalf("ParseIssued: %v", err)
			}
		})
	}
}

func TestProfileRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	emailCSR := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}, EmailAddresses: []string{"alice@example.com"}})
	uriCSR := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}, URIs: []*url.URL{{Scheme: "spiffe", Host: "x", Path: "/y"}}})
	otherNameCSR := csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "mallory"}})
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}}, weak)
	weakCSR, _ := x509.ParseCertificateRequest(weakDER)

	tests := map[string]struct {
		profile pki.ProfileName
		req     pki.Request
		rule    string
		says    string
	}{
		"follower server with IP":       {pki.ProfileFollowerServer, pki.Request{CommonName: "f", DNSNames: []string{"f.example"}, IPAddresses: ipList("10.0.0.5")}, pki.RuleIPForbidden, "IP address SANs are not allowed"},
		"follower server without DNS":   {pki.ProfileFollowerServer, pki.Request{CommonName: "f"}, pki.RuleDNSRequired, "DNS name is required"},
		"etcd client with DNS":          {pki.ProfileEtcdClient, pki.Request{CommonName: "c", DNSNames: []string{"c.example"}}, pki.RuleDNSForbidden, "common name only"},
		"admin with IP":                 {pki.ProfileAdminClient, pki.Request{CommonName: "alice", IPAddresses: ipList("10.0.0.1")}, pki.RuleIPForbidden, "common name only"},
		"replication client, no CN":     {pki.ProfileFollowerClient, pki.Request{}, pki.RuleCommonNameRequired, "common name is required"},
		"leader without SAN":            {pki.ProfileLeaderServer, pki.Request{CommonName: "leader-0"}, pki.RuleSANRequired, "at least one DNS name or IP"},
		"etcd peer without SAN":         {pki.ProfileEtcdPeer, pki.Request{CommonName: "m"}, pki.RuleSANRequired, ""},
		"wildcard":                      {pki.ProfileFollowerServer, pki.Request{CommonName: "f", DNSNames: []string{"*.example"}}, pki.RuleDNSInvalid, "wildcards"},
		"IP as DNS name":                {pki.ProfileFollowerServer, pki.Request{CommonName: "f", DNSNames: []string{"10.0.0.1"}}, pki.RuleDNSInvalid, "IP SAN"},
		"underscore":                    {pki.ProfileFollowerServer, pki.Request{CommonName: "f", DNSNames: []string{"a_b.example"}}, pki.RuleDNSInvalid, "'_'"},
		"empty label":                   {pki.ProfileFollowerServer, pki.Request{CommonName: "f", DNSNames: []string{"a..example"}}, pki.RuleDNSInvalid, "label"},
		"unspecified IP":                {pki.ProfileLeaderServer, pki.Request{CommonName: "l", IPAddresses: ipList("0.0.0.0")}, pki.RuleIPInvalid, "unspecified"},
		"control character in CN":       {pki.ProfileAdminClient, pki.Request{CommonName: "al\nice"}, pki.RuleCommonNameInvalid, "control"},
		"CN too long":                   {pki.ProfileAdminClient, pki.Request{CommonName: strings.Repeat("a", 65)}, pki.RuleCommonNameInvalid, "64"},
		"lifetime over the maximum":     {pki.ProfileAdminClient, pki.Request{CommonName: "alice", Lifetime: 48 * time.Hour}, pki.RuleLifetime, "exceeds the profile's maximum of 24h"},
		"negative lifetime":             {pki.ProfileAdminClient, pki.Request{CommonName: "alice", Lifetime: -time.Hour}, pki.RuleLifetime, "negative"},
		"CSR with email SAN":            {pki.ProfileAdminClient, pki.RequestFromCSR(emailCSR), pki.RuleEmailForbidden, "email"},
		"CSR with URI SAN":              {pki.ProfileAdminClient, pki.RequestFromCSR(uriCSR), pki.RuleURIForbidden, "URI"},
		"CSR names differ from request": {pki.ProfileAdminClient, pki.Request{CommonName: "alice", CSR: otherNameCSR}, pki.RuleCSRNames, "different subject"},
		"CSR with a weak key":           {pki.ProfileAdminClient, pki.RequestFromCSR(weakCSR), pki.RuleKey, "1024 bits"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := f.ca.Issue(context.Background(), tc.profile, tc.req)
			wantErr(t, "issue", err, pki.ErrProfileViolation, tc.rule, string(tc.profile), tc.says)
			var pe *pki.ProfileError
			if !errors.As(err, &pe) || pe.Rule != tc.rule || pe.Profile != tc.profile {
				t.Fatalf("error %v is not a ProfileError for rule %s", err, tc.rule)
			}
			if p, _ := f.ca.Profile(tc.profile); p.Check(tc.req) == nil {
				t.Fatal("Profile.Check accepts what Issue refuses")
			}
		})
	}
	_, err := f.ca.Issue(context.Background(), "mystery", pki.Request{CommonName: "x"})
	wantErr(t, "unknown profile", err, pki.ErrUnknownProfile, "follower-server")
}

// TestProfilesAreData: a deployment changes a profile by changing the table.
func TestProfilesAreData(t *testing.T) {
	t.Parallel()
	ps := pki.DefaultProfiles()
	for i := range ps {
		if ps[i].Name == pki.ProfileFollowerServer {
			ps[i].IPAddresses = pki.SANAllowed
			ps[i].Lifetime = 12 * time.Hour
		}
	}
	ps = append(ps, pki.Profile{Name: "metrics-scraper", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature, Lifetime: time.Hour})
	f := newFixture(t, pki.WithProfiles(ps...))
	crt := f.issue(t, pki.ProfileFollowerServer, pki.Request{CommonName: "f", DNSNames: []string{"f.example"}, IPAddresses: ipList("10.1.2.3")})
	if len(crt.Leaf().IPAddresses) != 1 || crt.Leaf().NotAfter.Sub(f.clock.Now()) != 12*time.Hour {
		t.Fatal("the adjusted profile was not applied")
	}
	f.issue(t, "metrics-scraper", pki.Request{CommonName: "prom"})
	if got := len(f.ca.Profiles()); got != len(pki.DefaultProfiles())+1 {
		t.Fatalf("%d profiles", got)
	}
	// The default table is not changed by a caller's copy.
	for _, p := range pki.DefaultProfiles() {
		if p.Name == pki.ProfileFollowerServer && p.IPAddresses != pki.SANForbidden {
			t.Fatal("DefaultProfiles returned shared state")
		}
	}

	invalid := map[string]pki.Profile{
		"no name":     {Lifetime: time.Hour, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		"no lifetime": {Name: "x", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		"no EKU":      {Name: "x", Lifetime: time.Hour},
		"SAN nowhere": {Name: "x", Lifetime: time.Hour, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, RequireSAN: true},
	}
	for name, p := range invalid {
		t.Run(name, func(t *testing.T) {
			if _, err := pki.Bootstrap(context.Background(), pki.Config{Store: f.store, Sealer: f.keyring}, pki.WithProfiles(p)); err == nil || errors.Is(err, pki.ErrCAExists) {
				t.Fatalf("invalid profile accepted: %v", err)
			}
		})
	}
}

func csrFor(t testing.TB, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	key, err := pki.KeyECDSAP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// TestIssueFromCSR: the authority path. The key stays with the requester and
// nothing but the key crosses from the CSR into the certificate.
func TestIssueFromCSR(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	req := pki.Request{CommonName: "follower-7", DNSNames: []string{"f7.example"}}
	key, csr, err := pki.NewCSR(req, "")
	if err != nil {
		t.Fatal(err)
	}
	crt, err := f.ca.Issue(ctx, pki.ProfileFollowerServer, pki.RequestFromCSR(csr))
	if err != nil {
		t.Fatal(err)
	}
	if crt.Key != nil || !keyutil.Equal(crt.Leaf().PublicKey, key.Public()) {
		t.Fatal("a CSR certificate must carry the CSR's key and no generated key")
	}
	if crt.Leaf().Subject.CommonName != "follower-7" || crt.Leaf().DNSNames[0] != "f7.example" {
		t.Fatal("names not taken from the CSR")
	}
	verifyChain(t, crt, f.ca.Roots(), f.clock.Now(), x509.ExtKeyUsageServerAuth)
	if _, err := crt.TLSCertificate(); err == nil {
		t.Fatal("TLSCertificate without a key")
	}
	crt.Key = key
	if _, err := crt.TLSCertificate(); err != nil {
		t.Fatal(err)
	}
	// The same names in request and CSR are fine.
	req.CSR = csr
	if _, err := f.ca.Issue(ctx, pki.ProfileFollowerServer, req); err != nil {
		t.Fatal(err)
	}

	// A CSR asking to be a CA, with an extra extension: neither reaches the
	// certificate.
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	sneaky := csrFor(t, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "follower-8", Organization: []string{"Root Inc"}},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}},
	})
	crt, err = f.ca.Issue(ctx, pki.ProfileFollowerClient, pki.RequestFromCSR(sneaky))
	if err != nil {
		t.Fatal(err)
	}
	if crt.Leaf().IsCA || len(crt.Leaf().Subject.Organization) != 0 {
		t.Fatalf("CSR content leaked into the certificate: CA %v, O %v", crt.Leaf().IsCA, crt.Leaf().Subject.Organization)
	}

	// A CSR whose signature does not match its key proves nothing.
	forged := *csr
	forged.PublicKey = mustKey(t).Public()
	if _, err := f.ca.Issue(ctx, pki.ProfileFollowerServer, pki.RequestFromCSR(&forged)); err == nil {
		t.Fatal("issued for a CSR with a bad signature")
	}
}

func mustKey(t testing.TB) crypto.Signer {
	k, err := pki.KeyECDSAP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestIssueNeverOutlivesIssuer: a leaf ends no later than its intermediate,
// and an expired intermediate issues nothing.
func TestIssueNeverOutlivesIssuer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pki.WithIntermediateLifetime(48*time.Hour))
	crt := f.issue(t, pki.ProfileLeaderServer, pki.Request{CommonName: "l", DNSNames: []string{"l.example"}})
	if !crt.Leaf().NotAfter.Equal(f.ca.Chain()[0].NotAfter) {
		t.Fatalf("leaf ends %s, intermediate %s", crt.Leaf().NotAfter, f.ca.Chain()[0].NotAfter)
	}
	f.clock.Advance(49 * time.Hour)
	_, err := f.ca.Issue(context.Background(), pki.ProfileLeaderServer, pki.Request{CommonName: "l", DNSNames: []string{"l.example"}})
	wantErr(t, "issue", err, pki.ErrExpired, "rotate the intermediate")
	if err := f.ca.RotateIntermediate(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.issue(t, pki.ProfileLeaderServer, pki.Request{CommonName: "l", DNSNames: []string{"l.example"}})
}

// With a key pool, every certificate still gets a key of its own, of the
// CA's key type, and Close stops the pool's filler (goleak checks).
func TestIssueWithKeyPool(t *testing.T) {
	f := newFixture(t, pki.WithKeyPool(4), pki.WithKeyType(pki.KeyECDSAP256))
	seen := map[string]bool{}
	for i := range 12 {
		c := f.issue(t, pki.ProfileFollowerServer, pki.Request{CommonName: "f.example", DNSNames: []string{"f.example"}})
		der, err := x509.MarshalPKIXPublicKey(c.Leaf().PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(der)] {
			t.Fatalf("certificate %d reuses a key", i)
		}
		seen[string(der)] = true
		if _, ok := c.Key.(*ecdsa.PrivateKey); !ok || !keyutil.Equal(c.Key.Public(), c.Leaf().PublicKey) {
			t.Fatalf("certificate %d: key %T does not match the certificate", i, c.Key)
		}
	}
	// Another key type bypasses the pool.
	c := f.issue(t, pki.ProfileFollowerServer, pki.Request{CommonName: "f.example", DNSNames: []string{"f.example"}, KeyType: pki.KeyEd25519})
	if _, ok := c.Key.(ed25519.PrivateKey); !ok {
		t.Fatalf("KeyType ed25519 gave a %T key", c.Key)
	}
	if err := f.ca.Close(); err != nil {
		t.Fatal(err)
	}
}
