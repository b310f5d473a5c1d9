// Package authn implements sower.v1.AuthnService: API key and password
// login, access tokens, API key rotation, password changes, whoami, the JWT
// / Kubernetes authenticator (AuthenticateJWT), and Conjur's authenticator
// switch and status check (UpdateAuthenticator, GetAuthenticatorStatus). It adapts the authn domain packages to the API: a
// refused credential is always the same Unauthenticated answer, while the
// log and the audit trail say which check failed.
//
// The JWT authenticator of a service id is enabled by policy (webservice
// conjur/authn-jwt/<id>, or conjur/authn-k8s/<id> for the Kubernetes form)
// and configured by the variables under that policy (jwks-uri or
// public-keys, issuer, audience, token-app-property, identity-path, and
// kubernetes/api-url, kubernetes/ca-cert, kubernetes/service-account-token
// for the Kubernetes API). Its verifier is built on first use and cached
// until one of those variables changes (InvalidateJWT).
package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/jwt"
	"github.com/sowerproject/sower/authn/k8s"
	"github.com/sowerproject/sower/authn/token"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
	"github.com/sowerproject/sower/server/etcdstore"
)

// Authorizer answers permission questions; the policy engine implements it.
type Authorizer interface {
	Allowed(ctx context.Context, roleID, privilege, resourceID string) (bool, error)
}

// Config holds the service's dependencies.
type Config struct {
	Account string
	Keys    *apikey.Manager
	Tokens  *token.Service
	Limiter *authn.Limiter
	// Authorizer decides whether a caller may rotate another role's key
	// (`update` on it). Nil allows only rotating one's own key.
	Authorizer Authorizer
	Logger     *slog.Logger

	// Graph is also where a role's restricted_to is read: without it no
	// address restriction is enforced.
	//
	// Graph and Variables enable AuthenticateJWT: the policy graph (which
	// services are enabled, hosts, annotations, authenticate permissions)
	// and the variables holding each service's settings.
	Graph     func() *policy.Graph
	Variables Variables
	// Kube is the Kubernetes API client for authn-k8s services whose
	// variables do not name an API server (kubernetes/api-url); optional.
	Kube k8s.API
	// JWTOptions apply to every JWT verifier (a clock, a leeway).
	JWTOptions []jwt.Option
	// Audit records every authentication, successful or not; optional.
	Audit Auditor
	// Switches keeps the authenticators switched off (UpdateAuthenticator);
	// optional: without it every declared authenticator is on and
	// UpdateAuthenticator is Unimplemented.
	Switches Switches
	// ReadOnly is set on a node that never writes (a Follower): it returns
	// the error a write is answered with (naming the Leader). A password
	// login, which issues a new API key, gets it.
	ReadOnly func() error
}

// Auditor records authentications without blocking; *etcdstore.AuthnAudit
// implements it.
type Auditor interface {
	Record(etcdstore.AuthnEvent)
}

// Service implements sowerv1.AuthnServiceServer.
type Service struct {
	sowerv1.UnsafeAuthnServiceServer
	c    Config
	jwts *jwtServices
}

// New checks the dependencies and returns the service.
func New(c Config) (*Service, error) {
	switch {
	case c.Account == "":
		return nil, errors.New("authn: Account is required")
	case c.Keys == nil:
		return nil, errors.New("authn: Keys is required")
	case c.Tokens == nil:
		return nil, errors.New("authn: Tokens is required")
	case c.Limiter == nil:
		return nil, errors.New("authn: Limiter is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{c: c}
	if c.Graph != nil && c.Variables != nil {
		s.jwts = newJWTServices(c)
	}
	return s, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { sowerv1.RegisterAuthnServiceServer(g, s) }

// RegisterGateway maps the /v1 REST paths.
func (s *Service) RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	return sowerv1.RegisterAuthnServiceHandlerClient(ctx, mux, sowerv1.NewAuthnServiceClient(conn))
}

// errUnauthenticated is the one answer to every refused credential.
var errUnauthenticated = status.Error(codes.Unauthenticated, "authentication failed")

// checkSecret verifies login and secret with the failed-login limiter in
// front (per identity at the client's address, per address, and node-wide;
// see authn.Limiter), then the role's restricted_to against the client's
// address, as Conjur does after the credential. It returns the networks the
// role is restricted to, for the token's cidr claim.
func (s *Service) checkSecret(ctx context.Context, method, account, login, secret string, allowPassword bool) (authn.Identity, apikey.Method, authn.Networks, error) {
	if account != s.c.Account {
		s.refused(ctx, "authn", clipped(login), method, authn.Refuse(authn.ReasonUnknownIdentity, "account %q is not this cluster's account", clipped(account)))
		return authn.Identity{}, "", nil, errUnauthenticated
	}
	id, err := authn.ParseLogin(account, login)
	if err != nil {
		s.refused(ctx, "authn", clipped(login), method, authn.Refuse(authn.ReasonMalformed, "%v", err))
		return authn.Identity{}, "", nil, errUnauthenticated
	}
	addr := rpcctx.PeerAddr(ctx)
	if wait, ok := s.c.Limiter.Allow(id.RoleID(), addr); !ok {
		s.refused(ctx, "authn", id.RoleID(), method, authn.Refuse(authn.ReasonRateLimited, "too many failed attempts; next allowed in %s", wait.Round(time.Millisecond)))
		return authn.Identity{}, "", nil, rateLimited(wait)
	}
	var used apikey.Method = apikey.MethodAPIKey
	if allowPassword {
		used, err = s.c.Keys.Login(ctx, id.RoleID(), secret)
	} else {
		err = s.c.Keys.Verify(ctx, id.RoleID(), secret)
	}
	if err != nil {
		if !errors.Is(err, authn.ErrUnauthenticated) {
			s.c.Logger.Error("check credential", "login", login, "err", err)
			return authn.Identity{}, "", nil, status.Error(codes.Unavailable, "cannot check credentials right now; try again")
		}
		s.c.Limiter.Fail(id.RoleID(), addr)
		s.refused(ctx, "authn", id.RoleID(), method, err)
		return authn.Identity{}, "", nil, errUnauthenticated
	}
	s.c.Limiter.Succeed(id.RoleID(), addr)
	nets, err := s.checkOrigin(ctx, id.RoleID())
	if err != nil {
		s.refused(ctx, "authn", id.RoleID(), method, err)
		return authn.Identity{}, "", nil, errUnauthenticated
	}
	return id, used, nets, nil
}

// rateLimited is the answer to a limited login: ResourceExhausted (429)
// with the wait in a RetryInfo detail, which the REST front ends turn into
// a Retry-After header.
func rateLimited(wait time.Duration) error {
	secs := wait.Round(time.Second) + time.Second
	st := status.Newf(codes.ResourceExhausted, "too many failed logins from this address; try again in %s", secs)
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(secs)}); err == nil {
		st = d
	}
	return st.Err()
}

// checkOrigin refuses the caller's address when the role is restricted
// (policy's restricted_to) to networks that do not contain it, and returns
// the role's networks. A restriction that does not parse refuses every
// address: it can only come from a bug, and failing open would lift it.
func (s *Service) checkOrigin(ctx context.Context, roleID string) (authn.Networks, error) {
	if s.c.Graph == nil {
		return nil, nil
	}
	g := s.c.Graph()
	if g == nil {
		return nil, nil
	}
	pid, err := policy.ParseID(roleID)
	if err != nil {
		return nil, nil
	}
	info, ok := g.Role(pid)
	if !ok || len(info.RestrictedTo) == 0 {
		return nil, nil
	}
	nets, err := authn.ParseNetworks(info.RestrictedTo)
	if err != nil {
		s.c.Logger.ErrorContext(ctx, "restricted_to does not parse; refusing every address", "role", roleID, "err", err)
		return nil, authn.Refuse(authn.ReasonOrigin, "restricted_to of %s does not parse: %v", roleID, err)
	}
	return nets, authn.CheckOrigin(nets, rpcctx.PeerAddr(ctx))
}

// refused logs and audits a refusal: who (the identity claimed), how, from
// where and which check failed; never the credential.
func (s *Service) refused(ctx context.Context, how, identity, method string, err error) {
	reason, detail := authn.ReasonOf(err)
	s.c.Logger.InfoContext(ctx, "authentication refused", "authenticator", how, "identity", identity, "reason", reason, "detail", detail, "peer", rpcctx.PeerAddr(ctx))
	s.audit(ctx, etcdstore.AuthnEvent{Outcome: etcdstore.OutcomeFailure, Authenticator: how, Identity: identity,
		Reason: string(reason), Detail: detail, Method: method})
}

// Login checks an API key (or password) and returns the API key.
func (s *Service) Login(ctx context.Context, req *sowerv1.LoginRequest) (*sowerv1.LoginResponse, error) {
	id, method, _, err := s.checkSecret(ctx, "Login", req.GetAccount(), req.GetLogin(), req.GetSecret(), true)
	if err != nil {
		return nil, err
	}
	if method != apikey.MethodAPIKey {
		return s.passwordLogin(ctx, id)
	}
	s.succeeded(ctx, "authn", id.RoleID(), "Login")
	return &sowerv1.LoginResponse{ApiKey: req.GetSecret()}, nil
}

// Authenticate exchanges an API key for an access token.
func (s *Service) Authenticate(ctx context.Context, req *sowerv1.AuthenticateRequest) (*sowerv1.AuthenticateResponse, error) {
	id, _, nets, err := s.checkSecret(ctx, "Authenticate", req.GetAccount(), req.GetLogin(), strings.TrimSpace(req.GetApiKey()), false)
	if err != nil {
		return nil, err
	}
	tok, err := s.c.Tokens.Issue(id.Login(), token.WithCIDR(nets.Strings()))
	if err != nil {
		s.c.Logger.Error("issue access token", "login", id.Login(), "err", err)
		return nil, status.Error(codes.Unavailable, "cannot issue access tokens right now; try again")
	}
	s.succeeded(ctx, "authn", id.RoleID(), "Authenticate")
	return &sowerv1.AuthenticateResponse{Token: tok.JSON, ExpiresAt: tok.Claims.Expires.Unix()}, nil
}

// RotateAPIKey gives a role a new API key.
func (s *Service) RotateAPIKey(ctx context.Context, req *sowerv1.RotateAPIKeyRequest) (*sowerv1.RotateAPIKeyResponse, error) {
	caller, ok := authn.FromContext(ctx)
	if !ok {
		return nil, errUnauthenticated
	}
	target := caller.RoleID()
	if r := req.GetRole(); r != "" {
		full, err := qualifyRole(s.c.Account, r)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		target = full
	}
	if target != caller.RoleID() {
		if s.c.Authorizer == nil {
			return nil, status.Error(codes.PermissionDenied, "you may rotate only your own API key")
		}
		ok, err := s.c.Authorizer.Allowed(ctx, caller.RoleID(), "update", target)
		if err != nil {
			return nil, status.Error(codes.Unavailable, "cannot check permissions right now; try again")
		}
		if !ok {
			return nil, status.Errorf(codes.PermissionDenied, "rotating the API key of %s needs update on it", target)
		}
	}
	if err := s.c.Keys.Verify(ctx, target, ""); authn.IsReason(err, authn.ReasonUnknownIdentity) {
		return nil, status.Errorf(codes.NotFound, "%s has no credential to rotate", target)
	}
	key, err := s.c.Keys.Rotate(ctx, target)
	if err != nil {
		if isNotLeader(err) {
			return nil, err // the term ended mid-call: the interceptor names the Leader
		}
		s.c.Logger.Error("rotate API key", "role", target, "err", err)
		return nil, status.Error(codes.Unavailable, "cannot rotate the API key right now; try again")
	}
	s.c.Logger.Info("API key rotated", "role", target, "by", caller.RoleID())
	return &sowerv1.RotateAPIKeyResponse{ApiKey: key}, nil
}

// WhoAmI describes the caller.
func (s *Service) WhoAmI(ctx context.Context, _ *sowerv1.WhoAmIRequest) (*sowerv1.WhoAmIResponse, error) {
	caller, ok := authn.FromContext(ctx)
	if !ok {
		return nil, errUnauthenticated
	}
	return &sowerv1.WhoAmIResponse{
		Account:       caller.Account,
		Username:      caller.Login(),
		RoleId:        caller.RoleID(),
		TokenIssuedAt: caller.IssuedAt.UTC().Format(time.RFC3339),
		ClientIp:      rpcctx.PeerAddr(ctx),
	}, nil
}

// qualifyRole turns "kind:id" or "account:kind:id" into "account:kind:id"
// of this account.
func qualifyRole(account, r string) (string, error) {
	parts := strings.SplitN(r, ":", 3)
	switch len(parts) {
	case 2:
		parts = []string{account, parts[0], parts[1]}
	case 3:
		if parts[0] != account {
			return "", fmt.Errorf("role %q is not in account %q", r, account)
		}
	default:
		return "", fmt.Errorf("role %q: write kind:id or account:kind:id, for example host:myapp", r)
	}
	if parts[1] != "user" && parts[1] != "host" {
		return "", fmt.Errorf("role %q: only users and hosts have API keys", r)
	}
	if parts[2] == "" {
		return "", fmt.Errorf("role %q has an empty id", r)
	}
	return strings.Join(parts, ":"), nil
}
