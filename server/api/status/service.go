// Package status implements sower.v1.StatusService: what a node is and how it
// sees the cluster. It is the adapter between the cluster package's view of
// the raft group and the API's messages, and needs no authentication.
package status

import (
	"context"
	"errors"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	"github.com/sowerproject/sower/cluster"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	apicluster "github.com/sowerproject/sower/server/api/cluster"
)

// Node is what the service reads; the server's node implements it.
type Node interface {
	// Info is the etcd member's current view of the raft group.
	Info() cluster.Info
	// MemberName resolves an etcd member id to its name.
	MemberName(id uint64) string
	// Role is the node's role as sower sees it.
	Role() cluster.Role
}

// Config is what the service needs.
type Config struct {
	Node      Node
	Name      string
	Account   string
	Version   string
	ClusterID string
}

// Service implements sowerv1.StatusServiceServer.
type Service struct {
	sowerv1.UnsafeStatusServiceServer
	c Config
}

// New returns the status service.
func New(c Config) (*Service, error) {
	if c.Node == nil {
		return nil, errors.New("status: Node is required")
	}
	return &Service{c: c}, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { sowerv1.RegisterStatusServiceServer(g, s) }

// RegisterGateway maps the service's REST paths onto mux, calling through conn.
func (s *Service) RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	return sowerv1.RegisterStatusServiceHandlerClient(ctx, mux, sowerv1.NewStatusServiceClient(conn))
}

// GetStatus reports the node's identity and its view of the quorum.
func (s *Service) GetStatus(context.Context, *sowerv1.GetStatusRequest) (*sowerv1.GetStatusResponse, error) {
	info := s.c.Node.Info()
	resp := &sowerv1.GetStatusResponse{
		Name:      s.c.Name,
		Account:   s.c.Account,
		Role:      apicluster.RoleToProto(s.c.Node.Role()),
		Version:   s.c.Version,
		ClusterId: s.c.ClusterID,
		MemberId:  hexID(info.MemberID),
		RaftIndex: info.RaftIndex,
		RaftTerm:  info.RaftTerm,
	}
	if info.LeaderID != 0 {
		resp.LeaderId = hexID(info.LeaderID)
		resp.LeaderName = s.c.Node.MemberName(info.LeaderID)
	}
	return resp, nil
}

func hexID(id uint64) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatUint(id, 16)
}
