package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ProfileName names a certificate profile. The name is written into every
// certificate issued under it (Subject OU), so a verifier can tell which
// profile a verified peer holds: see ProfileOf.
type ProfileName string

// The profiles of a sower cluster.
const (
	ProfileLeaderServer   ProfileName = "leader-server"
	ProfileEtcdPeer       ProfileName = "etcd-peer"
	ProfileEtcdClient     ProfileName = "etcd-client"
	ProfileFollowerServer ProfileName = "follower-server"
	ProfileFollowerClient ProfileName = "follower-replication-client"
	ProfileAdminClient    ProfileName = "admin-client"
)

// SANRule says whether a kind of subject alternative name may, must or must
// not appear in a request.
type SANRule uint8

const (
	SANForbidden SANRule = iota
	SANAllowed
	SANRequired
)

func (r SANRule) String() string {
	switch r {
	case SANForbidden:
		return "forbidden"
	case SANAllowed:
		return "allowed"
	case SANRequired:
		return "required"
	}
	return fmt.Sprintf("SANRule(%d)", r)
}

// Profile fixes what a certificate of one kind may be. The profiles are data
// (DefaultProfiles, replaced per deployment with WithProfiles), and one
// function, CA.Issue, applies any of them.
type Profile struct {
	Name        ProfileName
	Description string
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	// Lifetime is both the default and the longest a request may ask for.
	Lifetime    time.Duration
	DNSNames    SANRule
	IPAddresses SANRule
	// RequireSAN asks for at least one DNS name or IP address, whichever
	// the rules above allow: a server certificate without a SAN cannot be
	// verified by name.
	RequireSAN bool
}

const day = 24 * time.Hour

// Default lifetimes: days, not years. A node renews at two thirds of the
// lifetime, so a Follower that cannot reach the Leader for a day still has a
// valid certificate.
var defaultProfiles = []Profile{
	{
		Name:        ProfileLeaderServer,
		Description: "Leader/Standby API server (gRPC, REST); also the node's client identity toward other cluster nodes and its own gateway",
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		Lifetime:    7 * day,
		DNSNames:    SANAllowed,
		IPAddresses: SANAllowed,
		RequireSAN:  true,
	},
	{
		Name:        ProfileEtcdPeer,
		Description: "etcd peer traffic between Leader and Standbys (both ends of a peer link)",
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		Lifetime:    7 * day,
		DNSNames:    SANAllowed,
		IPAddresses: SANAllowed,
		RequireSAN:  true,
	},
	{
		Name:        ProfileEtcdClient,
		Description: "etcd client (a sower node talking to the etcd quorum)",
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		Lifetime:    7 * day,
	},
	{
		Name:        ProfileFollowerServer,
		Description: "Follower API server, usually behind a Kubernetes Service name",
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		Lifetime:    3 * day,
		DNSNames:    SANRequired,
		IPAddresses: SANForbidden,
		RequireSAN:  true,
	},
	{
		Name:        ProfileFollowerClient,
		Description: "Follower replication client (a Follower pulling from the Leader)",
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		Lifetime:    3 * day,
	},
	{
		Name:        ProfileAdminClient,
		Description: "administrator client (the sower CLI acting for an operator)",
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		Lifetime:    1 * day,
	},
}

// DefaultProfiles returns a copy of the default profile table. Change a copy
// and pass it to WithProfiles to adjust a deployment (for example to allow IP
// SANs on Follower servers).
func DefaultProfiles() []Profile {
	out := make([]Profile, len(defaultProfiles))
	for i, p := range defaultProfiles {
		p.ExtKeyUsage = slices.Clone(p.ExtKeyUsage)
		out[i] = p
	}
	return out
}

func (p Profile) validate() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("pki: a profile needs a name")
	case p.Lifetime <= 0:
		return fmt.Errorf("pki: profile %q needs a positive lifetime", p.Name)
	case len(p.ExtKeyUsage) == 0:
		return fmt.Errorf("pki: profile %q needs at least one extended key usage", p.Name)
	case p.DNSNames > SANRequired || p.IPAddresses > SANRequired:
		return fmt.Errorf("pki: profile %q has an unknown SAN rule", p.Name)
	case p.RequireSAN && p.DNSNames == SANForbidden && p.IPAddresses == SANForbidden:
		return fmt.Errorf("pki: profile %q requires a SAN but forbids both DNS names and IPs", p.Name)
	}
	return nil
}

func (p Profile) hasUsage(u x509.ExtKeyUsage) bool { return slices.Contains(p.ExtKeyUsage, u) }

// Rules a request can break; ProfileError.Rule holds one of them.
const (
	RuleCommonNameRequired = "common-name-required"
	RuleCommonNameInvalid  = "common-name-invalid"
	RuleDNSRequired        = "dns-required"
	RuleDNSForbidden       = "dns-forbidden"
	RuleDNSInvalid         = "dns-invalid"
	RuleIPRequired         = "ip-required"
	RuleIPForbidden        = "ip-forbidden"
	RuleIPInvalid          = "ip-invalid"
	RuleSANRequired        = "san-required"
	RuleEmailForbidden     = "email-forbidden"
	RuleURIForbidden       = "uri-forbidden"
	RuleLifetime           = "lifetime-too-long"
	RuleKey                = "key-unsupported"
	RuleCSRNames           = "csr-names-differ"
)

// ProfileError says which rule of which profile a request broke. It matches
// ErrProfileViolation with errors.Is.
type ProfileError struct {
	Profile ProfileName
	Rule    string
	Detail  string
}

func (e *ProfileError) Error() string {
	return fmt.Sprintf("pki: profile %q refuses the request (rule %s): %s", e.Profile, e.Rule, e.Detail)
}

// Is makes errors.Is(err, ErrProfileViolation) true.
func (e *ProfileError) Is(target error) bool { return target == ErrProfileViolation }

// names is what a certificate will say about its subject, after the request
// and its CSR have been reconciled.
type names struct {
	commonName string
	dns        []string
	ips        []net.IP
	emails     []string
	uris       []*url.URL
}

// Check reports whether req fits the profile, with a *ProfileError saying
// which rule it breaks if not. CA.Issue calls it; callers may call it early
// to refuse a request before doing any work.
func (p Profile) Check(req Request) error {
	_, err := p.checkRequest(req)
	return err
}

// checkRequest reconciles the request with its CSR and checks the result,
// and the CSR's key, against the profile.
func (p Profile) checkRequest(req Request) (names, error) {
	n, err := req.names(p.Name)
	if err != nil {
		return names{}, err
	}
	if n, err = p.check(n, req.Lifetime); err != nil {
		return names{}, err
	}
	if req.CSR != nil {
		if err := checkPublicKey(req.CSR.PublicKey); err != nil {
			return names{}, &ProfileError{Profile: p.Name, Rule: RuleKey, Detail: err.Error()}
		}
	}
	return n, nil
}

// check validates n against the profile and returns it normalized (DNS names
// lower-cased, duplicates removed).
func (p Profile) check(n names, lifetime time.Duration) (names, error) {
	refuse := func(rule, format string, args ...any) (names, error) {
		return names{}, &ProfileError{Profile: p.Name, Rule: rule, Detail: fmt.Sprintf(format, args...)}
	}
	if n.commonName == "" {
		return refuse(RuleCommonNameRequired, "a common name is required (the node or user name)")
	}
	if err := checkCommonName(n.commonName); err != "" {
		return refuse(RuleCommonNameInvalid, "common name %q: %s", n.commonName, err)
	}
	if len(n.emails) > 0 {
		return refuse(RuleEmailForbidden, "email SANs are not allowed in sower certificates")
	}
	if len(n.uris) > 0 {
		return refuse(RuleURIForbidden, "URI SANs are not allowed in sower certificates")
	}

	var dns []string
	for _, d := range n.dns {
		norm, why := normalizeDNSName(d)
		if why != "" {
			return refuse(RuleDNSInvalid, "DNS name %q: %s", d, why)
		}
		if !slices.Contains(dns, norm) {
			dns = append(dns, norm)
		}
	}
	var ips []net.IP
	for _, ip := range n.ips {
		if ip == nil || ip.To16() == nil {
			return refuse(RuleIPInvalid, "an IP address SAN is empty or malformed")
		}
		if ip.IsUnspecified() {
			return refuse(RuleIPInvalid, "IP address %s is unspecified; give the address clients dial", ip)
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}

	switch {
	case p.DNSNames == SANForbidden && len(dns) > 0:
		return refuse(RuleDNSForbidden, "DNS name SANs are not allowed (this profile carries the common name only)")
	case p.DNSNames == SANRequired && len(dns) == 0:
		return refuse(RuleDNSRequired, "at least one DNS name is required (the name clients dial)")
	case p.IPAddresses == SANForbidden && len(ips) > 0:
		if p.DNSNames != SANForbidden {
			return refuse(RuleIPForbidden, "IP address SANs are not allowed; use DNS names, or allow IPs for this profile in the deployment's profile table")
		}
		return refuse(RuleIPForbidden, "IP address SANs are not allowed (this profile carries the common name only)")
	case p.IPAddresses == SANRequired && len(ips) == 0:
		return refuse(RuleIPRequired, "at least one IP address is required")
	case p.RequireSAN && len(dns) == 0 && len(ips) == 0:
		return refuse(RuleSANRequired, "at least one DNS name or IP address is required (the names clients dial)")
	case lifetime < 0:
		return refuse(RuleLifetime, "lifetime %s is negative", lifetime)
	case lifetime > p.Lifetime:
		return refuse(RuleLifetime, "lifetime %s exceeds the profile's maximum of %s", lifetime, p.Lifetime)
	}
	return names{commonName: n.commonName, dns: dns, ips: ips}, nil
}

func checkCommonName(cn string) string {
	switch {
	case len(cn) > 64:
		return "longer than 64 bytes"
	case !utf8.ValidString(cn):
		return "not valid UTF-8"
	case strings.TrimSpace(cn) != cn:
		return "leading or trailing space"
	case strings.ContainsFunc(cn, func(r rune) bool { return unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' }):
		return "contains control or non-printable characters"
	}
	return ""
}

// normalizeDNSName lower-cases a host name and checks it is a plain,
// non-wildcard RFC 1123 name.
func normalizeDNSName(d string) (string, string) {
	d = strings.ToLower(d)
	switch {
	case d == "":
		return "", "empty"
	case len(d) > 253:
		return "", "longer than 253 bytes"
	case strings.HasPrefix(d, "*"):
		return "", "wildcards are not allowed"
	case net.ParseIP(d) != nil:
		return "", "is an IP address; request it as an IP SAN"
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			return "", "each dot-separated label must have 1 to 63 characters"
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", "a label cannot start or end with '-'"
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "", fmt.Sprintf("character %q is not allowed (letters, digits, '-' and '.' only)", c)
			}
		}
	}
	return d, ""
}

// ProfileOf returns the profile a certificate was issued under, read from
// its Subject OU. Only trust the answer for a certificate whose chain has
// been verified to the cluster CA.
func ProfileOf(cert *x509.Certificate) (ProfileName, bool) {
	for _, ou := range cert.Subject.OrganizationalUnit {
		if p, ok := strings.CutPrefix(ou, profileOUPrefix); ok && p != "" {
			return ProfileName(p), true
		}
	}
	return "", false
}

const profileOUPrefix = "sower-profile:"
