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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn/k8s"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/seed"
	"github.com/sowerproject/sower/seed/archive"
	"github.com/sowerproject/sower/server/api/replication"
	"github.com/sowerproject/sower/server/conjur"
	"github.com/sowerproject/sower/server/etcdstore"
)

// ErrPortInUse is returned when a listen address is taken.
var ErrPortInUse = errors.New("server: address already in use")

// Option changes optional behaviour of a Server.
type Option func(*Server)

// Server is one sower node. Create it with New, run it with Run.
type Server struct {
	c  Config
	lg *slog.Logger

	ready     chan struct{}
	mu        sync.Mutex
	grpcAddr  net.Addr
	httpAddr  net.Addr
	meta      clusterMeta
	bootstrap bool
	pin       string
	// kube is the Kubernetes API client of authn-k8s services whose
	// variables name none (WithKubernetes).
	kube k8s.API
}

// New checks the configuration and returns a Server that has not started.
func New(c Config, opts ...Option) (*Server, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{c: c, lg: c.Logger, ready: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Ready is closed once the node serves gRPC and HTTP.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound gRPC and HTTP addresses; valid after Ready.
func (s *Server) Addrs() (grpcAddr, httpAddr net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grpcAddr, s.httpAddr
}

// Bootstrapped reports whether this start created the cluster, and its id;
// valid after Ready.
func (s *Server) Bootstrapped() (created bool, clusterID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bootstrap, s.meta.ID
}

// AdminKeyPath is where the admin credential of a bootstrapped cluster is.
func (s *Server) AdminKeyPath() string { return s.abs("admin.key") }

// CAFile is the node's CA bundle (PEM), what `curl --cacert` takes.
func (s *Server) CAFile() string { return s.abs(tlsDir, caFile) }

// CAPin is the cluster CA's pin, "sha256:<hex>"; valid after Ready.
func (s *Server) CAPin() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pin
}

func (s *Server) abs(elem ...string) string {
	p, err := filepath.Abs(filepath.Join(append([]string{s.c.DataDir}, elem...)...))
	if err != nil {
		return filepath.Join(append([]string{s.c.DataDir}, elem...)...)
	}
	return p
}

// Run starts the node and blocks until ctx is cancelled or a component
// fails. On return every listener is closed and etcd has stopped; a
// cancelled ctx yields nil.
func (s *Server) Run(ctx context.Context) error {
	dd, err := openDataDir(s.c.DataDir)
	if err != nil {
		return err
	}
	defer dd.close()

	// Listen before etcd starts, so a port in use fails before anything
	// in the data dir is touched.
	grpcLis, err := listen("grpc-addr", s.c.GRPCAddr)
	if err != nil {
		return err
	}
	defer grpcLis.Close()
	httpLis, err := listen("http-addr", s.c.HTTPAddr)
	if err != nil {
		return err
	}
	defer httpLis.Close()

	// The data key is created with the cluster and never after: a node
	// with etcd data but no key could not open a single secret.
	_, statErr := os.Stat(dd.join("etcd"))
	newNode := os.IsNotExist(statErr)
	// A node with a Standby seed enrolls with the Leader and takes its
	// data key and certificates from the seed: it starts like a node
	// restarting, with an etcd member that joins the existing cluster.
	var js *joinStart
	if s.c.Join != nil {
		if js, err = s.joinFromSeed(ctx, dd, !newNode); err != nil {
			return err
		}
		newNode = false
	}
	dataKey, err := openDataKey(dd.join("data.key"), newNode)
	if err != nil {
		return err
	}

	// etcd serves TLS from the start, so a new cluster's CA is created
	// in memory first and moved into etcd once it runs.
	var np *nodePKI
	var caMem *memStore
	if newNode {
		np, caMem, err = bootstrapPKI(ctx, dd, s.c, dataKey, s.lg)
	} else {
		np, err = loadNodePKI(dd, s.lg)
	}
	if err != nil {
		return err
	}
	etcdClientTLS, etcdPeerTLS := np.etcdTLS()
	gate, err := np.etcdGate(dd.join(socketDir), s.lg)
	if err != nil {
		return err
	}
	ec := cluster.EtcdConfig{
		Name:       s.c.Name,
		Dir:        dd.join("etcd"),
		ClientAddr: s.c.EtcdClientAddr,
		PeerAddr:   s.c.EtcdPeerAddr,
		ClientTLS:  etcdClientTLS,
		PeerTLS:    etcdPeerTLS,
		Gate:       gate,
		Logger:     s.lg,

		MaxTxnOps:       etcdMaxTxnOps,
		MaxRequestBytes: etcdMaxRequestBytes,
	}
	if js != nil {
		ec.InitialCluster, ec.Existing = js.initialCluster, true
	}
	etcd, err := cluster.StartEtcd(ctx, ec)
	if err != nil {
		if js != nil {
			// A join that never started leaves the quorum as it was.
			js.abandon()
			os.RemoveAll(dd.join("etcd"))
		}
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() {
		etcd.Close()
		s.lg.Info("sower node stopped", "name", s.c.Name)
	}()
	np.onRevoked = append(np.onRevoked, etcd.Recheck)
	// The disk guard reads free space from the start: a node restarted on
	// a full disk raises the alarm before anything writes.
	disk, err := etcd.GuardDisk(cluster.DiskConfig{Dir: dd.join("etcd"), MinFree: s.c.MinFreeDisk, Logger: s.lg})
	if err != nil {
		return err
	}
	defer disk.Start(ctx)()
	if err := s.waitVoter(ctx, etcd); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	if err := np.bindCerts(ctx, etcd.Client(), s.c.Name); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.lg.Warn("cannot record this node's certificates for the etcd gates (its enrollment or last renewal recorded them, unless the cluster predates the records)", "err", err)
	}

	kv := etcdstore.NewKV(etcd.Client())
	if caMem != nil {
		err = np.persistCA(ctx, caMem, kv, dataKey)
	} else {
		err = np.loadCA(ctx, kv, dataKey)
	}
	if err != nil {
		return err
	}
	defer np.ca.Close()
	an, err := openAuthn(ctx, etcd.Client(), dataKey, s.c.Name, s.c.AuthnLimits,
		etcdstore.TrailConfig{MaxAge: s.c.AuditMaxAge, MaxEvents: s.c.AuditMaxEvents}, s.lg)
	if err != nil {
		return err
	}
	export, err := openAuditExport(s.c.AuditExport)
	if err != nil {
		return err
	}
	if export != nil {
		defer export.Close()
	}
	meta, created, err := loadOrBootstrap(ctx, etcd.Client(), s.c, adminBootstrapper{an.keys}, dd.join("admin.key"))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if created {
		s.lg.Info("bootstrapped a new cluster", "cluster_id", meta.ID, "account", meta.Account,
			"admin_credential_file", dd.join("admin.key"))
	} else {
		s.lg.Info("rejoined existing cluster", "cluster_id", meta.ID, "account", meta.Account)
	}

	policies, err := openPolicies(ctx, etcd.Client(), s.c.Account, s.lg)
	if err != nil {
		return err
	}

	wantCluster := s.c.Cluster
	if js != nil {
		wantCluster = js.cluster
	}
	q, err := s.openQuorum(ctx, etcd, np, seed.GraphPolicy{Graph: policies.Graph}, wantCluster)
	if err != nil {
		return err
	}
	defer q.close()
	// Every policy, secret and authentication write commits only during
	// this node's term as Leader, as seed records do.
	fenced := q.election.FencedClient(etcd.Client())
	policies.FenceWrites(fenced)
	an.fenceWrites(fenced)

	n := &node{etcd: etcd, election: q.election}
	m := newMetrics(n.Info)
	registerRoleMetrics(m, n.Role)
	registerAuditMetrics(m, an)
	auth := &authenticator{tokens: an.tokens, account: s.c.Account, lg: s.lg, audit: an.audit}
	serverTLS, err := np.serverTLS()
	if err != nil {
		return err
	}
	gatewayTLS, err := np.selfClientTLS()
	if err != nil {
		return err
	}
	unary := []grpc.UnaryServerInterceptor{recoverUnary(s.lg), m.unary, auth.unary, q.leaderOnly, diskGuard{disk}.unary, notLeaderUnary}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(serverTLS)),
		grpc.MaxRecvMsgSize(maxMessageBytes), grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(recoverStream(s.lg), m.stream, auth.stream),
		// The proto codec, plus the replication feed's messages encoded
		// once for every Follower (replication.Config.SharedEncoding).
		grpc.ForceServerCodecV2(replication.Codec{}),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	dk := &dataKeys{kr: dataKey, path: dd.join("data.key"), name: s.c.Name, cli: etcd.Client(), lg: s.lg, members: etcd.MemberNames, audit: an.recorder}
	// Sealing keys made ahead: the pool fills after the first sealed seed,
	// so that a startup storm of Followers finds them ready.
	eph := archive.NewEphemerals(seedEphemeralPool)
	defer eph.Stop()
	hub, err := s.newHub(etcd)
	if err != nil {
		return err
	}
	np.onRevoked = append(np.onRevoked, func() { disconnectRevoked(hub, np.revoked) })
	registerHubMetrics(m, hub)
	registerDiskMetrics(m, disk)
	svcs, err := s.services(serviceDeps{node: n, meta: meta, etcd: etcd, authn: an, policies: policies, pki: np, dataKey: dataKey, dataKeys: dk, quorum: q, ephemerals: eph, hub: hub})
	if err != nil {
		return err
	}
	for _, svc := range svcs {
		svc.Register(gs)
	}

	// The REST gateway and the Conjur adapter call the services in
	// process, behind the same interceptors as a gRPC call (see
	// localConn); streaming calls go over this connection to the node's
	// own gRPC listener, over mTLS.
	conn, err := grpc.NewClient(dialTarget(grpcLis.Addr()), grpc.WithTransportCredentials(credentials.NewTLS(gatewayTLS)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
	if err != nil {
		return fmt.Errorf("server: gateway connection: %w", err)
	}
	defer conn.Close()
	local := newLocalConn(conn, func() []*x509.Certificate { return np.node.Current().Chain }, unary...)
	for _, svc := range svcs {
		svc.Register(local)
	}
	gw := newGatewayMux()
	for _, svc := range svcs {
		if err := svc.RegisterGateway(ctx, gw, local); err != nil {
			return fmt.Errorf("server: register gateway: %w", err)
		}
	}
	cj, err := conjur.New(local)
	if err != nil {
		return err
	}
	hsrv := &http.Server{
		Handler:           withReplication(s.httpHandler(gw, cj, n, m, np), gs, etcd),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.lg.Handler(), slog.LevelWarn),
	}

	g, gctx := errgroup.WithContext(ctx)
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
	g.Go(func() error {
		select {
		case err := <-etcd.Err():
			return fmt.Errorf("server: etcd failed: %w", err)
		case <-etcd.Stopped():
			if gctx.Err() == nil {
				if etcd.Removed() {
					return errors.New("server: this node was removed from the cluster (sower cluster remove); to bring it back, start it with a new Standby seed and --reenroll --yes")
				}
				return errors.New("server: etcd stopped unexpectedly")
			}
			return nil
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error { return np.run(gctx, etcd.Client()) })
	g.Go(func() error { return dk.watch(gctx) })
	g.Go(func() error { return an.run(gctx) })
	if export != nil {
		g.Go(func() error {
			if err := exportAudit(gctx, an.trail, export, auditCursor(s.c.AuditExport)); err != nil && gctx.Err() == nil {
				return fmt.Errorf("server: audit export to %s stopped: %w", s.c.AuditExport, err)
			}
			return nil
		})
	}
	g.Go(func() error { return policies.Run(gctx) })
	g.Go(func() error { return q.run(gctx) })
	g.Go(func() error { return hub.Run(gctx) })
	g.Go(func() error { settleOnLead(gctx, q.election, policies, s.lg); return nil })
	g.Go(func() error {
		<-gctx.Done()
		hs.Shutdown()
		s.shutdown(hsrv, gs)
		return nil
	})

	// Ready means a Leader is known (on a new cluster: this node), so a
	// first write does not meet an election in progress. Without a quorum
	// none will be; the node serves reads and health anyway.
	s.awaitLeader(gctx, q.election)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.mu.Lock()
	s.grpcAddr, s.httpAddr, s.meta, s.bootstrap = grpcLis.Addr(), httpLis.Addr(), meta, created
	s.pin = np.ca.Pin().String()
	s.mu.Unlock()
	close(s.ready)
	s.lg.Info("sower node ready", "name", s.c.Name, "role", n.Role().String(), "cluster", q.name, "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String())

	return g.Wait()
}

// shutdown stops accepting, lets in-flight requests finish within the
// shutdown timeout, then cuts the rest. HTTP goes first: it calls gRPC.
func (s *Server) shutdown(hsrv *http.Server, gs *grpc.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), s.c.ShutdownTimeout)
	defer cancel()
	if err := hsrv.Shutdown(ctx); err != nil {
		s.lg.Warn("HTTP requests still running at shutdown deadline; closing them", "err", err)
		hsrv.Close()
	}
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.lg.Warn("gRPC calls still running at shutdown deadline; closing them")
		gs.Stop()
		<-done
	}
}

func listen(key, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %s %s is taken by another process; stop it or choose another --%s", ErrPortInUse, key, addr, key)
		}
		return nil, fmt.Errorf("server: cannot listen on %s %s: %w", key, addr, err)
	}
	return l, nil
}

// dialTarget turns a listener address into a dial target, replacing an
// unspecified IP (0.0.0.0, ::) with loopback.
func dialTarget(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := tcp.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}

// node adapts the running etcd member and the Leader election to what the
// API services read.
type node struct {
	etcd     *cluster.Etcd
	election *cluster.Election
}

// Info is the member's view, with LeaderID naming sower's Leader (the
// holder of the election key) when one is known, else the raft leader.
func (n *node) Info() cluster.Info {
	i := n.etcd.Info()
	if l, ok := n.election.Leader(); ok {
		i.LeaderID = l.MemberID
	}
	return i
}

func (n *node) MemberName(id uint64) string { return n.etcd.MemberName(id) }

// Role is the node's role from the election.
func (n *node) Role() cluster.Role {
	l, ok := n.election.Leader()
	return cluster.RoleOf(n.etcd.Info(), l, ok)
}

// newGatewayMux returns the REST mux. The gateway forwards the
// Authorization header to gRPC as "authorization" metadata by itself, and
// that is where authentication happens.
func newGatewayMux() *runtime.ServeMux {
	return runtime.NewServeMux(
		// A rate-limited login answers 429 with Retry-After, as the
		// Conjur paths do.
		runtime.WithErrorHandler(func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
			if st, ok := status.FromError(err); ok {
				conjur.SetRetryAfter(w.Header(), st)
				if c := conjur.StatusOf(st); c != 0 {
					err = &runtime.HTTPStatusError{HTTPStatus: c, Err: err}
				}
			}
			runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
		}),
		runtime.WithIncomingHeaderMatcher(func(h string) (string, bool) {
			if strings.EqualFold(h, "x-request-id") {
				return "x-request-id", true
			}
			return runtime.DefaultHeaderMatcher(h)
		}),
	)
}

func clientv3Serializable() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithSerializable(), clientv3.WithCountOnly()}
}

// settleOnLead frees the policy guard each time this node becomes the
// Leader: a large load a former Leader left unfinished is rolled back at
// once (Policies.Begin settles it), not at the next load or after the dead
// writer's lease.
func settleOnLead(ctx context.Context, el *cluster.Election, pol *etcdstore.Policies, lg *slog.Logger) {
	was := false
	for ctx.Err() == nil {
		ch := el.Changed()
		lead := el.IsLeader()
		if lead && !was {
			bctx, cancel := context.WithTimeout(ctx, time.Minute)
			if _, err := pol.Begin(bctx); err != nil && ctx.Err() == nil {
				lg.Warn("check the policy guard after taking over; the next load does it again", "err", err)
			}
			cancel()
		}
		was = lead
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}
