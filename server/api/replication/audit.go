package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sowerproject/sower/audit"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// PushAuditMethod is the full method name of PushAudit: authenticated by
// the Follower's certificate, as Follow.
const PushAuditMethod = "/sower.v1.ReplicationService/PushAudit"

// Limits on one PushAudit batch; the Follower's forwarder stays within
// them.
const (
	MaxPushEvents = 1000
	MaxPushBytes  = 4 << 20
)

// PushAudit stores a Follower's audit events in the trail. Every event
// must validate and name the calling Follower as its node.
func (s *Service) PushAudit(ctx context.Context, req *sowerv1.PushAuditRequest) (*sowerv1.PushAuditResponse, error) {
	leaf, err := s.followerCert(ctx)
	if err != nil {
		return nil, err
	}
	if s.c.Audit == nil {
		return nil, status.Error(codes.Unavailable, "this node keeps no audit trail; push to another quorum node")
	}
	pushed := req.GetEvents()
	if len(pushed) > MaxPushEvents {
		return nil, status.Errorf(codes.InvalidArgument, "the batch holds %d audit events; at most %d (MaxPushEvents) in one PushAudit", len(pushed), MaxPushEvents)
	}
	if n := proto.Size(req); n > MaxPushBytes {
		return nil, status.Errorf(codes.InvalidArgument, "the batch is %d bytes; at most %d (MaxPushBytes) in one PushAudit", n, MaxPushBytes)
	}
	name := leaf.Subject.CommonName
	events := make([]audit.Event, len(pushed))
	for i, p := range pushed {
		e := EventFromProto(p)
		if e.Node != name {
			return nil, status.Errorf(codes.PermissionDenied, "audit event %d (%s) names node %q; a Follower pushes only its own events (its certificate names %q)", i, e.ID, e.Node, name)
		}
		if err := e.Validate(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "audit event %d: %v", i, err)
		}
		events[i] = e
	}
	if len(events) == 0 {
		return &sowerv1.PushAuditResponse{}, nil
	}
	if err := s.c.Audit.Append(ctx, events); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, status.FromContextError(err).Err()
		}
		s.c.Logger.Warn("audit events from a Follower were not stored", "follower", name, "events", len(events), "err", err)
		return nil, status.Error(codes.Unavailable, "the audit trail did not store the batch; send it again")
	}
	return &sowerv1.PushAuditResponse{Stored: int32(len(events))}, nil
}

// EventToProto converts an audit event for PushAudit.
func EventToProto(e audit.Event) *sowerv1.PushedAuditEvent {
	return &sowerv1.PushedAuditEvent{
		Id: e.ID, AtUnixNano: e.At.UnixNano(), Node: e.Node, Kind: string(e.Kind), Action: e.Action, Outcome: e.Outcome,
		Identity: e.Identity, Resource: e.Resource, Version: int64(e.Version), Source: e.Source,
		Authenticator: e.Authenticator, Reason: e.Reason, Count: e.Count, LastUnixNano: unixNano(e.Last),
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// EventFromProto converts a pushed event back.
func EventFromProto(p *sowerv1.PushedAuditEvent) audit.Event {
	e := audit.Event{
		ID: p.GetId(), Node: p.GetNode(), Kind: audit.Kind(p.GetKind()), Action: p.GetAction(), Outcome: p.GetOutcome(),
		Identity: p.GetIdentity(), Resource: p.GetResource(), Version: int(p.GetVersion()), Source: p.GetSource(),
		Authenticator: p.GetAuthenticator(), Reason: p.GetReason(), Count: p.GetCount(),
	}
	if p.GetAtUnixNano() != 0 {
		e.At = time.Unix(0, p.GetAtUnixNano()).UTC()
	}
	if p.GetLastUnixNano() != 0 {
		e.Last = time.Unix(0, p.GetLastUnixNano()).UTC()
	}
	return e
}

// ErrPushRefused marks a batch the quorum node refused for what it holds
// (not for being unreachable): sending it again will not help.
var ErrPushRefused = errors.New("replication: audit batch refused")

// Push sends one batch of the Follower's events over conn's service.
func Push(ctx context.Context, cli sowerv1.ReplicationServiceClient, events []audit.Event) error {
	req := &sowerv1.PushAuditRequest{Events: make([]*sowerv1.PushedAuditEvent, len(events))}
	for i, e := range events {
		req.Events[i] = EventToProto(e)
	}
	resp, err := cli.PushAudit(ctx, req)
	if err != nil {
		switch status.Code(err) {
		case codes.InvalidArgument, codes.PermissionDenied:
			return fmt.Errorf("%w: %v", ErrPushRefused, err)
		}
		return fmt.Errorf("replication: push audit: %w", err)
	}
	if int(resp.GetStored()) != len(events) {
		return fmt.Errorf("replication: push audit: %d of %d events stored", resp.GetStored(), len(events))
	}
	return nil
}
