// Package secrets implements sower.v1.SecretsService: secret values, which
// Conjur keeps in variables. It authorizes each call against the policy
// graph as Conjur does — a resource the caller cannot see is NotFound, one it
// sees without the privilege is PermissionDenied; `update` stores a value,
// `execute` reads one — and stores values through the etcd secret store,
// which seals them under the data key and keeps the latest 20 versions.
// Errors become gRPC codes in one function, toStatus.
//
// Nothing here caches values: every read goes to etcd, so a Standby answers
// what the quorum holds.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
	"github.com/sowerproject/sower/server/etcdstore"
)

// Store keeps the values; *etcdstore.Secrets implements it. A missing value
// or version is an error matching etcdstore.ErrNoSecret.
type Store interface {
	Put(ctx context.Context, resourceID, by string, value []byte) (int64, error)
	Get(ctx context.Context, resourceID string, version int64) ([]byte, int64, error)
	GetMany(ctx context.Context, resourceIDs []string) (map[string][]byte, error)
}

// Limits.
const (
	// MaxValueBytes bounds one value (Conjur sets no limit; etcd needs one).
	MaxValueBytes = 1 << 20
	// MaxBatch bounds the resources of one batch read.
	MaxBatch = 10000
	// MimeTypeAnnotation names the annotation whose value a read answers as
	// its content type, as Conjur does.
	MimeTypeAnnotation = "conjur/mime_type"
	defaultMimeType    = "application/octet-stream"
)

// Config holds the service's dependencies.
type Config struct {
	// Account is the cluster's account; requests for another are NotFound.
	Account string
	Store   Store
	// Graph returns the current policy graph.
	Graph  func() *policy.Graph
	Logger *slog.Logger
	// Audit records every secret read (success, and refusals for want of
	// execute); nil records nothing. It stamps the node, the ID and the
	// time.
	Audit audit.Recorder
}

// Service implements sowerv1.SecretsServiceServer.
type Service struct {
	sowerv1.UnsafeSecretsServiceServer
	c Config
}

// Errors of New.
var (
	ErrAccountRequired = errors.New("secrets service: Account is required")
	ErrStoreRequired   = errors.New("secrets service: Store is required")
	ErrGraphRequired   = errors.New("secrets service: Graph is required")
)

// New checks the dependencies and returns the service.
func New(c Config) (*Service, error) {
	switch {
	case c.Account == "":
		return nil, ErrAccountRequired
	case c.Store == nil:
		return nil, ErrStoreRequired
	case c.Graph == nil:
		return nil, ErrGraphRequired
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
func (s *Service) Register(g grpc.ServiceRegistrar) { sowerv1.RegisterSecretsServiceServer(g, s) }

// RegisterGateway maps the /v1 REST paths.
func (s *Service) RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	return sowerv1.RegisterSecretsServiceHandlerClient(ctx, mux, sowerv1.NewSecretsServiceClient(conn))
}

// notFound is Conjur's message for a record that does not exist (or that
// the caller cannot see).
func notFound(id policy.ID) error {
	kind := id.Kind
	if kind != "" {
		kind = strings.ToUpper(kind[:1]) + kind[1:]
	}
	return status.Errorf(codes.NotFound, "%s '%s' not found in account '%s'", kind, id.Name, id.Account)
}

// authorize finds a resource the caller sees and checks privilege on it.
func (s *Service) authorize(g *policy.Graph, caller, id policy.ID, privilege string) error {
	if !g.Visible(caller, id) {
		return notFound(id)
	}
	if !g.Allowed(caller, privilege, id) {
		return status.Errorf(codes.PermissionDenied, "%s needs %s on %s", caller, privilege, id)
	}
	return nil
}

func (s *Service) resource(account, kind, identifier string) (policy.ID, error) {
	if kind == "" || identifier == "" {
		return policy.ID{}, status.Error(codes.InvalidArgument, "name the resource by kind and identifier, for example variable and db/password")
	}
	id := policy.NewID(account, kind, identifier)
	if account != s.c.Account {
		return policy.ID{}, notFound(id)
	}
	return id, nil
}

// SetSecret stores a new version of a value; it needs update.
func (s *Service) SetSecret(ctx context.Context, req *sowerv1.SetSecretRequest) (*sowerv1.SetSecretResponse, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return nil, err
	}
	id, err := s.resource(req.GetAccount(), req.GetKind(), req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	if err := s.authorize(s.c.Graph(), caller, id, "update"); err != nil {
		return nil, err
	}
	if len(req.GetValue()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "'value' may not be empty")
	}
	if len(req.GetValue()) > MaxValueBytes {
		return nil, status.Errorf(codes.InvalidArgument, "the value is %d bytes; at most %d are stored", len(req.GetValue()), MaxValueBytes)
	}
	v, err := s.c.Store.Put(ctx, id.String(), caller.String(), req.GetValue())
	if err != nil {
		return nil, s.toStatus(ctx, "store the value", id, 0, err)
	}
	s.c.Logger.InfoContext(ctx, "secret value stored", "resource", id.String(), "version", v, "by", caller.String())
	return &sowerv1.SetSecretResponse{Version: v}, nil
}

// GetSecret reads a value; it needs execute.
func (s *Service) GetSecret(ctx context.Context, req *sowerv1.GetSecretRequest) (*sowerv1.GetSecretResponse, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return nil, err
	}
	id, err := s.resource(req.GetAccount(), req.GetKind(), req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	g := s.c.Graph()
	if err := s.authorize(g, caller, id, "execute"); err != nil {
		if status.Code(err) == codes.PermissionDenied {
			s.audit(ctx, "read", caller, id.String(), int(req.GetVersion()), "no execute privilege")
		}
		return nil, err
	}
	if req.GetVersion() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "version %d is not a version; versions count from 1", req.GetVersion())
	}
	value, v, err := s.c.Store.Get(ctx, id.String(), req.GetVersion())
	if err != nil {
		return nil, s.toStatus(ctx, "read the value", id, req.GetVersion(), err)
	}
	s.audit(ctx, "read", caller, id.String(), int(v), "")
	mime := defaultMimeType
	if info, ok := g.Resource(id); ok {
		for _, a := range info.Annotations {
			if a.Name == MimeTypeAnnotation && a.Value != "" {
				mime = a.Value
			}
		}
	}
	return &sowerv1.GetSecretResponse{Value: value, Version: v, MimeType: mime}, nil
}

// BatchGetSecrets reads several latest values, all or nothing; it needs
// execute on each.
func (s *Service) BatchGetSecrets(ctx context.Context, req *sowerv1.BatchGetSecretsRequest) (*sowerv1.BatchGetSecretsResponse, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return nil, err
	}
	raw := req.GetVariableIds()
	if len(raw) == 0 {
		return nil, status.Error(codes.InvalidArgument, "variable_ids must name at least one variable, as account:variable:id separated by commas")
	}
	if len(raw) > MaxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "%d variable_ids; at most %d in one request", len(raw), MaxBatch)
	}
	g := s.c.Graph()
	ids := make([]string, 0, len(raw))
	seen := make(map[string]bool, len(raw))
	// As Conjur: every variable found must allow execute (403), and only
	// then is one missing 404. What the caller cannot see counts as
	// missing, as for one value: a batch must not tell which hidden
	// variables exist.
	missing := ""
	for _, r := range raw {
		id, err := policy.ParseID(r)
		if err != nil || id.Account != s.c.Account || !g.Visible(caller, id) {
			if missing == "" {
				missing = r
			}
			continue
		}
		if seen[id.String()] {
			continue
		}
		seen[id.String()] = true
		if !g.Allowed(caller, "execute", id) {
			s.audit(ctx, "batch-read", caller, id.String(), 0, "no execute privilege")
			return nil, status.Errorf(codes.PermissionDenied, "%s needs execute on %s", caller, id)
		}
		ids = append(ids, id.String())
	}
	if missing != "" {
		return nil, status.Errorf(codes.NotFound, "CONJ00076E Variable %s is empty or not found.", missing)
	}
	values, err := s.c.Store.GetMany(ctx, ids)
	if err != nil {
		return nil, s.toStatus(ctx, "read the values", policy.ID{}, 0, err)
	}
	for _, id := range ids {
		s.audit(ctx, "batch-read", caller, id, 0, "")
	}
	return &sowerv1.BatchGetSecretsResponse{Values: values}, nil
}

// audit records a read of resource (version 0: the latest, in a batch)
// by caller; a reason makes it a refusal. The value is never recorded.
func (s *Service) audit(ctx context.Context, action string, caller policy.ID, resource string, version int, reason string) {
	e := audit.Event{Kind: audit.KindSecretRead, Action: action, Outcome: audit.OutcomeSuccess,
		Identity: caller.String(), Resource: resource, Version: version, Source: rpcctx.PeerAddr(ctx)}
	if reason != "" {
		e.Outcome, e.Reason = audit.OutcomeFailure, reason
	}
	s.c.Audit.Record(e)
}

// toStatus turns a store error into the caller's status. An unknown error is
// Internal with a generic message; its detail is logged.
func (s *Service) toStatus(ctx context.Context, op string, id policy.ID, version int64, err error) error {
	var miss *etcdstore.MissingSecretError
	switch {
	case errors.As(err, &miss) && miss.Version > 0:
		return status.Errorf(codes.NotFound, "Requested version does not exist: %s has no version %d (the latest %d are kept)", miss.ResourceID, miss.Version, etcdstore.DefaultSecretVersionsKept)
	case errors.As(err, &miss):
		return status.Errorf(codes.NotFound, "CONJ00076E Variable %s is empty or not found.", miss.ResourceID)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "request timed out")
	}
	s.c.Logger.ErrorContext(ctx, "secrets service failed", "op", op, "resource", id.String(), "version", version, "err", err)
	return status.Error(codes.Internal, fmt.Sprintf("could not %s; the server log has the details", op))
}
