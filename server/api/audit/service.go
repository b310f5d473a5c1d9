// Package audit implements sower.v1.AuditService over the quorum's audit
// trail (etcdstore.AuditTrail): it checks the caller's `read` on the audit
// webservice, converts filters and events, and maps the trail's errors to
// gRPC codes.
package audit

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/audit"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
	"github.com/sowerproject/sower/server/etcdstore"
)

// WebserviceID is the Conjur resource whose `read` privilege lets a role
// query the audit trail, relative to the account.
const WebserviceID = "webservice:sower/audit"

// Privilege is the privilege on WebserviceID the RPCs need.
const Privilege = "read"

// Config holds the service's dependencies.
type Config struct {
	Account string
	Trail   *etcdstore.AuditTrail
	// Allowed answers the policy graph's permission check.
	Allowed func(role, privilege, resource string) bool
	Logger  *slog.Logger
}

// Service implements sowerv1.AuditServiceServer.
type Service struct {
	sowerv1.UnsafeAuditServiceServer
	c Config
}

// New checks the dependencies.
func New(c Config) (*Service, error) {
	if c.Account == "" || c.Trail == nil || c.Allowed == nil {
		return nil, errors.New("audit: Account, Trail and Allowed are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{c: c}, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { sowerv1.RegisterAuditServiceServer(g, s) }

// RegisterGateway maps the /v1 REST paths.
func (s *Service) RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	return sowerv1.RegisterAuditServiceHandlerClient(ctx, mux, sowerv1.NewAuditServiceClient(conn))
}

func (s *Service) authorize(ctx context.Context) (string, error) {
	id, err := rpcctx.Caller(ctx)
	if err != nil {
		return "", err
	}
	ws := s.c.Account + ":" + WebserviceID
	if !s.c.Allowed(id.RoleID(), Privilege, ws) {
		return "", status.Errorf(codes.PermissionDenied, "querying the audit trail needs %s on %s", Privilege, ws)
	}
	return id.RoleID(), nil
}

// ListAuditEvents returns one page of events, newest first.
func (s *Service) ListAuditEvents(ctx context.Context, req *sowerv1.ListAuditEventsRequest) (*sowerv1.ListAuditEventsResponse, error) {
	role, err := s.authorize(ctx)
	if err != nil {
		return nil, err
	}
	q, err := queryFromProto(req.GetFilter())
	if err != nil {
		return nil, err
	}
	if n := req.GetPageSize(); n < 0 || n > etcdstore.TrailMaxPage {
		return nil, status.Errorf(codes.InvalidArgument, "page_size %d is out of range: give 1 to %d (the limit), or 0 for the default 100", n, etcdstore.TrailMaxPage)
	}
	q.Limit = int(req.GetPageSize())
	q.PageToken = req.GetPageToken()
	evs, next, err := s.c.Trail.List(ctx, q)
	if err != nil {
		return nil, s.toStatus("list audit events", role, err)
	}
	out := &sowerv1.ListAuditEventsResponse{NextPageToken: next, Events: make([]*sowerv1.AuditEvent, 0, len(evs))}
	for _, e := range evs {
		out.Events = append(out.Events, EventToProto(e))
	}
	return out, nil
}

// WatchAuditEvents streams events as they are stored.
func (s *Service) WatchAuditEvents(req *sowerv1.WatchAuditEventsRequest, stream grpc.ServerStreamingServer[sowerv1.WatchAuditEventsResponse]) error {
	ctx := stream.Context()
	role, err := s.authorize(ctx)
	if err != nil {
		return err
	}
	q, err := queryFromProto(req.GetFilter())
	if err != nil {
		return err
	}
	err = s.c.Trail.Follow(ctx, q, req.GetFromStart(), func(e audit.Event) error {
		return stream.Send(&sowerv1.WatchAuditEventsResponse{Event: EventToProto(e)})
	})
	if err != nil && ctx.Err() == nil {
		return s.toStatus("watch audit events", role, err)
	}
	return nil
}

func (s *Service) toStatus(what, role string, err error) error {
	switch {
	case errors.Is(err, etcdstore.ErrBadPageToken):
		return status.Errorf(codes.InvalidArgument, "page_token: %v; pass a next_page_token from a previous answer, or none to start", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err
	}
	s.c.Logger.Error(what, "requester", role, "err", err)
	return status.Error(codes.Internal, "could not "+what+"; the server log has the details")
}

// queryFromProto checks and converts a filter.
func queryFromProto(f *sowerv1.AuditFilter) (etcdstore.Query, error) {
	q := etcdstore.Query{
		Kind: audit.Kind(f.GetKind()), Action: f.GetAction(), Identity: f.GetIdentity(),
		Resource: f.GetResource(), Node: f.GetNode(), Outcome: f.GetOutcome(),
	}
	if q.Kind != "" {
		known := false
		for _, k := range audit.Kinds {
			known = known || q.Kind == k
		}
		if !known {
			return q, status.Errorf(codes.InvalidArgument, "kind %q is unknown: give one of %v", q.Kind, audit.Kinds)
		}
	}
	if q.Outcome != "" && q.Outcome != audit.OutcomeSuccess && q.Outcome != audit.OutcomeFailure {
		return q, status.Errorf(codes.InvalidArgument, "outcome %q is neither %q nor %q", q.Outcome, audit.OutcomeSuccess, audit.OutcomeFailure)
	}
	var err error
	if q.Since, err = parseTime("since", f.GetSince()); err != nil {
		return q, err
	}
	if q.Until, err = parseTime("until", f.GetUntil()); err != nil {
		return q, err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, status.Errorf(codes.InvalidArgument, "since %s is not before until %s", f.GetSince(), f.GetUntil())
	}
	return q, nil
}

func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, status.Errorf(codes.InvalidArgument, "%s %q is not an RFC 3339 time (like 2026-01-02T15:04:05Z)", name, v)
	}
	return t, nil
}

// EventToProto converts an event.
func EventToProto(e audit.Event) *sowerv1.AuditEvent {
	out := &sowerv1.AuditEvent{
		Id: e.ID, At: e.At.UTC().Format(time.RFC3339Nano), Node: e.Node, Kind: string(e.Kind), Action: e.Action,
		Outcome: e.Outcome, Identity: e.Identity, Resource: e.Resource, Version: int32(e.Version), Source: e.Source,
		Authenticator: e.Authenticator, Reason: e.Reason, Count: e.Count,
	}
	if !e.Last.IsZero() {
		out.Last = e.Last.UTC().Format(time.RFC3339Nano)
	}
	return out
}
