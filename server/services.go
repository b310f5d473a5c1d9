package server

import (
	"context"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/replica"
	"github.com/sowerproject/sower/seed"
	"github.com/sowerproject/sower/seed/archive"
	auditapi "github.com/sowerproject/sower/server/api/audit"
	authnapi "github.com/sowerproject/sower/server/api/authn"
	policyapi "github.com/sowerproject/sower/server/api/policy"
	secretsapi "github.com/sowerproject/sower/server/api/secrets"
	seedapi "github.com/sowerproject/sower/server/api/seed"
	"github.com/sowerproject/sower/server/api/status"
	"github.com/sowerproject/sower/server/etcdstore"
)

// apiService is what every package under server/api provides.
type apiService interface {
	// Register adds the service to the gRPC server.
	Register(grpc.ServiceRegistrar)
	// RegisterGateway maps its /v1 REST paths, calling through conn (the
	// node's localConn: unary calls in process, streams over the network).
	RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error
}

// serviceDeps is what services are built from.
type serviceDeps struct {
	node  *node
	meta  clusterMeta
	etcd  *cluster.Etcd
	authn *authnParts
	// policies is the permission model; its graph answers every check.
	policies *etcdstore.Policies
	// quorum is the node's part in the Leader/Standby quorum. Its
	// election is the WriteGuard: a service calls quorum.election.Check
	// before work only the Leader does, and commits its writes through
	// quorum.election.Txn (or adds quorum.election.Fence to its own
	// transaction), so a Standby or a former Leader never commits one.
	quorum *quorum
	// pki is the node's CA and certificates; dataKey seals secrets.
	pki      *nodePKI
	dataKey  *pki.Keyring
	dataKeys *dataKeys
	// ephemerals are the sealing keys made ahead for seed bursts.
	ephemerals *archive.Ephemerals
	// hub feeds the Followers attached to this node.
	hub *replica.Hub
}

// services builds every API service of the node. A new service is one more
// entry here.
func (s *Server) services(d serviceDeps) ([]apiService, error) {
	st, err := status.New(status.Config{Node: d.node, Name: s.c.Name, Account: s.c.Account, Version: s.c.Version, ClusterID: d.meta.ID})
	if err != nil {
		return nil, err
	}
	// Host factory tokens commit only during this node's term as Leader.
	hfTokens := etcdstore.NewHostFactoryTokens(d.etcd.Client())
	hfTokens.FenceWrites(d.quorum.election.FencedClient(d.etcd.Client()))
	pol, err := policyapi.New(policyapi.Config{Account: s.c.Account, Store: d.policies, Keys: d.authn.keys, Logger: s.lg, LoadTimeout: s.c.PolicyLoadTimeout, Secrets: d.authn.secrets,
		HostFactoryTokens: hfTokens})
	if err != nil {
		return nil, err
	}
	au, err := authnapi.New(authnapi.Config{
		Account: s.c.Account, Keys: d.authn.keys, Tokens: d.authn.tokens, Limiter: d.authn.limiter, Logger: s.lg,
		Authorizer: pol,
		Graph:      d.policies.Graph, Variables: d.authn.secrets, Kube: s.kube, Audit: d.authn.audit,
		Switches: d.authn.switches,
	})
	if err != nil {
		return nil, err
	}
	// A changed variable drops the JWT authenticator built from it.
	d.authn.secrets.OnChange(au.InvalidateJWT)
	d.authn.onClose(func() { _ = au.Close() })
	sec, err := secretsapi.New(secretsapi.Config{Account: s.c.Account, Store: d.authn.secrets, Graph: d.policies.Graph, Logger: s.lg,
		Audit: d.authn.recorder})
	if err != nil {
		return nil, err
	}
	sd, err := s.seedService(d)
	if err != nil {
		return nil, err
	}
	cl, err := d.quorum.service(s, d.node.Role, pol, d.authn.recorder)
	if err != nil {
		return nil, err
	}
	ca, err := s.caService(d, seed.GraphPolicy{Graph: d.policies.Graph}.Allowed)
	if err != nil {
		return nil, err
	}
	rp, err := s.replicationService(d)
	if err != nil {
		return nil, err
	}
	// The audit trail is the quorum's (never replicated): Leader and
	// Standbys answer queries of it, Followers do not build this list.
	ad, err := auditapi.New(auditapi.Config{Account: s.c.Account, Trail: d.authn.trail, Allowed: seed.GraphPolicy{Graph: d.policies.Graph}.Allowed, Logger: s.lg})
	if err != nil {
		return nil, err
	}
	return []apiService{st, au, pol, sd, cl, sec, ca, rp, ad}, nil
}

// seedService wires the seed Issuer: the policy graph decides, the cluster
// CA issues, the node's own certificate signs, etcd records.
func (s *Server) seedService(d serviceDeps) (*seedapi.Service, error) {
	gp := seed.GraphPolicy{Graph: d.policies.Graph}
	iss, err := seed.New(seed.Config{
		Account: s.c.Account, Cluster: d.quorum.name, Policy: gp, CA: d.pki.ca,
		// Seed records commit only during this node's term as Leader.
		Store: etcdstore.NewSeeds(d.quorum.election.FencedClient(d.etcd.Client()), etcdstore.AuditIDs(d.authn.recorder.Node(), d.authn.recorder.NextID)),
		Signer: func() (archive.Signer, error) {
			cur := d.pki.node.Current()
			return archive.Signer{Key: cur.Key, Chain: cur.Chain}, nil
		},
		DataKey:    d.dataKey.Marshal,
		Endpoints:  d.quorum.seedEndpoints,
		Reserved:   func() []string { return s.reservedNames(d) },
		AllowPlain: s.c.AllowPlainSeeds,
		TTL:        s.c.SeedTTL,
		Ephemerals: d.ephemerals,
	})
	if err != nil {
		return nil, err
	}
	return seedapi.New(seedapi.Config{Account: s.c.Account, Issuer: iss, Allowed: gp.Allowed, Logger: s.lg})
}

// reservedNames are the names of the cluster's own nodes: the etcd member
// names and the DNS names of this node's certificate.
func (s *Server) reservedNames(d serviceDeps) []string {
	return append(d.etcd.MemberNames(), d.pki.node.Current().Leaf().DNSNames...)
}
