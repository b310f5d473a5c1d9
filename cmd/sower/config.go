package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/server"
	policyapi "github.com/sowerproject/sower/server/api/policy"
	"github.com/sowerproject/sower/server/etcdstore"
)

// nodeConfig is the file/env/flag view of a node's configuration. Each field
// is a flag, a key in the config file and a SOWER_ environment variable
// (SOWER_DATA_DIR for data-dir).
type nodeConfig struct {
	DataDir           string `yaml:"data-dir"`
	Account           string `yaml:"account"`
	Name              string `yaml:"name"`
	GRPCAddr          string `yaml:"grpc-addr"`
	HTTPAddr          string `yaml:"http-addr"`
	EtcdClientAddr    string `yaml:"etcd-client-addr"`
	EtcdPeerAddr      string `yaml:"etcd-peer-addr"`
	LogFormat         string `yaml:"log-format"`
	LogLevel          string `yaml:"log-level"`
	ShutdownTimeout   string `yaml:"shutdown-timeout"`
	Cluster           string `yaml:"cluster"`
	FailoverTTL       string `yaml:"failover-ttl"`
	MemoryLimit       string `yaml:"memory-limit"`
	GCPercent         string `yaml:"gc-percent"`
	TrustedProxies    string `yaml:"trusted-proxies"`
	PolicyLoadTimeout string `yaml:"policy-load-timeout"`
	MinFreeDisk       string `yaml:"min-free-disk"`
	// The audit trail's retention and export, docs/audit.md.
	AuditMaxAge    string `yaml:"audit-max-age"`
	AuditMaxEvents string `yaml:"audit-max-events"`
	AuditExport    string `yaml:"audit-export"`
	// The failed-login limits (authn.LimiterConfig), docs/authn.md.
	AuthnBurst        string `yaml:"authn-burst"`
	AuthnRefill       string `yaml:"authn-refill"`
	AuthnSourceBurst  string `yaml:"authn-source-burst"`
	AuthnSourceRefill string `yaml:"authn-source-refill"`
	AuthnGlobalBurst  string `yaml:"authn-global-burst"`
	AuthnGlobalRefill string `yaml:"authn-global-refill"`
	AuthnMaxEntries   string `yaml:"authn-max-entries"`
	// The opt-in profiling listener (pprof.go), docs/cluster.md.
	Pprof            string `yaml:"pprof"`
	PprofAllowRemote string `yaml:"pprof-allow-remote"`
}

// nodeFlags declares the node flags with defaults that work on a laptop.
func nodeFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "config file (YAML); keys are the flag names (env SOWER_CONFIG)")
	fs.String("data-dir", "./.sower", "directory for etcd data, keys and the admin credential")
	fs.String("account", "default", "Conjur account the cluster serves")
	fs.String("name", defaultName(), "node name, unique in the cluster (also the etcd member name)")
	fs.String("grpc-addr", "127.0.0.1:7443", "gRPC listen address")
	fs.String("http-addr", "127.0.0.1:8443", "REST (gateway) and health/metrics listen address")
	fs.String("etcd-client-addr", "127.0.0.1:2379", "embedded etcd client listen address")
	fs.String("etcd-peer-addr", "127.0.0.1:2380", "embedded etcd peer listen address")
	fs.String("log-format", "text", "log format: text or json")
	fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.String("shutdown-timeout", "5s", "how long in-flight requests may run after SIGTERM")
	fs.String("cluster", "", `auto-failover cluster name, policy conjur/cluster/<name> (default: the cluster's own, "default" for a new one)`)
	fs.String("memory-limit", "auto", "soft memory limit of the node: auto (85% of the container's cgroup limit, or GOMEMLIMIT), none, or a size such as 900MiB")
	fs.String("gc-percent", "auto", gcPercentUsage)
	fs.String("policy-load-timeout", policyapi.DefaultLoadTimeout.String(), "longest time one policy load may hold the node's policy lock before it is stopped (nothing stored)")
	fs.String("min-free-disk", "auto", "free space the data dir's file system keeps: below it writes are refused (507) until space is freed; auto is a tenth of the file system, at least 93MiB and at most 256MiB, or give a size such as 512MiB")
	fs.String("trusted-proxies", "", "comma-separated addresses or CIDR networks of the proxies in front of the node whose X-Forwarded-For is believed (default none: the client is the connection's address)")
	fs.String("authn-burst", strconv.Itoa(authn.DefaultLimiterBurst), "failed logins one identity may make from one address before that address is refused for it")
	fs.String("authn-refill", authn.DefaultLimiterRefill.String(), "time in which an identity at an address earns back one failed login")
	fs.String("authn-source-burst", strconv.Itoa(authn.DefaultLimiterSourceBurst), "failed logins, for any identities, one address may make before it is refused")
	fs.String("authn-source-refill", authn.DefaultLimiterSourceRefill.String(), "time in which an address earns back one failed login")
	fs.String("authn-global-burst", strconv.Itoa(authn.DefaultLimiterGlobalBurst), "node-wide failed logins absorbed before addresses that failed recently are refused")
	fs.String("authn-global-refill", authn.DefaultLimiterGlobalRefill.String(), "time in which the node earns back one failed login of its budget")
	fs.String("authn-max-entries", strconv.Itoa(authn.DefaultLimiterMaxEntries), "identities and addresses the login limiter tracks at most (memory bound)")
	fs.String("audit-max-age", etcdstore.DefaultAuditMaxAge.String(), "how long the audit trail keeps an event: the Leader prunes older ones every minute")
	fs.String("audit-max-events", strconv.Itoa(etcdstore.DefaultAuditMaxEvents), "most events the audit trail keeps: the Leader prunes the oldest beyond it every minute")
	fs.String("audit-export", "", "also write every event stored in the audit trail from now on, any node's, as JSON lines (slog's JSON format) to this file (appended, 0600) or - for standard output")
	pprofFlags(fs)
	fs.String("failover-ttl", "", "how long a silent Leader keeps its role before a Standby takes over, when the cluster policy has no ttl annotation (default 10s, at least 2s)")
}

// configKeys are the keys a config file may hold.
var configKeys = []string{"data-dir", "account", "name", "grpc-addr", "http-addr", "etcd-client-addr",
	"etcd-peer-addr", "log-format", "log-level", "shutdown-timeout", "cluster", "failover-ttl", "memory-limit", "gc-percent",
	"policy-load-timeout", "min-free-disk", "trusted-proxies", "authn-burst", "authn-refill", "authn-source-burst", "authn-source-refill",
	"authn-global-burst", "authn-global-refill", "authn-max-entries", "pprof", "pprof-allow-remote",
	"audit-max-age", "audit-max-events", "audit-export"}

// secretKeys are redacted by `sower config print`. None of today's keys is
// a secret (credentials live in files under the data dir); the list exists
// so that a key added later is redacted by naming it here.
var secretKeys = []string{}

func defaultName() string {
	h, err := os.Hostname()
	if err != nil {
		return "sower-1"
	}
	h = strings.ToLower(strings.SplitN(h, ".", 2)[0])
	var b strings.Builder
	for _, r := range h {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		}
	}
	if s := strings.Trim(b.String(), "-"); s != "" {
		return s
	}
	return "sower-1"
}

// loadNodeConfig merges flags, SOWER_ environment variables and the config
// file (in that order of precedence) and checks every value.
func loadNodeConfig(fs *pflag.FlagSet) (nodeConfig, error) {
	v := viper.New()
	v.SetEnvPrefix("SOWER")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(fs); err != nil {
		return nodeConfig{}, err
	}
	if path := v.GetString("config"); path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nodeConfig{}, &usageError{fmt.Errorf("config file %s: %w; fix the file or leave out --config", path, unwrapViper(err))}
		}
		if err := checkFileKeys(v, path); err != nil {
			return nodeConfig{}, err
		}
	}
	c := nodeConfig{
		DataDir: v.GetString("data-dir"), Account: v.GetString("account"), Name: v.GetString("name"),
		GRPCAddr: v.GetString("grpc-addr"), HTTPAddr: v.GetString("http-addr"),
		EtcdClientAddr: v.GetString("etcd-client-addr"), EtcdPeerAddr: v.GetString("etcd-peer-addr"),
		LogFormat: v.GetString("log-format"), LogLevel: v.GetString("log-level"),
		ShutdownTimeout: v.GetString("shutdown-timeout"),
		Cluster:         v.GetString("cluster"), FailoverTTL: v.GetString("failover-ttl"),
		MemoryLimit: v.GetString("memory-limit"), GCPercent: v.GetString("gc-percent"), TrustedProxies: v.GetString("trusted-proxies"),
		PolicyLoadTimeout: v.GetString("policy-load-timeout"), MinFreeDisk: v.GetString("min-free-disk"),
		AuthnBurst: v.GetString("authn-burst"), AuthnRefill: v.GetString("authn-refill"),
		AuthnSourceBurst: v.GetString("authn-source-burst"), AuthnSourceRefill: v.GetString("authn-source-refill"),
		AuthnGlobalBurst: v.GetString("authn-global-burst"), AuthnGlobalRefill: v.GetString("authn-global-refill"),
		AuthnMaxEntries: v.GetString("authn-max-entries"),
		Pprof:           v.GetString("pprof"), PprofAllowRemote: v.GetString("pprof-allow-remote"),
		AuditMaxAge: v.GetString("audit-max-age"), AuditMaxEvents: v.GetString("audit-max-events"),
		AuditExport: v.GetString("audit-export"),
	}
	if _, err := c.serverConfig(io.Discard); err != nil {
		return nodeConfig{}, err
	}
	return c, nil
}

func unwrapViper(err error) error {
	var pe viper.ConfigParseError
	if errors.As(err, &pe) {
		return errors.New(strings.TrimPrefix(pe.Error(), "While parsing config: "))
	}
	return err
}

func checkFileKeys(v *viper.Viper, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return &usageError{fmt.Errorf("config file %s: %w", path, err)}
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return &usageError{fmt.Errorf("config file %s: %w", path, err)}
	}
	for k := range m {
		if !slices.Contains(configKeys, k) {
			return &usageError{fmt.Errorf("config file %s: unknown key %q; known keys: %s", path, k, strings.Join(configKeys, ", "))}
		}
	}
	return nil
}

// serverConfig turns the file/env/flag view into the domain Config,
// checking every value and naming the key at fault.
func (c nodeConfig) serverConfig(logOut io.Writer) (server.Config, error) {
	lg, err := newLogger(logOut, c.LogFormat, c.LogLevel)
	if err != nil {
		return server.Config{}, &usageError{err}
	}
	d, err := time.ParseDuration(c.ShutdownTimeout)
	if err != nil || d <= 0 {
		return server.Config{}, &usageError{fmt.Errorf("shutdown-timeout %q: give a positive duration such as 5s or 1m", c.ShutdownTimeout)}
	}
	if _, err := parseMemoryLimit(c.MemoryLimit); err != nil {
		return server.Config{}, &usageError{err}
	}
	if _, err := parseGCPercent(c.GCPercent); err != nil {
		return server.Config{}, &usageError{err}
	}
	var ttl time.Duration
	if c.FailoverTTL != "" {
		ttl, err = time.ParseDuration(c.FailoverTTL)
		if err != nil || ttl < cluster.MinFailoverTTL {
			return server.Config{}, &usageError{fmt.Errorf("failover-ttl %q: give a duration of at least %s (etcd's lowest lease), such as 10s", c.FailoverTTL, cluster.MinFailoverTTL)}
		}
	}
	var proxies authn.Networks
	if strings.TrimSpace(c.TrustedProxies) != "" {
		if proxies, err = authn.ParseNetworks(strings.Split(c.TrustedProxies, ",")); err != nil {
			return server.Config{}, &usageError{fmt.Errorf("trusted-proxies %q: %v", c.TrustedProxies, err)}
		}
	}
	var loadTimeout time.Duration
	if c.PolicyLoadTimeout != "" {
		if loadTimeout, err = time.ParseDuration(c.PolicyLoadTimeout); err != nil || loadTimeout <= 0 {
			return server.Config{}, &usageError{fmt.Errorf("policy-load-timeout %q: give a positive duration such as 5m", c.PolicyLoadTimeout)}
		}
	}
	limits, err := c.authnLimits()
	if err != nil {
		return server.Config{}, &usageError{err}
	}
	minFree, err := parseMinFreeDisk(c.MinFreeDisk)
	if err != nil {
		return server.Config{}, &usageError{err}
	}
	if _, err := c.pprofRemote(); err != nil {
		return server.Config{}, &usageError{err}
	}
	auditAge, auditEvents, err := c.auditRetention()
	if err != nil {
		return server.Config{}, &usageError{err}
	}
	sc := server.Config{
		TrustedProxies: proxies, AuthnLimits: limits, PolicyLoadTimeout: loadTimeout, MinFreeDisk: minFree,
		Name: c.Name, Account: c.Account, DataDir: c.DataDir,
		GRPCAddr: c.GRPCAddr, HTTPAddr: c.HTTPAddr,
		EtcdClientAddr: c.EtcdClientAddr, EtcdPeerAddr: c.EtcdPeerAddr,
		Version: version, ShutdownTimeout: d, Logger: lg,
		Cluster: c.Cluster, FailoverTTL: ttl,
		ReplicationRing: replicationRing(),
		AuditMaxAge:     auditAge, AuditMaxEvents: auditEvents, AuditExport: c.AuditExport,
	}
	if err := sc.Validate(); err != nil {
		return server.Config{}, &usageError{err}
	}
	return sc, nil
}

// pprofRemote checks the profiling listener's address and returns whether
// it may listen off loopback.
func (c nodeConfig) pprofRemote() (bool, error) {
	remote := false
	if c.PprofAllowRemote != "" {
		var err error
		if remote, err = strconv.ParseBool(c.PprofAllowRemote); err != nil {
			return false, fmt.Errorf("pprof-allow-remote %q: give true or false", c.PprofAllowRemote)
		}
	}
	if c.Pprof == "" {
		return remote, nil
	}
	return remote, checkPprofAddr(c.Pprof, remote)
}

// authnLimits reads the failed-login limits, naming the key at fault.
func (c nodeConfig) authnLimits() (authn.LimiterConfig, error) {
	var l authn.LimiterConfig
	counts := []struct {
		key, val string
		dst      *int
	}{
		{"authn-burst", c.AuthnBurst, &l.Burst}, {"authn-source-burst", c.AuthnSourceBurst, &l.SourceBurst},
		{"authn-global-burst", c.AuthnGlobalBurst, &l.GlobalBurst}, {"authn-max-entries", c.AuthnMaxEntries, &l.MaxEntries},
	}
	for _, f := range counts {
		if f.val == "" {
			continue
		}
		n, err := strconv.Atoi(f.val)
		if err != nil || n < 1 {
			return l, fmt.Errorf("%s %q: give a whole number of at least 1", f.key, f.val)
		}
		*f.dst = n
	}
	durations := []struct {
		key, val string
		dst      *time.Duration
	}{
		{"authn-refill", c.AuthnRefill, &l.Refill}, {"authn-source-refill", c.AuthnSourceRefill, &l.SourceRefill},
		{"authn-global-refill", c.AuthnGlobalRefill, &l.GlobalRefill},
	}
	for _, f := range durations {
		if f.val == "" {
			continue
		}
		d, err := time.ParseDuration(f.val)
		if err != nil || d <= 0 {
			return l, fmt.Errorf("%s %q: give a positive duration such as 6s or 10ms", f.key, f.val)
		}
		*f.dst = d
	}
	return l, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	switch level {
	case "debug":
		lvl = slog.LevelDebug
	case "info":
		lvl = slog.LevelInfo
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return nil, fmt.Errorf("log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format %q: use text or json", format)
}

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the node configuration"}
	print := &cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (flags, SOWER_ environment and config file merged), secrets redacted",
		Example: `  sower config print
  SOWER_ACCOUNT=myorg sower config print --data-dir /var/lib/sower`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadNodeConfig(cmd.Flags())
			if err != nil {
				return err
			}
			return printConfig(cmd.OutOrStdout(), c)
		},
	}
	nodeFlags(print.Flags())
	cmd.AddCommand(print)
	return cmd
}

func printConfig(w io.Writer, c nodeConfig) error {
	var m map[string]string
	raw, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := m[k]
		if slices.Contains(secretKeys, k) && val != "" {
			val = "<redacted>"
		}
		if _, err := fmt.Fprintf(w, "%s: %q\n", k, val); err != nil {
			return err
		}
	}
	return nil
}

// replicationRing reads SOWER_REPLICATION_RING, how many replicated
// revisions a node keeps to resume Followers from (docs/followers.md); a
// tuning knob, not a flag: the default suits every cluster we know of.
func replicationRing() int {
	n, err := strconv.Atoi(os.Getenv("SOWER_REPLICATION_RING"))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// auditRetention checks the audit trail's retention: empty takes the
// defaults; an age under a minute (the prune's period) or a count under
// 1,000 would leave nothing to query.
func (c nodeConfig) auditRetention() (time.Duration, int64, error) {
	var age time.Duration
	var events int64
	if c.AuditMaxAge != "" {
		d, err := time.ParseDuration(c.AuditMaxAge)
		if err != nil || d < time.Minute {
			return 0, 0, fmt.Errorf("audit-max-age %q: give a duration of at least 1m, such as 720h (30 days)", c.AuditMaxAge)
		}
		age = d
	}
	if c.AuditMaxEvents != "" {
		n, err := strconv.ParseInt(c.AuditMaxEvents, 10, 64)
		if err != nil || n < 1000 {
			return 0, 0, fmt.Errorf("audit-max-events %q: give a whole number of at least 1000", c.AuditMaxEvents)
		}
		events = n
	}
	return age, events, nil
}
