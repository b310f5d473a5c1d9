// Package ca implements sower.v1.CAService: the CA bundle, certificate
// revocation and data key rotation. Mutations need `update` on the
// account's root policy, which only the admin (its owner) holds by default.
package ca

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
	"github.com/sowerproject/sower/server/etcdstore"
)

// Revocations stores revoked serials.
type Revocations interface {
	Revoke(ctx context.Context, serial, by, reason string, at time.Time) (etcdstore.Revocation, error)
	List(ctx context.Context) ([]etcdstore.Revocation, error)
}

// RotateResult reports a data key rotation.
type RotateResult struct {
	Version           uint32
	Members           []string
	Resealed, Current int64
}

// Config holds the service's dependencies.
type Config struct {
	Account     string
	Bundle      func() (pem []byte, pin string)
	Revocations Revocations
	Rotate      func(ctx context.Context) (RotateResult, error)
	Allowed     func(role, privilege, resource string) bool
	Logger      *slog.Logger
}

// Service implements sowerv1.CAServiceServer.
type Service struct {
	sowerv1.UnsafeCAServiceServer
	c Config
}

// New checks the dependencies.
func New(c Config) (*Service, error) {
	if c.Account == "" || c.Bundle == nil || c.Revocations == nil || c.Rotate == nil || c.Allowed == nil {
		return nil, errors.New("ca: Account, Bundle, Revocations, Rotate and Allowed are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{c: c}, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { sowerv1.RegisterCAServiceServer(g, s) }

// RegisterGateway maps the /v1 REST paths.
func (s *Service) RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	return sowerv1.RegisterCAServiceHandlerClient(ctx, mux, sowerv1.NewCAServiceClient(conn))
}

func (s *Service) admin(ctx context.Context) (authn.Identity, error) {
	id, err := rpcctx.Caller(ctx)
	if err != nil {
		return id, err
	}
	root := s.c.Account + ":policy:root"
	if !s.c.Allowed(id.RoleID(), "update", root) {
		return id, status.Errorf(codes.PermissionDenied, "this needs update on %s", root)
	}
	return id, nil
}

// GetCABundle returns the bundle and pin.
func (s *Service) GetCABundle(context.Context, *sowerv1.GetCABundleRequest) (*sowerv1.GetCABundleResponse, error) {
	pem, pin := s.c.Bundle()
	return &sowerv1.GetCABundleResponse{Bundle: string(pem), Pin: pin}, nil
}

// RevokeCertificate revokes a serial.
func (s *Service) RevokeCertificate(ctx context.Context, req *sowerv1.RevokeCertificateRequest) (*sowerv1.RevokeCertificateResponse, error) {
	id, err := s.admin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := etcdstore.NormalizeSerial(req.GetSerial()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	r, err := s.c.Revocations.Revoke(ctx, req.GetSerial(), id.RoleID(), req.GetReason(), time.Now().UTC())
	if err != nil {
		s.c.Logger.Error("revoke certificate", "err", err)
		return nil, status.Error(codes.Unavailable, "cannot store the revocation right now; try again")
	}
	s.c.Logger.Info("certificate revoked", "serial", r.Serial, "by", id.RoleID())
	return &sowerv1.RevokeCertificateResponse{Revocation: toProto(r)}, nil
}

// ListRevocations lists revocations.
func (s *Service) ListRevocations(ctx context.Context, _ *sowerv1.ListRevocationsRequest) (*sowerv1.ListRevocationsResponse, error) {
	if _, err := s.admin(ctx); err != nil {
		return nil, err
	}
	rs, err := s.c.Revocations.List(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, "cannot read revocations right now; try again")
	}
	out := &sowerv1.ListRevocationsResponse{}
	for _, r := range rs {
		out.Revocations = append(out.Revocations, toProto(r))
	}
	return out, nil
}

// RotateDataKey rotates the data key on every member.
func (s *Service) RotateDataKey(ctx context.Context, _ *sowerv1.RotateDataKeyRequest) (*sowerv1.RotateDataKeyResponse, error) {
	id, err := s.admin(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.c.Rotate(ctx)
	if err != nil {
		s.c.Logger.Error("rotate data key", "by", id.RoleID(), "err", err)
		return nil, status.Error(codes.Aborted, err.Error())
	}
	return &sowerv1.RotateDataKeyResponse{Version: res.Version, Members: res.Members, Resealed: res.Resealed, Current: res.Current}, nil
}

func toProto(r etcdstore.Revocation) *sowerv1.Revocation {
	return &sowerv1.Revocation{Serial: r.Serial, RevokedAt: r.RevokedAt.Format(time.RFC3339), RevokedBy: r.RevokedBy, Reason: r.Reason}
}
