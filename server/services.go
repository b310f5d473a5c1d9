package server

import (
	"context"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	"github.com/sowerproject/sower/cluster"
	authnapi "github.com/sowerproject/sower/server/api/authn"
	policyapi "github.com/sowerproject/sower/server/api/policy"
	secretsapi "github.com/sowerproject/sower/server/api/secrets"
	"github.com/sowerproject/sower/server/api/status"
	"github.com/sowerproject/sower/server/etcdstore"
)

// apiService is what every package under server/api provides.
type apiService interface {
	// Register adds the service to the gRPC server.
	Register(grpc.ServiceRegistrar)
	// RegisterGateway maps its /v1 REST paths, calling through conn.
	RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error
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
}

// services builds every API service of the node. A new service is one more
// entry here.
func (s *Server) services(d serviceDeps) ([]apiService, error) {
	st, err := status.New(status.Config{Node: d.node, Name: s.c.Name, Account: s.c.Account, Version: s.c.Version, ClusterID: d.meta.ID})
	if err != nil {
		return nil, err
	}
	pol, err := policyapi.New(policyapi.Config{Account: s.c.Account, Store: d.policies, Keys: d.authn.keys, Logger: s.lg})
	if err != nil {
		return nil, err
	}
	au, err := authnapi.New(authnapi.Config{
		Account: s.c.Account, Keys: d.authn.keys, Tokens: d.authn.tokens, Limiter: d.authn.limiter, Logger: s.lg,
		Authorizer: pol,
		Graph:      d.policies.Graph, Variables: d.authn.secrets, Kube: s.kube, Audit: d.authn.audit,
	})
	if err != nil {
		return nil, err
	}
	// A changed variable drops the JWT authenticator built from it.
	d.authn.secrets.OnChange(au.InvalidateJWT)
	d.authn.onClose(func() { _ = au.Close() })
	sec, err := secretsapi.New(secretsapi.Config{Account: s.c.Account, Store: d.authn.secrets, Graph: d.policies.Graph, Logger: s.lg})
	if err != nil {
		return nil, err
	}
	cl, err := d.quorum.service(s, d.node.Role, pol)
	if err != nil {
		return nil, err
	}
	return []apiService{st, au, pol, sec, cl}, nil
}
