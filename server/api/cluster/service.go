// Package cluster implements sower.v1.ClusterService: the quorum's members
// and health, Leader discovery, and the operator's changes (remove,
// promote, hand over the Leader role), plus the enrollment of Standbys. It
// adapts package cluster to the API and is the one place where cluster
// errors become gRPC codes (toStatus).
//
// Reads answer on every node from its own view. Changes run on the Leader
// only and need `update` on the account's root policy; a Standby refuses
// them with NotLeaderStatus, which names the Leader. Enroll and
// AbandonEnrollment are authenticated by the caller's TLS client
// certificate (the node certificate of a Standby seed) and, for Enroll, the
// seed's enrollment token: they need no access token.
package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/pki"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
)

// Authorizer answers permission questions; the policy service implements
// it.
type Authorizer interface {
	Allowed(ctx context.Context, roleID, privilege, resourceID string) (bool, error)
}

// Config holds the service's dependencies.
type Config struct {
	Account string
	// Cluster is the cluster's name (policy conjur/cluster/<Cluster>).
	Cluster string
	// Name is this node's name.
	Name     string
	Election *cluster.Election
	Members  *cluster.Members
	Enroller *cluster.Enroller
	// Role is this node's role now.
	Role func() cluster.Role
	// TTL is the failover TTL a Leader elected now would get.
	TTL func(context.Context) time.Duration
	// Authorizer decides who may change the quorum (`update` on
	// <account>:policy:root). Nil allows only <account>:user:admin.
	Authorizer Authorizer
	// MoveTimeout bounds how long MoveLeader waits for the Standby to take
	// over (default 30s).
	MoveTimeout time.Duration
	Logger      *slog.Logger
	// Audit records every membership change (a Standby enrolled or
	// abandoned, a member promoted or removed, the Leader role moved);
	// nil records nothing.
	Audit audit.Recorder
}

// Service implements sowerv1.ClusterServiceServer.
type Service struct {
	sowerv1.UnsafeClusterServiceServer
	c Config
}

// New checks the dependencies and returns the service.
func New(c Config) (*Service, error) {
	switch {
	case c.Account == "" || c.Cluster == "" || c.Name == "":
		return nil, errors.New("cluster api: Account, Cluster and Name are required")
	case c.Election == nil || c.Members == nil || c.Enroller == nil:
		return nil, errors.New("cluster api: Election, Members and Enroller are required")
	case c.Role == nil || c.TTL == nil:
		return nil, errors.New("cluster api: Role and TTL are required")
	}
	if c.MoveTimeout == 0 {
		c.MoveTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Audit == nil {
		c.Audit = audit.Discard{}
	}
	return &Service{c: c}, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { sowerv1.RegisterClusterServiceServer(g, s) }

// RegisterGateway maps the /v1 REST paths.
func (s *Service) RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	return sowerv1.RegisterClusterServiceHandlerClient(ctx, mux, sowerv1.NewClusterServiceClient(conn))
}

// ListMembers lists the members.
func (s *Service) ListMembers(ctx context.Context, _ *sowerv1.ListMembersRequest) (*sowerv1.ListMembersResponse, error) {
	ms, err := s.c.Members.List(ctx)
	if err != nil {
		return nil, s.toStatus("list members", err)
	}
	return &sowerv1.ListMembersResponse{Members: membersToProto(ms)}, nil
}

// GetClusterStatus reports the quorum's health.
func (s *Service) GetClusterStatus(ctx context.Context, _ *sowerv1.GetClusterStatusRequest) (*sowerv1.GetClusterStatusResponse, error) {
	ms, err := s.c.Members.List(ctx)
	if err != nil {
		return nil, s.toStatus("read the cluster status", err)
	}
	l, known := s.c.Election.Leader()
	h := cluster.Assess(ms, l, known)
	resp := &sowerv1.GetClusterStatusResponse{
		Cluster:            s.c.Cluster,
		FailoverTtlSeconds: uint32(s.c.TTL(ctx) / time.Second),
		Voters:             uint32(h.Voters),
		HealthyVoters:      uint32(h.HealthyVoters),
		Learners:           uint32(h.Learners),
		Quorum:             uint32(h.Quorum),
		FaultTolerance:     uint32(h.FaultTolerance),
		RemainingFailures:  int32(h.Remaining),
		HasQuorum:          h.HasQuorum,
		Warnings:           h.Warnings,
		Members:            membersToProto(ms),
		ThisNode:           s.c.Name,
		ThisRole:           RoleToProto(s.c.Role()),
	}
	if known {
		resp.LeaderName, resp.LeaderUrl = l.Name, l.URL
	}
	return resp, nil
}

// GetLeader names the Leader.
func (s *Service) GetLeader(context.Context, *sowerv1.GetLeaderRequest) (*sowerv1.GetLeaderResponse, error) {
	l, known := s.c.Election.Leader()
	if !known {
		return &sowerv1.GetLeaderResponse{}, nil
	}
	return &sowerv1.GetLeaderResponse{
		Known: true, Name: l.Name, Url: l.URL, GrpcAddr: l.GRPCAddr,
		MemberId: strconv.FormatUint(l.MemberID, 16), Since: l.Since.Format(time.RFC3339Nano),
	}, nil
}

// RemoveMember removes a member.
func (s *Service) RemoveMember(ctx context.Context, req *sowerv1.RemoveMemberRequest) (*sowerv1.RemoveMemberResponse, error) {
	caller, err := s.authorize(ctx)
	if err != nil {
		return nil, err
	}
	m, err := s.find(ctx, req.GetName())
	if err != nil {
		return nil, s.toStatus("remove a member", err)
	}
	if err := s.c.Members.Remove(ctx, m.ID, req.GetForce()); err != nil {
		return nil, s.toStatus("remove a member", err)
	}
	s.c.Logger.Info("member removed", "name", m.Name, "by", caller, "forced", req.GetForce())
	s.membership(ctx, "remove", caller, m.Name, nil)
	return &sowerv1.RemoveMemberResponse{Id: strconv.FormatUint(m.ID, 16)}, nil
}

// PromoteMember promotes a learner.
func (s *Service) PromoteMember(ctx context.Context, req *sowerv1.PromoteMemberRequest) (*sowerv1.PromoteMemberResponse, error) {
	caller, err := s.authorize(ctx)
	if err != nil {
		return nil, err
	}
	m, err := s.find(ctx, req.GetName())
	if err != nil {
		return nil, s.toStatus("promote a member", err)
	}
	if err := s.c.Members.Promote(ctx, m.ID); err != nil {
		return nil, s.toStatus("promote a member", err)
	}
	s.c.Logger.Info("learner promoted", "name", m.Name, "by", caller)
	s.membership(ctx, "promote", caller, m.Name, nil)
	return &sowerv1.PromoteMemberResponse{Id: strconv.FormatUint(m.ID, 16)}, nil
}

// MoveLeader hands the Leader role to a Standby and waits for it to take
// over.
func (s *Service) MoveLeader(ctx context.Context, req *sowerv1.MoveLeaderRequest) (*sowerv1.MoveLeaderResponse, error) {
	caller, err := s.authorize(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.c.Election.Check(); err != nil {
		return nil, s.toStatus("hand over the Leader role", err)
	}
	ms, err := s.c.Members.List(ctx)
	if err != nil {
		return nil, s.toStatus("hand over the Leader role", err)
	}
	to, ok := cluster.FindMember(ms, req.GetTo())
	switch {
	case !ok:
		return nil, s.toStatus("hand over the Leader role", fmt.Errorf("%w: %q", cluster.ErrMemberNotFound, req.GetTo()))
	case to.Role == cluster.RoleLeader:
		return nil, s.toStatus("hand over the Leader role", fmt.Errorf("%w: %s is already the Leader", cluster.ErrBadTransferee, to.Name))
	case to.Learner:
		return nil, s.toStatus("hand over the Leader role", fmt.Errorf("%w: %s is a learner; wait until it votes", cluster.ErrBadTransferee, to.Name))
	case !to.Reachable:
		return nil, s.toStatus("hand over the Leader role", fmt.Errorf("%w: %s is unreachable (%s)", cluster.ErrBadTransferee, to.Name, to.Err))
	}
	if err := s.c.Election.Resign(ctx, to.Name); err != nil {
		return nil, s.toStatus("hand over the Leader role", err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.c.MoveTimeout)
	defer cancel()
	l, err := s.c.Election.WaitLeader(wctx, func(l cluster.Leader, known bool) bool { return known && l.Name != s.c.Name })
	if err != nil {
		return nil, status.Errorf(codes.DeadlineExceeded, "the Leader role was released for %s, which has not taken over yet; `sower cluster status` shows who leads", to.Name)
	}
	s.c.Logger.Info("Leader role handed over", "to", l.Name, "by", caller)
	s.membership(ctx, "move-leader", caller, l.Name, nil)
	return &sowerv1.MoveLeaderResponse{LeaderName: l.Name, LeaderUrl: l.URL}, nil
}

// Enroll admits a Standby as a learner.
func (s *Service) Enroll(ctx context.Context, req *sowerv1.EnrollRequest) (*sowerv1.EnrollResponse, error) {
	cert := clientCert(ctx)
	res, err := s.c.Enroller.Enroll(ctx, cluster.EnrollRequest{Token: req.GetToken(), Name: req.GetName(), PeerURL: req.GetPeerUrl(), Cert: cert})
	s.membership(ctx, "enroll", "", req.GetName(), err)
	if err != nil {
		return nil, s.toStatus("enroll a Standby", err)
	}
	return &sowerv1.EnrollResponse{MemberId: strconv.FormatUint(res.MemberID, 16), InitialCluster: res.InitialCluster, Cluster: s.c.Cluster}, nil
}

// AbandonEnrollment removes the learner of a join that failed.
func (s *Service) AbandonEnrollment(ctx context.Context, req *sowerv1.AbandonEnrollmentRequest) (*sowerv1.AbandonEnrollmentResponse, error) {
	err := s.c.Enroller.Abandon(ctx, req.GetName(), clientCert(ctx))
	s.membership(ctx, "abandon-enrollment", "", req.GetName(), err)
	if err != nil {
		return nil, s.toStatus("abandon an enrollment", err)
	}
	return &sowerv1.AbandonEnrollmentResponse{}, nil
}

// membership records a membership change of member by who (a role;
// empty for a node's own enrollment, authenticated by its token and
// certificate); err makes it a failure.
func (s *Service) membership(ctx context.Context, action, who, member string, err error) {
	e := audit.Event{Kind: audit.KindMembership, Action: action, Outcome: audit.OutcomeSuccess,
		Identity: who, Resource: member, Source: rpcctx.PeerAddr(ctx)}
	if err != nil {
		e.Outcome, e.Reason = audit.OutcomeFailure, strings.ReplaceAll(status.Convert(s.toStatus(action, err)).Message(), "\n", " ")
	}
	s.c.Audit.Record(e)
}

// clientCert is the caller's verified TLS client certificate, when it is
// a node certificate (profile leader-server).
func clientCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	c := ti.State.VerifiedChains[0][0]
	if prof, ok := pki.ProfileOf(c); !ok || prof != pki.ProfileLeaderServer {
		return nil
	}
	return c
}

func (s *Service) find(ctx context.Context, name string) (cluster.Member, error) {
	ms, err := s.c.Members.List(ctx)
	if err != nil {
		return cluster.Member{}, err
	}
	m, ok := cluster.FindMember(ms, name)
	if !ok {
		return cluster.Member{}, fmt.Errorf("%w: %q; `sower cluster members` lists them", cluster.ErrMemberNotFound, name)
	}
	return m, nil
}

// authorize lets a change through for callers allowed `update` on the
// root policy, and only on the Leader.
func (s *Service) authorize(ctx context.Context) (string, error) {
	id, err := rpcctx.Caller(ctx)
	if err != nil {
		return "", err
	}
	role := id.RoleID()
	root := s.c.Account + ":policy:root"
	allowed := role == s.c.Account+":user:admin"
	if s.c.Authorizer != nil {
		var err error
		if allowed, err = s.c.Authorizer.Allowed(ctx, role, "update", root); err != nil {
			s.c.Logger.Error("check permission", "role", role, "err", err)
			return "", status.Error(codes.Internal, "could not check the permission; the server log has the details")
		}
	}
	if !allowed {
		s.c.Logger.Info("cluster change refused", "role", role, "reason", "no update on "+root)
		return "", status.Errorf(codes.PermissionDenied, "changing the quorum needs update on %s", root)
	}
	if err := s.c.Election.Check(); err != nil {
		return "", NotLeaderStatus(err)
	}
	return role, nil
}

// NotLeaderStatus turns an error wrapping cluster.ErrNotLeader into the
// gRPC status every service answers a write on a Standby with:
// FailedPrecondition naming the Leader (ErrorInfo reason "NOT_LEADER",
// metadata leader_name, leader_url, leader_grpc_addr), or Unavailable while
// no Leader is elected. For any other error it returns nil.
func NotLeaderStatus(err error) error {
	var nle *cluster.NotLeaderError
	if !errors.As(err, &nle) {
		return nil
	}
	code := codes.FailedPrecondition
	md := map[string]string{}
	if nle.Known {
		md["leader_name"], md["leader_url"], md["leader_grpc_addr"] = nle.Leader.Name, nle.Leader.URL, nle.Leader.GRPCAddr
	} else {
		code = codes.Unavailable
	}
	st := status.New(code, nle.Error())
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: "NOT_LEADER", Domain: "sower", Metadata: md}); derr == nil {
		st = d
	}
	return st.Err()
}

// toStatus is the one place cluster errors become gRPC codes.
func (s *Service) toStatus(what string, err error) error {
	if st := NotLeaderStatus(err); st != nil {
		return st
	}
	switch {
	case errors.Is(err, cluster.ErrTokenInvalid), errors.Is(err, cluster.ErrTokenExpired),
		errors.Is(err, cluster.ErrNotClusterMember), errors.Is(err, cluster.ErrCertMismatch):
		s.c.Logger.Info(what+" refused", "reason", err.Error())
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, cluster.ErrMemberNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, cluster.ErrMemberExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, cluster.ErrBadPeerURL):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, cluster.ErrWouldLoseQuorum), errors.Is(err, cluster.ErrIsLeader), errors.Is(err, cluster.ErrBadTransferee),
		errors.Is(err, cluster.ErrLearnerNotReady), errors.Is(err, cluster.ErrNotLearner):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, cluster.ErrUnhealthy), errors.Is(err, cluster.ErrJoinInProgress):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.c.Logger.Error(what, "err", err)
	return status.Error(codes.Internal, "could not "+what+"; the server log has the details")
}

func membersToProto(ms []cluster.Member) []*sowerv1.Member {
	out := make([]*sowerv1.Member, len(ms))
	for i, m := range ms {
		out[i] = &sowerv1.Member{
			Id: strconv.FormatUint(m.ID, 16), Name: m.Name, Role: RoleToProto(m.Role),
			Healthy: m.Reachable, Error: m.Err,
			RaftIndex: m.RaftIndex, AppliedIndex: m.AppliedIndex, RaftTerm: m.RaftTerm, Lag: m.Lag,
			RaftLeader: m.RaftLeader, PeerUrls: m.PeerURLs, ClientUrls: m.ClientURLs, DbSizeBytes: m.DBSize,
		}
	}
	return out
}

// RoleToProto converts a role.
func RoleToProto(r cluster.Role) sowerv1.Role {
	switch r {
	case cluster.RoleLeader:
		return sowerv1.Role_ROLE_LEADER
	case cluster.RoleStandby:
		return sowerv1.Role_ROLE_STANDBY
	case cluster.RoleLearner:
		return sowerv1.Role_ROLE_LEARNER
	case cluster.RoleFollower:
		return sowerv1.Role_ROLE_FOLLOWER
	}
	return sowerv1.Role_ROLE_UNSPECIFIED
}
