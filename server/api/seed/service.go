// Package seed implements sower.v1.SeedService over the seed package's
// Issuer: it takes the caller's identity from the context, converts
// requests and records, and maps the seed package's errors to gRPC codes in
// one place (toStatus).
package seed

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sowerproject/sower/authn"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/seed"
	"github.com/sowerproject/sower/server/api/rpcctx"
)

// Config holds the service's dependencies.
type Config struct {
	Account string
	Issuer  *seed.Issuer
	// Allowed decides list and revoke: `update` on the seed webservice.
	Allowed func(role, privilege, resource string) bool
	Logger  *slog.Logger
}

// Service implements sowerv1.SeedServiceServer.
type Service struct {
	sowerv1.UnsafeSeedServiceServer
	c Config
}

// New checks the dependencies.
func New(c Config) (*Service, error) {
	if c.Issuer == nil || c.Allowed == nil || c.Account == "" {
		return nil, errors.New("seed: Account, Issuer and Allowed are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{c: c}, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { sowerv1.RegisterSeedServiceServer(g, s) }

// RegisterGateway maps the /v1 REST paths.
func (s *Service) RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	return sowerv1.RegisterSeedServiceHandlerClient(ctx, mux, sowerv1.NewSeedServiceClient(conn))
}

func (s *Service) caller(ctx context.Context, account string) (authn.Identity, error) {
	id, err := rpcctx.Caller(ctx)
	if err != nil {
		return authn.Identity{}, err
	}
	if account != "" && account != s.c.Account {
		return authn.Identity{}, status.Errorf(codes.NotFound, "account %q is not served here", account)
	}
	return id, nil
}

// IssueFollowerSeed issues a Follower seed.
func (s *Service) IssueFollowerSeed(ctx context.Context, req *sowerv1.IssueFollowerSeedRequest) (*sowerv1.IssueFollowerSeedResponse, error) {
	id, err := s.caller(ctx, req.GetAccount())
	if err != nil {
		return nil, err
	}
	iss, err := s.c.Issuer.IssueFollower(ctx, seed.Request{
		Requester: id.RoleID(), From: rpcctx.PeerAddr(ctx), Recipient: req.GetRecipient(), Hostnames: req.GetHostnames(),
	})
	if err != nil {
		return nil, s.toStatus("issue Follower seed", id, err)
	}
	s.c.Logger.Info("seed issued", "kind", "follower", "seed_id", iss.Record.ID, "requester", id.RoleID(), "hostnames", iss.Record.Hostnames)
	return &sowerv1.IssueFollowerSeedResponse{Seed: issuedToProto(iss)}, nil
}

// IssueStandbySeed issues a Standby seed.
func (s *Service) IssueStandbySeed(ctx context.Context, req *sowerv1.IssueStandbySeedRequest) (*sowerv1.IssueStandbySeedResponse, error) {
	id, err := s.caller(ctx, req.GetAccount())
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, 0, len(req.GetIpAddresses()))
	for _, a := range req.GetIpAddresses() {
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, status.Errorf(codes.InvalidArgument, "ip_addresses: %q is not an IP address", a)
		}
		ips = append(ips, ip)
	}
	iss, err := s.c.Issuer.IssueStandby(ctx, seed.Request{
		Requester: id.RoleID(), From: rpcctx.PeerAddr(ctx), Recipient: req.GetRecipient(),
		Host: req.GetHost(), DNSNames: req.GetDnsNames(), IPs: ips,
	})
	if err != nil {
		return nil, s.toStatus("issue Standby seed", id, err)
	}
	s.c.Logger.Info("seed issued", "kind", "standby", "seed_id", iss.Record.ID, "requester", id.RoleID(), "host", iss.Record.Host)
	return &sowerv1.IssueStandbySeedResponse{Seed: issuedToProto(iss)}, nil
}

func (s *Service) mayManage(ctx context.Context) (authn.Identity, error) {
	id, err := s.caller(ctx, "")
	if err != nil {
		return id, err
	}
	ws := s.c.Account + ":" + seed.WebserviceID
	if !s.c.Allowed(id.RoleID(), "update", ws) {
		return id, status.Errorf(codes.PermissionDenied, "listing and revoking seeds needs update on %s", ws)
	}
	return id, nil
}

// ListSeeds returns the seed records.
func (s *Service) ListSeeds(ctx context.Context, _ *sowerv1.ListSeedsRequest) (*sowerv1.ListSeedsResponse, error) {
	id, err := s.mayManage(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := s.c.Issuer.List(ctx)
	if err != nil {
		return nil, s.toStatus("list seeds", id, err)
	}
	out := &sowerv1.ListSeedsResponse{}
	for _, r := range recs {
		out.Seeds = append(out.Seeds, recordToProto(r))
	}
	return out, nil
}

// RevokeSeed revokes a seed.
func (s *Service) RevokeSeed(ctx context.Context, req *sowerv1.RevokeSeedRequest) (*sowerv1.RevokeSeedResponse, error) {
	id, err := s.mayManage(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.c.Issuer.Revoke(ctx, req.GetId(), id.RoleID())
	if err != nil {
		return nil, s.toStatus("revoke seed", id, err)
	}
	s.c.Logger.Info("seed revoked", "seed_id", r.ID, "by", id.RoleID(), "serials", r.Serials)
	return &sowerv1.RevokeSeedResponse{Record: recordToProto(r)}, nil
}

// toStatus is the one place seed errors become gRPC codes. Policy refusals
// carry their rule to the caller; anything else is logged and answered
// generically.
func (s *Service) toStatus(what string, id authn.Identity, err error) error {
	switch {
	case errors.Is(err, seed.ErrForbidden), errors.Is(err, seed.ErrHostname), errors.Is(err, seed.ErrNotClusterMember):
		s.c.Logger.Info("seed request refused", "requester", id.RoleID(), "reason", err.Error())
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, seed.ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, seed.ErrPlainDisabled):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, seed.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, seed.ErrBusy):
		// 503 with Retry-After (the REST front ends read the RetryInfo).
		st := status.New(codes.Unavailable, err.Error())
		if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(seed.BusyRetryAfter)}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.c.Logger.Error(what, "requester", id.RoleID(), "err", err)
	return status.Error(codes.Internal, "could not "+what+"; the server log has the details")
}

func issuedToProto(i *seed.Issued) *sowerv1.IssuedSeed {
	return &sowerv1.IssuedSeed{Archive: i.Archive, Record: recordToProto(i.Record), CaPin: i.CAPin.String()}
}

func recordToProto(r seed.Record) *sowerv1.SeedRecord {
	out := &sowerv1.SeedRecord{
		Id: r.ID, Kind: string(r.Kind), Requester: r.Requester, Host: r.Host, Node: r.Node,
		Hostnames: r.Hostnames, Serials: r.Serials, Sealed: r.Sealed, From: r.From,
		IssuedAt: r.IssuedAt.Format(time.RFC3339), ExpiresAt: r.ExpiresAt.Format(time.RFC3339), RevokedBy: r.RevokedBy,
	}
	if !r.RevokedAt.IsZero() {
		out.RevokedAt = r.RevokedAt.Format(time.RFC3339)
	}
	return out
}
