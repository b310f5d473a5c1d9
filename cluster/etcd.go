package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

var (
	// ErrAddrInUse is returned when an etcd listen address is taken.
	ErrAddrInUse = errors.New("cluster: address already in use")
	// ErrEtcdStopped is returned when the member stopped before it became ready.
	ErrEtcdStopped = errors.New("cluster: etcd stopped before it was ready")
)

// EtcdConfig is what a node needs to run its etcd member.
type EtcdConfig struct {
	// Name is the member name; it must be unique in the cluster.
	Name string
	// Dir is etcd's data directory. It is created 0700 if missing.
	Dir string
	// ClientAddr and PeerAddr are host:port listen (and advertise) addresses.
	ClientAddr string
	PeerAddr   string
	// InitialCluster is "name=https://host:port,..."; empty means a new
	// single-member cluster of this node alone.
	InitialCluster string
	// Existing joins an existing cluster instead of creating a new one.
	Existing bool
	// ClientTLS and PeerTLS, when set, make etcd serve only TLS and require
	// certificates from the cluster CA on both links. Nil means plaintext,
	// which only tests of this package use. etcd re-reads the files on every
	// handshake, so a renewed certificate or CRL takes effect without a
	// restart.
	ClientTLS *TLSFiles
	PeerTLS   *TLSFiles
	// Gate, when set, puts a gate in front of both ports (see GateConfig):
	// only current members' certificates reach etcd, and a revoked or
	// removed member's open connections are closed. etcd itself then
	// listens on private Unix sockets; it still dials its peers with
	// PeerTLS. Requires ClientTLS and PeerTLS.
	Gate *GateConfig
	// HeartbeatInterval and ElectionTimeout tune raft. Zero takes etcd's
	// defaults (100ms, 1s).
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// MaxTxnOps and MaxRequestBytes bound one etcd transaction (etcd's
	// --max-txn-ops and --max-request-bytes). Zero takes etcd's defaults
	// (128 operations, 1.5 MiB); the policy store splits larger loads.
	MaxTxnOps       uint
	MaxRequestBytes uint
	// Logger receives etcd's own log lines at Warn and above. Nil discards.
	Logger *slog.Logger

	gateSockets [2]string // etcd's client and peer sockets behind the gate
}

// TLSFiles names the PEM files of one etcd link.
type TLSFiles struct {
	CertFile, KeyFile string
	// CAFile holds the cluster CA bundle; peers and clients must chain to it.
	CAFile string
	// CRLFile, when set, lists revoked certificates; etcd refuses them.
	CRLFile string
}

func (f *TLSFiles) info() transport.TLSInfo {
	return transport.TLSInfo{
		CertFile:       f.CertFile,
		KeyFile:        f.KeyFile,
		ClientCertFile: f.CertFile,
		ClientKeyFile:  f.KeyFile,
		TrustedCAFile:  f.CAFile,
		CRLFile:        f.CRLFile,
		ClientCertAuth: true,
		MinVersion:     tls.VersionTLS12,
	}
}

// maxLearners is how many members may be learners at once (etcd's
// default is one, which would make concurrent Standby joins fail).
const maxLearners = 3

// snapshotCount and snapshotCatchUpEntries bound the raft log etcd keeps
// in memory (see newEtcdConfig).
const (
	// historyRetention is how far back a quorum member keeps the history
	// of its keys (etcd's periodic auto-compaction).
	historyRetention       = "1h"
	snapshotCount          = 1000
	snapshotCatchUpEntries = 200
)

// Etcd is a running embedded etcd member.
type Etcd struct {
	e       *embed.Etcd
	client  *clientv3.Client
	seen    *revisionSeen
	gates   *gates // nil without EtcdConfig.Gate
	closing *atomic.Bool
	once    sync.Once
	// afterClose runs once the member is closed (a private etcd's clean
	// mark); discarded: a private etcd's data was thrown away at start.
	afterClose func() error
	closeErr   error
	discarded  bool
	// bulk is held (read) by WriteDirect and (write) by Close, so that no
	// direct write runs into a closed store; rebuildable allows them.
	bulk        sync.RWMutex
	rebuildable bool
}

// StartEtcd starts the member and waits until it is ready to serve requests,
// ctx is done, or etcd fails. On every error path the member is closed.
func StartEtcd(ctx context.Context, c EtcdConfig) (*Etcd, error) {
	closing := new(atomic.Bool)
	var g *gates
	if c.Gate != nil {
		if c.ClientTLS == nil || c.PeerTLS == nil {
			return nil, errors.New("cluster: the etcd gate needs ClientTLS and PeerTLS")
		}
		var err error
		if g, err = openGates(c); err != nil {
			return nil, err
		}
		c.gateSockets = [2]string{g.client.backend, g.peer.backend}
	}
	e, err := startEmbed(ctx, c, closing)
	if err != nil {
		if g != nil {
			g.close()
		}
		return nil, err
	}
	stop := func() {
		closing.Store(true)
		e.Close()
		if g != nil {
			g.close()
		}
	}
	seen := &revisionSeen{}
	cli := retryReads(v3client.New(e.Server), seen)
	if g != nil {
		// Peers may connect as soon as etcd runs (a joining member needs
		// them before it is ready); until now they waited in the backlog.
		g.start(&memberSource{srv: e.Server, cli: cli})
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		cli.Close()
		stop()
		return nil, fmt.Errorf("cluster: etcd member %q failed while starting: %w", c.Name, err)
	case <-e.Server.StopNotify():
		cli.Close()
		stop()
		return nil, ErrEtcdStopped
	case <-ctx.Done():
		cli.Close()
		stop()
		return nil, fmt.Errorf("cluster: waiting for etcd to become ready: %w", ctx.Err())
	}
	return &Etcd{e: e, client: cli, seen: seen, gates: g, closing: closing}, nil
}

// startEmbed starts etcd, asking again while a joining member's view of
// the membership is stale.
func startEmbed(ctx context.Context, c EtcdConfig, closing *atomic.Bool) (*embed.Etcd, error) {
	cfg, err := c.embedConfig(closing)
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(cfg)
	for attempt := 1; err != nil && c.Existing && staleMembership(err) && attempt < joinAttempts; attempt++ {
		// A joining member learns the cluster from the first peer that
		// answers; a member that joined just before (a learner still
		// catching up) may not know of this one yet. Ask again shortly.
		select {
		case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: start etcd member %q: %w", c.Name, ctx.Err())
		}
		if cfg, err = c.embedConfig(closing); err != nil {
			return nil, err
		}
		e, err = embed.StartEtcd(cfg)
	}
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: etcd cannot listen on %s or %s; pick free ports with --etcd-client-addr and --etcd-peer-addr: %v", ErrAddrInUse, c.ClientAddr, c.PeerAddr, err)
		}
		return nil, fmt.Errorf("cluster: start etcd member %q in %s: %w", c.Name, c.Dir, err)
	}
	return e, nil
}

// joinAttempts bounds how often a joining member asks again for a
// membership view that includes it (see StartEtcd).
const joinAttempts = 8

// staleMembership reports etcd's refusals of a join when the peer it asked
// has an older membership view than the one the member was enrolled in.
func staleMembership(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "member count is unequal") || strings.Contains(msg, "unmatched member while checking PeerURLs")
}

func (c EtcdConfig) embedConfig(closing *atomic.Bool) (*embed.Config, error) {
	if c.Name == "" || c.Dir == "" {
		return nil, errors.New("cluster: etcd member needs a name and a data directory")
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.Dir
	scheme := "http"
	if c.ClientTLS != nil {
		scheme = "https"
	}
	cu, err := hostURL(scheme, c.ClientAddr, "etcd-client-addr")
	if err != nil {
		return nil, err
	}
	pscheme := "http"
	if c.PeerTLS != nil {
		pscheme = "https"
	}
	pu, err := hostURL(pscheme, c.PeerAddr, "etcd-peer-addr")
	if err != nil {
		return nil, err
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	if c.Gate != nil {
		// Behind the gate etcd listens on its Unix sockets and advertises
		// the gate's https URLs. etcd takes a client socket's path from
		// the URL's host and path, a peer socket's from its host alone.
		cfg.ListenClientUrls = []url.URL{{Scheme: "unix", Path: c.gateSockets[0]}}
		cfg.ListenPeerUrls = []url.URL{{Scheme: "unix", Host: c.gateSockets[1]}}
	}
	cfg.InitialCluster = c.InitialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(c.Name)
	}
	if c.Existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	if c.HeartbeatInterval > 0 {
		cfg.TickMs = uint(c.HeartbeatInterval / time.Millisecond)
	}
	if c.ElectionTimeout > 0 {
		cfg.ElectionMs = uint(c.ElectionTimeout / time.Millisecond)
	}
	if c.MaxTxnOps > 0 {
		cfg.MaxTxnOps = c.MaxTxnOps
	}
	if c.MaxRequestBytes > 0 {
		cfg.MaxRequestBytes = c.MaxRequestBytes
	}
	if c.ClientTLS != nil && c.Gate == nil {
		cfg.ClientTLSInfo = c.ClientTLS.info()
	}
	if c.PeerTLS != nil {
		cfg.PeerTLSInfo = c.PeerTLS.info()
	}
	// Standbys join as learners; a few may join at once.
	cfg.MaxLearners = maxLearners
	// etcd keeps every raft entry since its last snapshot in memory, plus
	// SnapshotCatchUpEntries before it for slow members. sower's entries
	// can be large (a policy load is written in batches of up to
	// MaxRequestBytes), so etcd's defaults (10,000 and 5,000 entries) would
	// keep gigabytes around after a few big loads; these keep a few hundred
	// entries. A member that falls further behind gets a snapshot instead,
	// which for sower's data is no larger than the entries would be.
	cfg.SnapshotCount = snapshotCount
	cfg.SnapshotCatchUpEntries = snapshotCatchUpEntries
	// etcd keeps every revision of every key until it is compacted: each
	// secret version, audit event and seed record stays in the database
	// after it is deleted or overwritten, until the quota stops all
	// writes. The history is compacted to the last hour (etcd's periodic
	// mode; Kubernetes compacts every 5 minutes): a Follower away for
	// less than that resumes from its revision, one away longer takes a
	// snapshot, as after any compaction.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = historyRetention
	// etcd's metrics would otherwise register into the default Prometheus
	// registry twice in tests that run two members in one process.
	cfg.Metrics = "basic"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapToSlog(c.Logger, closing))
	return cfg, nil
}

func hostURL(scheme, addr, key string) (url.URL, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return url.URL{}, fmt.Errorf("cluster: %s %q must be host:port, for example 127.0.0.1:2379", key, addr)
	}
	return url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}, nil
}

// Client returns an in-process client of this member. It stays valid until
// Close.
func (e *Etcd) Client() *clientv3.Client { return e.client }

// ClientURL is the URL other nodes reach this member's client listener at.
func (e *Etcd) ClientURL() string { return e.e.Config().AdvertiseClientUrls[0].String() }

// PeerURL is the URL other members reach this member's peer listener at.
func (e *Etcd) PeerURL() string { return e.e.Config().AdvertisePeerUrls[0].String() }

// Err reports a fatal error of the running member (for example a listener
// that failed). The channel is never closed.
func (e *Etcd) Err() <-chan error { return e.e.Err() }

// Stopped is closed when the member's server has stopped.
func (e *Etcd) Stopped() <-chan struct{} { return e.e.Server.StopNotify() }

// Close stops the member, waiting for in-flight requests and the WAL to be
// flushed. It is safe to call more than once.
func (e *Etcd) Close() error {
	e.once.Do(func() {
		e.bulk.Lock()
		e.closing.Store(true)
		e.bulk.Unlock()
		e.client.Close()
		e.e.Close()
		if e.gates != nil {
			e.gates.close()
		}
		if e.afterClose != nil {
			e.closeErr = e.afterClose()
		}
	})
	return e.closeErr
}

// Info is a snapshot of how this member sees the raft group.
type Info struct {
	Name      string
	MemberID  uint64
	ClusterID uint64
	LeaderID  uint64
	IsLearner bool
	RaftIndex uint64
	RaftTerm  uint64
}

// IsLeader reports whether this member is the raft leader.
func (i Info) IsLeader() bool { return i.LeaderID != 0 && i.LeaderID == i.MemberID }

// Info returns the member's current view of the cluster.
func (e *Etcd) Info() Info {
	s := e.e.Server
	return Info{
		Name:      e.e.Config().Name,
		MemberID:  uint64(s.MemberID()),
		ClusterID: uint64(s.Cluster().ID()),
		LeaderID:  uint64(s.Leader()),
		IsLearner: s.IsLearner(),
		RaftIndex: s.AppliedIndex(),
		RaftTerm:  s.Term(),
	}
}

// MemberName returns the name of the member with the given id, or "" when
// it is unknown.
func (e *Etcd) MemberName(id uint64) string {
	for _, m := range e.e.Server.Cluster().Members() {
		if uint64(m.ID) == id {
			return m.Name
		}
	}
	return ""
}

// DialMembers returns a network client of the cluster's members that
// authenticates with the files of tls (the node's certificate, which etcd's
// client listeners require) and verifies them against its CA. The files
// are read on every handshake, so renewed certificates are picked up.
// Maintenance calls (Status) may name any member's client URL.
func DialMembers(endpoints []string, tls *TLSFiles) (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()}
	if tls != nil {
		info := tls.info()
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("cluster: TLS for the etcd client: %w", err)
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: etcd client of %v: %w", endpoints, err)
	}
	return cli, nil
}

// Recheck makes the gate check every open connection to etcd again now
// (after a revocation), instead of at its next interval. Without a gate it
// does nothing.
func (e *Etcd) Recheck() {
	if e.gates != nil {
		e.gates.recheck()
	}
}

// Removed reports whether this member has been removed from the cluster
// (etcd then stops it).
func (e *Etcd) Removed() bool {
	rc, ok := e.e.Server.Cluster().(interface{ IsIDRemoved(types.ID) bool })
	return ok && rc.IsIDRemoved(e.e.Server.MemberID())
}
