package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/pki"
)

// Config is a node's configuration, already parsed from flags, environment
// and config file by cmd/sower.
type Config struct {
	// Name is the node's name and its etcd member name.
	Name string
	// Account is the Conjur account the cluster serves (for example "myorg").
	Account string
	// DataDir holds etcd's data, the data key and the admin credential.
	DataDir string
	// GRPCAddr, HTTPAddr, EtcdClientAddr and EtcdPeerAddr are host:port.
	GRPCAddr       string
	HTTPAddr       string
	EtcdClientAddr string
	EtcdPeerAddr   string
	// Version is the build version reported by the status API.
	Version string
	// AllowPlainSeeds lets callers receive unsealed seeds (Conjur's own
	// seed fetcher expects a plain tar). Off by default.
	AllowPlainSeeds bool
	// SeedTTL is how long an issued seed stays valid; zero means 1h.
	SeedTTL time.Duration
	// Cluster is the name of the auto-failover cluster, whose policy is
	// conjur/cluster/<Cluster>. A new cluster records it at bootstrap
	// ("default" when empty); a joining node takes it from its seed; a
	// restarting node reads it from etcd, and a non-empty value must match.
	Cluster string
	// FailoverTTL is the Leader's lease when the cluster policy has no ttl
	// annotation: how long the cluster waits for a silent Leader before a
	// Standby takes over. Zero means cluster.DefaultFailoverTTL.
	FailoverTTL time.Duration
	// Join, when set, makes a node whose data dir has no etcd data join an
	// existing cluster from a Standby seed instead of bootstrapping one.
	Join *Join
	// TrustedProxies are the load balancers and proxies in front of the
	// node whose X-Forwarded-For is believed (see authn.ClientAddr). Empty
	// (the default) believes no header: the client is the connection's
	// remote address.
	TrustedProxies authn.Networks
	// AuthnLimits are the failed-login limits (authn.LimiterConfig); the
	// zero value takes the defaults.
	AuthnLimits authn.LimiterConfig
	// AuditMaxAge and AuditMaxEvents are the audit trail's retention
	// (docs/audit.md): the Leader prunes events older than AuditMaxAge
	// and the oldest beyond AuditMaxEvents; zero takes the defaults (30
	// days, 1,000,000 events).
	AuditMaxAge    time.Duration
	AuditMaxEvents int64
	// AuditExport, when set, is where the Leader writes every event of the
	// trail as JSON lines (slog's JSON handler format): a file path
	// (appended to, created 0600), or "-" for standard output.
	AuditExport string
	// PolicyLoadTimeout is the longest one policy load may hold the node's
	// policy lock; zero means the policy service's default (5m).
	PolicyLoadTimeout time.Duration
	// MinFreeDisk is the free space, in bytes, the data dir's file system
	// keeps: below it writes are refused (507) and the node raises etcd's
	// NOSPACE alarm, until space is back (cluster.Disk). Zero picks
	// cluster.AutoMinFreeDisk of the file system's size; a set value must be
	// at least cluster.EtcdDiskHeadroom.
	MinFreeDisk uint64
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// once shutdown starts. Zero means 5s.
	ShutdownTimeout time.Duration
	// ReplicationRing is how many replicated revisions the node keeps to
	// resume Followers from; zero means 8192. A Follower further behind
	// gets a snapshot.
	ReplicationRing int
	// Logger is the structured logger. Nil discards.
	Logger *slog.Logger
}

// ErrInvalidConfig is wrapped by every configuration error; the CLI turns it
// into exit status 2.
var ErrInvalidConfig = errors.New("server: invalid configuration")

// accountRE is Conjur's account charset: an account appears in every
// resource id ("account:kind:id"), so it may not contain ':' or '/'.
var accountRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// nameRE keeps node names safe as etcd member names, DNS labels and file
// names.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// Validate checks every field and names the key at fault.
func (c Config) Validate() error {
	if !accountRE.MatchString(c.Account) {
		return fmt.Errorf("%w: account %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalidConfig, c.Account)
	}
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("%w: name %q: use a DNS label (lower-case letters, digits, '-' and '.', 1-63 characters)", ErrInvalidConfig, c.Name)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: data-dir is empty: name a directory sower may create and own, for example ./.sower", ErrInvalidConfig)
	}
	addrs := []struct{ key, val string }{
		{"grpc-addr", c.GRPCAddr}, {"http-addr", c.HTTPAddr},
		{"etcd-client-addr", c.EtcdClientAddr}, {"etcd-peer-addr", c.EtcdPeerAddr},
	}
	seen := map[string]string{}
	for _, a := range addrs {
		if err := checkAddr(a.val); err != nil {
			return fmt.Errorf("%w: %s %q: %v", ErrInvalidConfig, a.key, a.val, err)
		}
		if prev, dup := seen[a.val]; dup && !hasZeroPort(a.val) {
			return fmt.Errorf("%w: %s and %s are both %q: give each listener its own port", ErrInvalidConfig, prev, a.key, a.val)
		}
		seen[a.val] = a.key
	}
	if c.Cluster != "" && !accountRE.MatchString(c.Cluster) {
		return fmt.Errorf("%w: cluster %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalidConfig, c.Cluster)
	}
	if c.FailoverTTL < 0 {
		return fmt.Errorf("%w: failover-ttl %s: must not be negative", ErrInvalidConfig, c.FailoverTTL)
	}
	if j := c.Join; j != nil && (len(j.Seed) == 0 || j.Identity == nil || j.Pin == (pki.Pin{})) {
		return fmt.Errorf("%w: joining from a seed needs the seed, the age identity it is sealed to, and the cluster's CA pin", ErrInvalidConfig)
	}
	if c.PolicyLoadTimeout < 0 {
		return fmt.Errorf("%w: policy-load-timeout %s: must not be negative", ErrInvalidConfig, c.PolicyLoadTimeout)
	}
	if err := checkMinFreeDisk(c.MinFreeDisk); err != nil {
		return err
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("%w: shutdown-timeout %s: must not be negative", ErrInvalidConfig, c.ShutdownTimeout)
	}
	return nil
}

// checkMinFreeDisk refuses a free-space floor below what etcd may still
// write once writes are refused.
func checkMinFreeDisk(v uint64) error {
	if v != 0 && v < cluster.EtcdDiskHeadroom() {
		return fmt.Errorf("%w: min-free-disk %d bytes: etcd may still write up to %d bytes (a WAL segment and room for its database) after writes are refused, and exits if it cannot; set at least that, or leave it unset for the default", ErrInvalidConfig, v, cluster.EtcdDiskHeadroom())
	}
	return nil
}

func checkAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("must be host:port, for example 127.0.0.1:7443")
	}
	if host == "" {
		return errors.New("name the host or IP to listen on, for example 127.0.0.1 or 0.0.0.0")
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return errors.New("port must be a number from 0 to 65535")
	}
	return nil
}

func hasZeroPort(s string) bool {
	_, port, _ := net.SplitHostPort(s)
	return port == "0"
}
