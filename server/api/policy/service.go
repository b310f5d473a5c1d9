// Package policy implements sower.v1.PolicyService: Conjur policy loads
// (append, update, replace, dry run, and repository syncs as one load) and
// the questions Conjur's REST API answers about the permission model
// (permission checks, resource listings, permitted roles, role members and
// memberships).
//
// It is the adapter between the policy engine (package policy), its etcd
// store (etcdstore.Policies) and the API: it authorizes each call against
// the in-memory graph, plans loads, issues the API keys of the users and
// hosts a load creates, and converts between domain and proto types. Domain
// errors become gRPC codes in one function, toStatus.
//
// A load, step by step:
//
//  1. Begin: the store's snapshot, once the graph holds every stored load.
//  2. Authorize: `create` (append) or `update` (update, replace) on each
//     target policy. A policy the caller cannot see is NotFound.
//  3. Plan (Graph.Plan, or Graph.PlanAll for a sync); errors in the text are
//     InvalidArgument with ErrorInfo reason "policy_invalid".
//  4. Prepare the new users' and hosts' API keys (nothing stored yet).
//  5. Commit: facts, credentials and versions in one transaction compared
//     with the snapshot; a conflict plans again (up to three times), then is
//     Aborted with reason "policy_conflict".
//
// The service also implements the authn service's Authorizer (Allowed) from
// the same graph.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/etcdstore"
)

// Store persists loads and holds the graph; etcdstore.Policies implements it.
type Store interface {
	// Graph returns the current graph.
	Graph() *policy.Graph
	// Begin returns a snapshot to plan against.
	Begin(ctx context.Context) (etcdstore.PolicySnapshot, error)
	// Commit stores a planned load or fails with
	// etcdstore.ErrPolicyConflict.
	Commit(ctx context.Context, snap etcdstore.PolicySnapshot, c etcdstore.PolicyCommit) ([]etcdstore.PolicyVersion, int64, error)
	// Versions returns a policy's versions, oldest first.
	Versions(ctx context.Context, policyID string) ([]etcdstore.PolicyVersion, error)
}

// KeyIssuer prepares API keys without storing them; *apikey.Manager
// implements it.
type KeyIssuer interface {
	Prepare(roleID string) (key string, cred *apikey.Credential, err error)
}

// Config holds the service's dependencies.
type Config struct {
	// Account is the cluster's account; requests for another are NotFound.
	Account string
	Store   Store
	Keys    KeyIssuer
	Logger  *slog.Logger
	// LoadTimeout is the longest one load may hold this node's policy lock,
	// from taking it to its commit: a load still planning or writing then
	// is stopped and stores nothing, so one load cannot hold every other
	// load back for longer. Zero means DefaultLoadTimeout.
	LoadTimeout time.Duration
	// Secrets, when set, lists a variable's value versions for GetResource
	// (Conjur shows them as the resource's "secrets").
	Secrets SecretVersions
	// HostFactoryTokens, when set, keeps host factory tokens: without it
	// (a Follower) the host factory RPCs are Unimplemented and host
	// factories show no tokens.
	HostFactoryTokens HostFactoryTokens
}

// SecretVersions lists the kept versions of a resource's value;
// *etcdstore.Secrets implements it.
type SecretVersions interface {
	Versions(ctx context.Context, resourceID string) ([]int64, error)
}

// BatchSecretVersions is what a SecretVersions may also do: list the
// versions of many resources at once (for listings); *etcdstore.Secrets
// implements it. Without it a listing reads each variable's versions.
type BatchSecretVersions interface {
	VersionsOf(ctx context.Context, resourceIDs []string) (map[string][]int64, error)
}

// DefaultLoadTimeout is Config.LoadTimeout's default: thirty times what
// replacing 100,000 hosts takes (docs/benchmarks.md).
const DefaultLoadTimeout = 5 * time.Minute

// ErrLoadTimeout is the cause of a load stopped at Config.LoadTimeout.
var ErrLoadTimeout = errors.New("policy service: the load ran past the policy load timeout")

// Service implements sowerv1.PolicyServiceServer.
type Service struct {
	sowerv1.UnsafePolicyServiceServer
	c Config
	// loadLock runs this node's loads one at a time (etcd's compare guards
	// against other nodes). It is a channel so that a load waiting for it
	// gives up when its request ends.
	loadLock chan struct{}
}

// Errors of New.
var (
	ErrAccountRequired = errors.New("policy service: Account is required")
	ErrStoreRequired   = errors.New("policy service: Store is required")
	ErrKeysRequired    = errors.New("policy service: Keys is required")
)

// New checks the dependencies and returns the service.
func New(c Config) (*Service, error) {
	switch {
	case c.Account == "":
		return nil, ErrAccountRequired
	case c.Store == nil:
		return nil, ErrStoreRequired
	case c.Keys == nil:
		return nil, ErrKeysRequired
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LoadTimeout <= 0 {
		c.LoadTimeout = DefaultLoadTimeout
	}
	return &Service{c: c, loadLock: make(chan struct{}, 1)}, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { sowerv1.RegisterPolicyServiceServer(g, s) }

// RegisterGateway maps the /v1 REST paths.
func (s *Service) RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	return sowerv1.RegisterPolicyServiceHandlerClient(ctx, mux, sowerv1.NewPolicyServiceClient(conn))
}

// Allowed answers whether roleID may exercise privilege on resourceID, from
// the graph: the Authorizer other services (authn, seed) use.
func (s *Service) Allowed(_ context.Context, roleID, privilege, resourceID string) (bool, error) {
	role, err := policy.ParseID(roleID)
	if err != nil {
		return false, err
	}
	res, err := policy.ParseID(resourceID)
	if err != nil {
		return false, err
	}
	return s.c.Store.Graph().Allowed(role, privilege, res), nil
}

// checkAccount refuses another account than the cluster's.
func (s *Service) checkAccount(account string) error {
	if account != s.c.Account {
		return status.Errorf(codes.NotFound, "account %q not found: this cluster serves account %q", account, s.c.Account)
	}
	return nil
}

// ref builds an id from a request's kind and identifier.
func (s *Service) ref(kind, identifier string) (policy.ID, error) {
	if kind == "" || identifier == "" {
		return policy.ID{}, status.Error(codes.InvalidArgument, "name the record by kind and identifier, for example variable and db/password")
	}
	return policy.NewID(s.c.Account, kind, identifier), nil
}

// roleRef parses a role parameter: "kind:identifier" or a full id.
func (s *Service) roleRef(r string) (policy.ID, error) {
	id, err := policy.ParseRef(r, s.c.Account, "")
	if err != nil {
		return policy.ID{}, status.Errorf(codes.InvalidArgument, "role %q: write kind:identifier or account:kind:identifier, for example host:myapp", r)
	}
	return id, nil
}

// Reasons carried in errdetails.ErrorInfo; the Conjur adapter uses them as
// Conjur's error codes.
const (
	// ReasonValidationFailed is a policy text that fails Conjur's
	// validation of the policy version (empty, or deletions in an append);
	// metadata "target" names the field and "message" Conjur's words.
	ReasonValidationFailed = "validation_failed"
	ReasonPolicyInvalid    = "policy_invalid"
	ReasonPolicyConflict   = "policy_conflict"
	errorDomain            = "sower.policy"
)

// toStatus turns a domain error into the gRPC status the caller sees. An
// unknown error is Internal with a generic message; its detail is logged.
func (s *Service) toStatus(ctx context.Context, op string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	var perr *policy.Error
	switch {
	case errors.Is(err, policy.ErrDeletionInAppend):
		return validationFailed(err.Error(), "policy_text", "may not contain deletion statements")
	case errors.As(err, &perr):
		st := status.New(codes.InvalidArgument, err.Error())
		md := map[string]string{"filename": perr.Filename, "line": strconv.Itoa(perr.Line), "column": strconv.Itoa(perr.Column), "message": perr.Message}
		if perr.IsParse() {
			md["parse"] = "true"
		}
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonPolicyInvalid, Domain: errorDomain, Metadata: md}); derr == nil {
			return d.Err()
		}
		return st.Err()
	case errors.Is(err, policy.ErrInvalid):
		return withReason(codes.InvalidArgument, ReasonPolicyInvalid, err.Error())
	case errors.Is(err, policy.ErrPolicyNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, policy.ErrInvalidID):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, etcdstore.ErrPolicyConflict):
		return withReason(codes.Aborted, ReasonPolicyConflict, "concurrent policy loads kept changing the policies; retry the load")
	case errors.Is(err, ErrLoadTimeout):
		return status.Errorf(codes.DeadlineExceeded, "the load ran longer than the policy load timeout (%s, the node's --policy-load-timeout) and was stopped; nothing was stored: split it into smaller loads or raise the limit", s.c.LoadTimeout)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "request timed out; a large load may need a longer client timeout")
	}
	s.c.Logger.ErrorContext(ctx, "policy service failed", "op", op, "err", err)
	return status.Error(codes.Internal, fmt.Sprintf("%s failed; the server log has the details", op))
}

func withReason(c codes.Code, reason, msg string) error {
	st := status.New(c, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// validationFailed is InvalidArgument with reason validation_failed: msg for
// gRPC callers, target and detail for Conjur's error JSON.
func validationFailed(msg, target, detail string) error {
	st := status.New(codes.InvalidArgument, msg)
	info := &errdetails.ErrorInfo{Reason: ReasonValidationFailed, Domain: errorDomain, Metadata: map[string]string{"target": target, "message": detail}}
	if d, err := st.WithDetails(info); err == nil {
		return d.Err()
	}
	return st.Err()
}
