package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/audit/queue"
	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/token"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/replica"
	"github.com/sowerproject/sower/seed/archive"
	authnapi "github.com/sowerproject/sower/server/api/authn"
	clusterapi "github.com/sowerproject/sower/server/api/cluster"
	policyapi "github.com/sowerproject/sower/server/api/policy"
	"github.com/sowerproject/sower/server/api/replication"
	secretsapi "github.com/sowerproject/sower/server/api/secrets"
	"github.com/sowerproject/sower/server/api/status"
	"github.com/sowerproject/sower/server/conjur"
	"github.com/sowerproject/sower/server/etcdstore"
)

// FollowerConfig is a Follower's configuration, parsed by cmd/sower.
type FollowerConfig struct {
	// SeedDir is an unpacked Follower seed (`sower seed unpack`, the seed
	// fetcher): certificates, CA bundle, data key, the quorum's endpoints.
	SeedDir string
	// DataDir holds the local copy (a private etcd), the data key as
	// rotations change it, and the lock.
	DataDir string
	// HTTPAddr serves Conjur's read endpoints, /v1, /health and metrics;
	// GRPCAddr the same services over gRPC.
	HTTPAddr string
	GRPCAddr string
	Version  string
	// MaxStaleness, when set, makes the Follower refuse authentication
	// and secret reads (503) once its copy is older than this. Zero (the
	// default) serves whatever it holds, as Conjur's Followers do.
	MaxStaleness time.Duration
	// MinRevisionWait bounds how long a request with X-Sower-Min-Revision
	// waits for the copy to reach it (default 2s); then it gets 412.
	MinRevisionWait time.Duration
	// MinFreeDisk is the free space the data dir's file system keeps, as
	// Config.MinFreeDisk: below it the local copy raises its etcd's NOSPACE
	// alarm and stops applying updates (they are taken again once space is
	// back) while reads go on. Zero picks cluster.AutoMinFreeDisk.
	MinFreeDisk uint64
	// ShutdownTimeout bounds in-flight requests at shutdown (default 5s).
	ShutdownTimeout time.Duration
	// Audit is told of every request the Follower serves. Nil records
	// nothing. (The audit trail proper is AuditQueue below.)
	Audit RequestAuditor
	// AuditQueue configures the Follower's audit: every authentication and
	// secret read it serves is recorded in a durable queue under
	// <data-dir>/audit and pushed to the quorum node it replicates from.
	AuditQueue FollowerAudit
	Logger     *slog.Logger
}

// FollowerAudit configures a Follower's audit queue (audit/queue).
type FollowerAudit struct {
	// Off records nothing (for measuring what recording costs).
	Off bool
	// MaxEvents and MaxBytes bound the events queued and not yet stored
	// by the quorum (zero: queue.DefaultMaxEvents, queue.DefaultMaxBytes).
	MaxEvents int
	MaxBytes  int64
	// Full is what happens when the queue is full: queue.DropOldest (the
	// default) or queue.Refuse, which refuses authentication and secret
	// reads (503) until the quorum has taken some events.
	Full queue.Policy
}

// RequestAuditor records requests a Follower served; it must not block.
type RequestAuditor interface {
	Served(ServedRequest)
}

// ServedRequest is one request a Follower answered.
type ServedRequest struct {
	Method, Path, RemoteAddr string
	Status                   int
	// Revision is the source revision the answer was served at.
	Revision int64
	At       time.Time
}

type noAudit struct{}

func (noAudit) Served(ServedRequest) {}

// Validate checks the configuration and names the key at fault.
func (c FollowerConfig) Validate() error {
	if c.SeedDir == "" {
		return fmt.Errorf("%w: seed-dir is empty: name the directory a Follower seed was unpacked into (sower seed unpack --dir), or pass --seed and --identity", ErrInvalidConfig)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: data-dir is empty", ErrInvalidConfig)
	}
	for _, a := range []struct{ key, val string }{{"grpc-addr", c.GRPCAddr}, {"http-addr", c.HTTPAddr}} {
		if err := checkAddr(a.val); err != nil {
			return fmt.Errorf("%w: %s %q: %v", ErrInvalidConfig, a.key, a.val, err)
		}
	}
	if _, err := queue.ParsePolicy(string(c.AuditQueue.Full)); err != nil {
		return fmt.Errorf("%w: audit-queue-full: %v", ErrInvalidConfig, err)
	}
	if c.AuditQueue.MaxEvents < 0 || c.AuditQueue.MaxBytes < 0 {
		return fmt.Errorf("%w: audit-queue-max-events and audit-queue-max-bytes must not be negative", ErrInvalidConfig)
	}
	if c.MaxStaleness < 0 || c.MinRevisionWait < 0 || c.ShutdownTimeout < 0 {
		return fmt.Errorf("%w: max-staleness, min-revision-wait and shutdown-timeout must not be negative", ErrInvalidConfig)
	}
	return checkMinFreeDisk(c.MinFreeDisk)
}

// Follower is a read-only node: it replicates from the quorum and serves
// reads from its own copy. Create it with NewFollower, run it with Run.
type Follower struct {
	c  FollowerConfig
	lg *slog.Logger

	ready    chan struct{}
	mu       sync.Mutex
	grpcAddr net.Addr
	httpAddr net.Addr
	leader   cluster.Leader
	rep      *replica.Replica
	feed     *replication.Feed
	audit    *queue.Queue // nil when the audit is off
	// graphAt waits until the policy graph reflects the copy as it is
	// (read-after-write: the copy may be ahead of the graph's watch).
	graphAt  func(ctx context.Context) error
	started  time.Time
	manifest archive.Manifest
}

// NewFollower checks the configuration.
func NewFollower(c FollowerConfig) (*Follower, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.MinRevisionWait == 0 {
		c.MinRevisionWait = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Audit == nil {
		c.Audit = noAudit{}
	}
	return &Follower{c: c, lg: c.Logger, ready: make(chan struct{})}, nil
}

// Ready is closed once the Follower holds a whole copy and serves.
func (f *Follower) Ready() <-chan struct{} { return f.ready }

// Addrs returns the bound gRPC and HTTP addresses; valid after Ready.
func (f *Follower) Addrs() (grpcAddr, httpAddr net.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.grpcAddr, f.httpAddr
}

// Files of a Follower seed (paths inside the seed).
const (
	seedFollowerCert = "tls/follower.pem"
	seedFollowerKey  = "tls/follower-key.pem"
	seedReplCert     = "tls/replication.pem"
	seedReplKey      = "tls/replication-key.pem"
	seedCA           = "tls/ca.pem"
)

// followerTLS is a Follower's TLS identity from its seed.
type followerTLS struct {
	roots  []*x509.Certificate
	server pki.CertificateSource
	client pki.CertificateSource
	name   string // the server certificate's first DNS name
	// clientName is the replication certificate's common name: the
	// name the quorum knows this Follower by, and its audit events' node.
	clientName string
	revoked    *pki.RevokedSet
}

func loadFollowerTLS(dir string, m archive.Manifest) (*followerTLS, error) {
	read := func(p string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			return nil, fmt.Errorf("server: Follower seed in %s: %w", dir, err)
		}
		return b, nil
	}
	var clientName string
	issued := func(cert, key string) (pki.CertificateSource, error) {
		c, err := read(cert)
		if err != nil {
			return nil, err
		}
		k, err := read(key)
		if err != nil {
			return nil, err
		}
		is, err := pki.ParseIssued(c, k)
		if err != nil {
			return nil, fmt.Errorf("server: %s: %w", cert, err)
		}
		clientName = is.Leaf().Subject.CommonName
		return pki.StaticCertificate(is)
	}
	caPEM, err := read(seedCA)
	if err != nil {
		return nil, err
	}
	roots, err := pki.ParseCertificatesPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("server: %s: %w", seedCA, err)
	}
	t := &followerTLS{roots: roots, revoked: pki.NewRevokedSet()}
	if t.server, err = issued(seedFollowerCert, seedFollowerKey); err != nil {
		return nil, err
	}
	if t.client, err = issued(seedReplCert, seedReplKey); err != nil {
		return nil, err
	}
	t.clientName = clientName
	if len(m.Hostnames) == 0 {
		return nil, fmt.Errorf("server: the Follower seed in %s names no host", dir)
	}
	t.name = m.Hostnames[0]
	return t, nil
}

// Run starts the Follower and blocks until ctx is cancelled or a part
// fails. It serves only once it holds a whole copy of the replicated state
// (on a restart: the copy it had, at once).
func (f *Follower) Run(ctx context.Context) error {
	f.started = time.Now()
	m, err := archive.ReadDir(f.c.SeedDir)
	if err != nil {
		return fmt.Errorf("server: Follower seed: %w", err)
	}
	if m.Kind != archive.KindFollower {
		return fmt.Errorf("%w: the seed in %s is a %s seed; a Follower needs a Follower seed", ErrInvalidConfig, f.c.SeedDir, m.Kind)
	}
	f.manifest = m
	f.leader = cluster.Leader{URL: first(m.Endpoints.Leader)}
	dd, err := openDataDir(f.c.DataDir)
	if err != nil {
		return err
	}
	defer dd.close()
	grpcLis, err := listen("grpc-addr", f.c.GRPCAddr)
	if err != nil {
		return err
	}
	defer grpcLis.Close()
	httpLis, err := listen("http-addr", f.c.HTTPAddr)
	if err != nil {
		return err
	}
	defer httpLis.Close()

	// The data key: the seed's at first, then this node's own file, which
	// data-key rotations reaching the feed extend.
	keyPath := dd.join("data.key")
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		raw, err := os.ReadFile(filepath.Join(f.c.SeedDir, seedDataKeyFile))
		if err != nil {
			return fmt.Errorf("server: Follower seed data key: %w", err)
		}
		if err := writeFileAtomic(keyPath, raw, 0o600); err != nil {
			return err
		}
	}
	dataKey, err := pki.LoadKeyring(keyPath)
	if err != nil {
		return fmt.Errorf("server: data key %s: %w", keyPath, err)
	}
	ft, err := loadFollowerTLS(f.c.SeedDir, m)
	if err != nil {
		return err
	}

	// The copy is rebuildable from the feed: no fsync per applied
	// revision; a copy left by a crash is thrown away for a new snapshot.
	etcd, err := cluster.StartPrivateEtcd(ctx, cluster.PrivateEtcdConfig{Dir: dd.join("replica"), Rebuildable: true, Logger: f.lg})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() {
		if err := etcd.Close(); err != nil {
			f.lg.Warn("the local copy was not closed cleanly; the next start takes a new snapshot", "err", err)
		}
	}()
	if etcd.Discarded() {
		f.lg.Warn("the local copy was not closed cleanly last time (a crash or kill); it was discarded and a new snapshot is taken")
	}
	local := etcd.Client()
	// A full disk must not end the private etcd (it exits on a failed
	// write): below the floor its alarm refuses the replica's writes, the
	// replica retries, and reads serve the copy it has.
	disk, err := etcd.GuardDisk(cluster.DiskConfig{Dir: dd.join("replica"), MinFree: f.c.MinFreeDisk, Logger: f.lg})
	if err != nil {
		return err
	}
	defer disk.Start(ctx)()

	// The audit queue lives on the data dir itself, not in the copy: the
	// copy is thrown away after a crash, the queue must not be.
	if !f.c.AuditQueue.Off {
		q, err := queue.Open(queue.Config{Dir: dd.join("audit"), Node: ft.clientName,
			MaxEvents: f.c.AuditQueue.MaxEvents, MaxBytes: f.c.AuditQueue.MaxBytes, Full: f.c.AuditQueue.Full, Logger: f.lg})
		if err != nil {
			return err
		}
		f.audit = q
		qdone, qres := make(chan struct{}), make(chan error, 1)
		go func() { qres <- q.Run(qdone) }()
		// After serving has stopped: what the last requests recorded is
		// written before Run returns.
		defer func() {
			close(qdone)
			if err := <-qres; err != nil {
				f.lg.Warn("the audit queue was not closed cleanly", "err", err)
			}
		}()
	}

	dk := &dataKeys{kr: dataKey, path: keyPath, name: m.Node.Name, cli: local, lg: f.lg}
	feed, err := replication.NewFeed(replication.FeedConfig{
		Endpoints: func() []string { return f.endpoints(ctx, local) },
		TLS: func(host string) (*tls.Config, error) {
			return pki.ClientTLS(ft.roots, host, ft.client, pki.WithPeerProfiles(pki.ProfileLeaderServer))
		},
		OnLeader: f.setLeader,
		Logger:   f.lg,
	})
	if err != nil {
		return err
	}
	defer feed.Close()
	f.feed = feed
	rep, err := replica.New(ctx, replica.Config{
		Store: replica.NewLocalStore(local, replica.LocalConfig{Rewrite: etcdstore.RebaseGuard, Rewrites: etcdstore.IsGuardKey, Bulk: etcd, Direct: etcd}),
		Feed:  feed,
		// Revisions that arrive together are applied together, but
		// never across a data-key rotation (taken before what it seals)
		// or the policy guard.
		Alone: func(key string) bool { return key == keyringKey || etcdstore.IsGuardKey(key) },
		Observe: func(puts []replica.KV) {
			for _, kv := range puts {
				if kv.Key == keyringKey {
					dk.take(ctx, kv.Value) // before values sealed under it arrive
				}
			}
		},
		Logger: f.lg,
	})
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.rep = rep
	f.mu.Unlock()

	// The policy graph follows the copy from the start: during a first
	// load its watch decodes the facts as the pages are written (on
	// another core than the writes), instead of reading them all back
	// once the load is whole.
	policies := etcdstore.NewPolicies(local, etcdstore.PolicyConfig{Logger: f.lg})
	if err := policies.Open(ctx); err != nil {
		return fmt.Errorf("server: read policies: %w", err)
	}
	f.mu.Lock()
	f.graphAt = func(ctx context.Context) error { return policies.SyncTo(ctx, etcd.Revision()) }
	f.mu.Unlock()
	rctx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	g, gctx := errgroup.WithContext(rctx)
	g.Go(func() error { return policies.Run(gctx) })
	g.Go(func() error { return rep.Run(gctx) })
	if f.audit != nil {
		g.Go(func() error { return feed.ForwardAudit(gctx, f.audit) })
	}
	if !rep.Loaded() {
		f.lg.Info("waiting for the first copy of the cluster's state", "endpoints", feed.Current())
	}
	if err := rep.WaitLoaded(gctx); err != nil {
		return g.Wait()
	}
	// Serve once the graph holds the whole copy.
	if err := policies.Sync(gctx); err != nil {
		if gctx.Err() != nil {
			return g.Wait()
		}
		stopRun()
		return errors.Join(err, g.Wait())
	}

	serveErr := f.serve(gctx, g, local, etcd.Revision, policies, dataKey, ft, grpcLis, httpLis)
	if serveErr != nil {
		return errors.Join(serveErr, g.Wait())
	}
	return g.Wait()
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// endpoints are the quorum nodes to replicate from: the seed's, then every
// node the replicated node list names (nodes added since the seed).
func (f *Follower) endpoints(ctx context.Context, local *clientv3.Client) []string {
	seen := map[string]bool{}
	var out []string
	add := func(u string) {
		if u != "" && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, u := range f.manifest.Endpoints.Leader {
		add(u)
	}
	for _, u := range f.manifest.Endpoints.Standbys {
		add(u)
	}
	nodes, err := cluster.Nodes(ctx, local)
	if err == nil {
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
		for _, n := range nodes {
			add(n.URL)
		}
	}
	return out
}

func (f *Follower) setLeader(name, url string) {
	if url == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader = cluster.Leader{Name: name, URL: url}
}

// Leader is the cluster's Leader as the feed last named it (at first, the
// seed's Leader endpoint).
func (f *Follower) Leader() cluster.Leader {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

// Replica is the apply loop; valid after Ready.
func (f *Follower) Replica() *replica.Replica {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rep
}

// followerNode is what the status service reads on a Follower.
type followerNode struct{ name string }

func (n followerNode) Info() cluster.Info       { return cluster.Info{Name: n.name} }
func (n followerNode) MemberName(uint64) string { return "" }
func (n followerNode) Role() cluster.Role       { return cluster.RoleFollower }

// refuseWrites answers every write RPC as a Standby does, naming the
// Leader: a Follower never writes the cluster's state.
func (f *Follower) refuseWrites(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if leaderOnlyMethods[info.FullMethod] {
		l := f.Leader()
		return nil, clusterapi.NotLeaderStatus(&cluster.NotLeaderError{Leader: l, Known: l.URL != ""})
	}
	return h(ctx, req)
}

// serve opens the node's stores over the local copy and serves.
func (f *Follower) serve(ctx context.Context, g *errgroup.Group, local *clientv3.Client, revision func() int64, policies *etcdstore.Policies, dataKey *pki.Keyring, ft *followerTLS, grpcLis, httpLis net.Listener) error {
	m := f.manifest
	pepper, err := readPepper(ctx, local, dataKey)
	if err != nil {
		return err
	}
	keys, err := apikey.New(apikey.Config{Store: etcdstore.NewCredentials(local), Pepper: pepper})
	if err != nil {
		return err
	}
	tokens, err := token.New(token.Config{Keys: etcdstore.NewSigningKeys(local), Sealer: dataKey})
	if err != nil {
		return err
	}
	if err := tokens.Load(ctx); err != nil {
		return fmt.Errorf("server: token signing keys: %w", err)
	}
	secrets, err := etcdstore.NewSecrets(local, dataKey, etcdstore.SecretsConfig{Logger: f.lg, Serializable: true, Revision: revision})
	if err != nil {
		return err
	}
	limiter := authn.NewLimiter(authn.LimiterConfig{})

	st, err := status.New(status.Config{Node: followerNode{name: m.Node.Name}, Name: m.Node.Name, Account: m.Account, Version: f.c.Version})
	if err != nil {
		return err
	}
	pol, err := policyapi.New(policyapi.Config{Account: m.Account, Store: policies, Keys: keys, Logger: f.lg, Secrets: secrets})
	if err != nil {
		return err
	}
	var rec audit.Recorder = audit.Discard{}
	var authnRec authnapi.Auditor
	if f.audit != nil {
		rec = f.audit
		authnRec = authnRecorder{rec}
	}
	au, err := authnapi.New(authnapi.Config{
		Account: m.Account, Keys: keys, Tokens: tokens, Limiter: limiter, Logger: f.lg, Audit: authnRec,
		Authorizer: pol, Graph: policies.Graph, Variables: secrets,
		// The switches replicate with the rest (replica.Replicated).
		Switches: etcdstore.NewAuthenticatorSwitches(local),
		ReadOnly: func() error {
			l := f.Leader()
			return clusterapi.NotLeaderStatus(&cluster.NotLeaderError{Leader: l, Known: l.URL != ""})
		},
	})
	if err != nil {
		return err
	}
	secrets.OnChange(au.InvalidateJWT)
	defer au.Close()
	sec, err := secretsapi.New(secretsapi.Config{Account: m.Account, Store: secrets, Graph: policies.Graph, Audit: rec, Logger: f.lg})
	if err != nil {
		return err
	}
	svcs := []apiService{st, au, pol, sec}

	mt := newMetrics(func() cluster.Info { return cluster.Info{Name: m.Node.Name} })
	registerFollowerMetrics(mt, f.Replica, f.c.MaxStaleness, f.started)
	if f.audit != nil {
		registerAuditQueueMetrics(mt, f.audit)
	}
	auth := &authenticator{tokens: tokens, account: m.Account, lg: f.lg}
	serverTLS, err := pki.ServerTLS(ft.roots, ft.server, pki.WithRevocations(ft.revoked), pki.WithOptionalClientCert())
	if err != nil {
		return err
	}
	selfTLS, err := pki.ClientTLS(ft.roots, ft.name, ft.client, pki.WithRevocations(ft.revoked))
	if err != nil {
		return err
	}
	unary := []grpc.UnaryServerInterceptor{recoverUnary(f.lg), mt.unary, auth.unary, f.refuseWrites, f.refuseUnaudited}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(serverTLS)),
		grpc.MaxRecvMsgSize(maxMessageBytes), grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(recoverStream(f.lg), mt.stream, auth.stream),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	for _, svc := range svcs {
		svc.Register(gs)
	}
	conn, err := grpc.NewClient(dialTarget(grpcLis.Addr()), grpc.WithTransportCredentials(credentials.NewTLS(selfTLS)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
	if err != nil {
		return fmt.Errorf("server: gateway connection: %w", err)
	}
	defer conn.Close()
	lc := newLocalConn(conn, func() []*x509.Certificate { return nil }, unary...)
	for _, svc := range svcs {
		svc.Register(lc)
	}
	gw := newGatewayMux()
	for _, svc := range svcs {
		if err := svc.RegisterGateway(ctx, gw, lc); err != nil {
			return fmt.Errorf("server: register gateway: %w", err)
		}
	}
	cj, err := conjur.New(lc)
	if err != nil {
		return err
	}
	hsrv := &http.Server{
		Handler:           f.httpHandler(gw, cj, mt, ft),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(f.lg.Handler(), slog.LevelWarn),
	}
	revs := &nodePKI{revoked: ft.revoked, lg: f.lg}
	g.Go(func() error { return revs.watchRevocations(ctx, local) })
	g.Go(func() error { return secrets.Run(ctx) })
	g.Go(func() error {
		if err := gs.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("server: gRPC: %w", err)
		}
		return nil
	})
	httpTLS := serverTLS.Clone()
	httpTLS.NextProtos = []string{"h2", "http/1.1"}
	g.Go(func() error {
		if err := hsrv.Serve(tls.NewListener(httpLis, httpTLS)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("server: HTTP: %w", err)
		}
		return nil
	})
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	f.mu.Lock()
	f.grpcAddr, f.httpAddr = grpcLis.Addr(), httpLis.Addr()
	f.mu.Unlock()
	close(f.ready)
	f.lg.Info("sower follower ready", "name", m.Node.Name, "account", m.Account, "applied_revision", f.Replica().Applied(),
		"grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String())
	<-ctx.Done()
	hs.Shutdown()
	(&Server{c: Config{ShutdownTimeout: f.c.ShutdownTimeout}, lg: f.lg}).shutdown(hsrv, gs)
	return nil
}

// readPepper reads the replicated API-key pepper; a Follower never makes
// one.
func readPepper(ctx context.Context, cli *clientv3.Client, sealer authn.Sealer) ([]byte, error) {
	resp, err := cli.Get(ctx, etcdstore.PepperKey)
	if err != nil {
		return nil, fmt.Errorf("server: read API-key pepper: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errors.New("server: the replicated state holds no API-key pepper; is the Leader's cluster initialised?")
	}
	p, err := apikey.OpenPepper(sealer, resp.Kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("server: open API-key pepper (is the seed's data.key the cluster's?): %w", err)
	}
	return p, nil
}
