package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/seed/archive"
	clusterapi "github.com/sowerproject/sower/server/api/cluster"
)

// keyClusterConfig records the auto-failover cluster's name, written once
// when the cluster is created.
const keyClusterConfig = "/sower/cluster/config"

type clusterConfig struct {
	Name string `json:"name"`
}

// defaultClusterName names a cluster created without --cluster.
const defaultClusterName = "default"

// quorum is a node's part in the Leader/Standby quorum: the Leader
// election (the WriteGuard every service's writes go through), the
// membership duties and the enrollment of Standbys.
type quorum struct {
	name     string // the cluster's name: policy conjur/cluster/<name>
	cli      *clientv3.Client
	election *cluster.Election
	members  *cluster.Members
	enroller *cluster.Enroller
	remote   *clientv3.Client
	ttl      func(context.Context) time.Duration

	// The nodes' endpoints a seed lists, read from etcd at most once per
	// nodesCacheTTL: a storm of seeds does not read them per seed.
	nodesMu sync.Mutex
	nodes   []cluster.Node
	nodesAt time.Time
}

// nodesCacheTTL is how long seeds reuse the nodes' endpoints they read.
// A node that joins or moves shows in seeds issued a second later.
const nodesCacheTTL = time.Second

// openQuorum reads (or, on a new cluster, records) the cluster's name and
// builds the election, the membership manager and the enroller. pol may be
// nil until a policy store is wired: then the failover TTL is the
// configured one and enrollment does not check the cluster layer.
func (s *Server) openQuorum(ctx context.Context, etcd *cluster.Etcd, np *nodePKI, pol cluster.Policy, want string) (*quorum, error) {
	name, err := loadClusterName(ctx, etcd.Client(), want)
	if err != nil {
		return nil, err
	}
	clientTLS, _ := np.etcdTLS()
	remote, err := cluster.DialMembers([]string{etcd.ClientURL()}, clientTLS)
	if err != nil {
		return nil, err
	}
	fallback := s.c.FailoverTTL
	if fallback == 0 {
		fallback = cluster.DefaultFailoverTTL
	}
	ttl := func(context.Context) time.Duration { return cluster.FailoverTTL(pol, s.c.Account, name, fallback) }
	info := etcd.Info()
	el, err := cluster.NewElection(cluster.ElectionConfig{
		Client: etcd.Client(),
		Self: cluster.Leader{
			Name: s.c.Name, MemberID: info.MemberID,
			URL: "https://" + advertised(s.c.HTTPAddr, s.c.Name), GRPCAddr: advertised(s.c.GRPCAddr, s.c.Name),
		},
		TTL:     ttl,
		IsVoter: func() bool { return !etcd.Info().IsLearner },
		Logger:  s.lg,
	})
	if err != nil {
		remote.Close()
		return nil, err
	}
	ms, err := cluster.NewMembers(cluster.MembersConfig{Local: etcd.Client(), Remote: remote, Election: el, Logger: s.lg})
	if err != nil {
		remote.Close()
		return nil, err
	}
	en, err := cluster.NewEnroller(cluster.EnrollerConfig{
		Client: etcd.Client(), Election: el, Policy: pol, Account: s.c.Account, Cluster: name, Logger: s.lg,
	})
	if err != nil {
		remote.Close()
		return nil, err
	}
	self := el.Self()
	if err := cluster.PublishNode(ctx, etcd.Client(), cluster.Node{Name: self.Name, MemberID: self.MemberID, URL: self.URL, GRPCAddr: self.GRPCAddr}); err != nil {
		remote.Close()
		return nil, err
	}
	return &quorum{name: name, cli: etcd.Client(), election: el, members: ms, enroller: en, remote: remote, ttl: ttl}, nil
}

// seedEndpoints are the REST URLs a seed lists: the Leader's, and every
// other node's as Standbys.
func (q *quorum) seedEndpoints() archive.Endpoints {
	var ep archive.Endpoints
	l, known := q.election.Leader()
	if known {
		ep.Leader = []string{l.URL}
	}
	for _, n := range q.cachedNodes() {
		if !known || n.Name != l.Name {
			ep.Standbys = append(ep.Standbys, n.URL)
		}
	}
	return ep
}

// cachedNodes returns the nodes' endpoints, read again when the copy is
// older than nodesCacheTTL.
func (q *quorum) cachedNodes() []cluster.Node {
	q.nodesMu.Lock()
	defer q.nodesMu.Unlock()
	if q.nodes != nil && time.Since(q.nodesAt) < nodesCacheTTL {
		return q.nodes
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nodes, err := cluster.Nodes(ctx, q.cli)
	if err != nil {
		return q.nodes // the last copy, or none
	}
	q.nodes, q.nodesAt = nodes, time.Now()
	return nodes
}

// leaderOnlyMethods are the RPCs that write cluster state: a node that is
// not the Leader refuses them before they run, naming the Leader. A new
// write RPC is one more entry. (The fence in the stores' transactions is
// what makes a write safe; this answers early and clearly.)
var leaderOnlyMethods = map[string]bool{
	"/sower.v1.AuthnService/RotateAPIKey":        true,
	"/sower.v1.AuthnService/ChangePassword":      true,
	"/sower.v1.AuthnService/UpdateAuthenticator": true,
	"/sower.v1.CAService/RevokeCertificate":      true,
	"/sower.v1.CAService/RotateDataKey":          true,
	"/sower.v1.PolicyService/LoadPolicy":         true,
	"/sower.v1.PolicyService/SyncPolicies":       true,
	"/sower.v1.SecretsService/SetSecret":         true,
	"/sower.v1.SeedService/IssueFollowerSeed":    true,
	"/sower.v1.SeedService/IssueStandbySeed":     true,
	"/sower.v1.SeedService/RevokeSeed":           true,
	"/sower.v1.ClusterService/RemoveMember":      true,
	"/sower.v1.ClusterService/PromoteMember":     true,
	"/sower.v1.ClusterService/MoveLeader":        true,
	"/sower.v1.ClusterService/Enroll":            true,
	"/sower.v1.ClusterService/AbandonEnrollment": true,

	// Host factories: tokens and the hosts they enrol.
	"/sower.v1.PolicyService/CreateHostFactoryTokens": true,
	"/sower.v1.PolicyService/RevokeHostFactoryToken":  true,
	"/sower.v1.PolicyService/CreateHostWithToken":     true,
}

// leaderOnly refuses a write RPC on a node that is not the Leader.
func (q *quorum) leaderOnly(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if leaderOnlyMethods[info.FullMethod] {
		if err := q.election.Check(); err != nil {
			return nil, clusterapi.NotLeaderStatus(err)
		}
	}
	return h(ctx, req)
}

// run takes part in the election and, while this node leads, performs the
// membership duties, until ctx ends. It returns after the node has resigned.
func (q *quorum) run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.members.Run(ctx)
	}()
	err := q.election.Run(ctx)
	<-done
	return err
}

func (q *quorum) close() { q.remote.Close() }

// service is the ClusterService of this node.
func (q *quorum) service(s *Server, role func() cluster.Role, authz clusterapi.Authorizer, rec audit.Recorder) (*clusterapi.Service, error) {
	return clusterapi.New(clusterapi.Config{
		Account: s.c.Account, Cluster: q.name, Name: s.c.Name,
		Election: q.election, Members: q.members, Enroller: q.enroller,
		Role: role, TTL: q.ttl, Authorizer: authz, Logger: s.lg, Audit: rec,
	})
}

// loadClusterName returns the cluster's recorded name, recording want (or
// the default) when the cluster has none yet.
func loadClusterName(ctx context.Context, cli *clientv3.Client, want string) (string, error) {
	resp, err := cli.Get(ctx, keyClusterConfig)
	if err != nil {
		return "", fmt.Errorf("server: read the cluster's name: %w", err)
	}
	if len(resp.Kvs) == 1 {
		var cc clusterConfig
		if err := json.Unmarshal(resp.Kvs[0].Value, &cc); err != nil || cc.Name == "" {
			return "", fmt.Errorf("server: the cluster's name in etcd (%s) is unreadable", keyClusterConfig)
		}
		if want != "" && want != cc.Name {
			return "", fmt.Errorf("%w: cluster %q: this node belongs to cluster %q; leave out --cluster or set it to %s", ErrInvalidConfig, want, cc.Name, cc.Name)
		}
		return cc.Name, nil
	}
	if want == "" {
		want = defaultClusterName
	}
	raw, _ := json.Marshal(clusterConfig{Name: want})
	txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(keyClusterConfig), "=", 0)).
		Then(clientv3.OpPut(keyClusterConfig, string(raw))).Commit()
	if err != nil {
		return "", fmt.Errorf("server: record the cluster's name: %w", err)
	}
	if !txn.Succeeded {
		return loadClusterName(ctx, cli, want)
	}
	return want, nil
}

// advertised is the host:port other nodes reach a listener at: its address,
// with the node's name for an unspecified IP.
func advertised(addr, name string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = name
	}
	return net.JoinHostPort(host, port)
}

// waitVoter holds a node that joined as a learner until the Leader has
// promoted it: a learner serves no linearizable read, and every later step
// of the start reads that way.
func (s *Server) waitVoter(ctx context.Context, etcd *cluster.Etcd) error {
	if !etcd.Info().IsLearner {
		return nil
	}
	s.lg.Info("joined as a learner; the Leader promotes this node once it has caught up")
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for etcd.Info().IsLearner {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-etcd.Stopped():
			return errors.New("server: etcd stopped while waiting to be promoted (was this node removed from the cluster?)")
		case err := <-etcd.Err():
			return fmt.Errorf("server: etcd failed while waiting to be promoted: %w", err)
		case <-t.C:
		}
	}
	s.lg.Info("promoted to voting member")
	return nil
}

// registerRoleMetrics reports the node's role.
func registerRoleMetrics(m *metrics, role func() cluster.Role) {
	for _, r := range []cluster.Role{cluster.RoleLeader, cluster.RoleStandby, cluster.RoleLearner} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "sower_cluster_role",
			Help:        "1 for the role this node has now (leader, standby, learner), else 0.",
			ConstLabels: prometheus.Labels{"role": r.String()},
		}, func() float64 { return boolGauge(role() == r) }))
	}
}

// notLeaderUnary answers a write refused on a Standby with the status that
// names the Leader, for services that return cluster's error as it is.
func notLeaderUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		if _, isStatus := status.FromError(err); !isStatus {
			if st := clusterapi.NotLeaderStatus(err); st != nil {
				return nil, st
			}
		}
	}
	return resp, err
}

// awaitLeader waits, for at most the lowest failover TTL and a second, until
// a Leader is known.
func (s *Server) awaitLeader(ctx context.Context, el *cluster.Election) {
	wctx, cancel := context.WithTimeout(ctx, cluster.MinFailoverTTL+time.Second)
	defer cancel()
	if _, err := el.WaitLeader(wctx, func(_ cluster.Leader, known bool) bool { return known }); err != nil && ctx.Err() == nil {
		s.lg.Warn("no Leader is elected yet (is a quorum of the members up?); serving reads, refusing writes until one is")
	}
}
