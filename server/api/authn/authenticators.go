package authn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/jwt"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// Switches stores which authenticator services are switched off (Conjur's
// `conjur authenticator disable`); *etcdstore.AuthenticatorSwitches
// implements it. A service whose webservice is in policy is on until it is
// switched off.
type Switches interface {
	// Disabled reports whether the service was switched off.
	Disabled(ctx context.Context, authenticator, serviceID string) (bool, error)
	// SetEnabled switches the service on or off; by is the caller's role.
	SetEnabled(ctx context.Context, authenticator, serviceID string, enabled bool, by string) error
}

// switchable are the authenticator types whose switch sower keeps: the
// types Conjur's PATCH /{authenticator}/{service_id}/{account} accepts.
// Only authn-jwt and authn-k8s log anyone in on sower; the others can be
// switched (a Conjur policy may declare them) and change nothing.
var switchable = map[string]bool{
	"authn-jwt": true, "authn-k8s": true, "authn-oidc": true, "authn-azure": true,
	"authn-ldap": true, "authn-iam": true, "authn-cert": true, "authn-gcp": true,
}

// StatusErrorDomain marks the ErrorInfo of a failed status check. Its
// reason is Conjur's error class, its metadata "class" the class's full
// name, so that the Conjur adapter answers `#<class: message>` as Conjur's
// status endpoint does.
const StatusErrorDomain = "conjur-authenticator-status"

// statusError is a failed check of GetAuthenticatorStatus: code for gRPC,
// Conjur's error class and its message (which starts with Conjur's CONJ
// code).
func statusError(code codes.Code, class, msg string, args ...any) error {
	st := status.New(code, fmt.Sprintf(msg, args...))
	short := class[strings.LastIndexByte(class, ':')+1:]
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: short, Domain: StatusErrorDomain, Metadata: map[string]string{"class": class}}); err == nil {
		st = d
	}
	return st.Err()
}

// Conjur's error classes a status check names (app/domain/errors.rb).
const (
	classNotSupported  = "Errors::Authentication::AuthenticatorNotSupported"
	classNoAccount     = "Errors::Authentication::Security::AccountNotDefined"
	classNoWebservice  = "Errors::Authentication::Security::WebserviceNotFound"
	classNotAuthorized = "Errors::Authentication::Security::RoleNotAuthorizedOnResource"
	classNotEnabled    = "Errors::Authentication::Security::AuthenticatorNotWhitelisted"
	// classBadSettings is sower's own: its settings checks are not
	// Conjur's, so it names none of Conjur's classes.
	classBadSettings = "Sower::AuthenticatorSettingsInvalid"
)

// validServiceID reports whether id can name an authenticator service.
func validServiceID(id string) bool {
	return id != "" && len(id) <= 256 && !strings.ContainsAny(id, "/\x00")
}

// UpdateAuthenticator switches an authenticator service on or off, as
// Conjur's UpdateAuthenticatorConfig: the account and the webservice must
// exist (Conjur answers 401 otherwise, and so does sower: the reason is in
// the log), and the caller needs update on the webservice (403).
func (s *Service) UpdateAuthenticator(ctx context.Context, req *sowerv1.UpdateAuthenticatorRequest) (*sowerv1.UpdateAuthenticatorResponse, error) {
	caller, ok := authn.FromContext(ctx)
	if !ok {
		return nil, errUnauthenticated
	}
	if s.c.Switches == nil || s.c.Graph == nil {
		return nil, status.Error(codes.Unimplemented, "this node keeps no authenticator switches")
	}
	kind, sid := req.GetAuthenticator(), req.GetServiceId()
	if !switchable[kind] {
		return nil, status.Errorf(codes.NotFound, "%q is not an authenticator Conjur can switch on or off", clipped(kind))
	}
	refuse := func(format string, args ...any) error {
		s.c.Logger.InfoContext(ctx, "authenticator switch refused", "authenticator", kind, "service_id", clipped(sid), "by", caller.RoleID(), "reason", fmt.Sprintf(format, args...))
		return errUnauthenticated
	}
	if req.GetAccount() != s.c.Account {
		return nil, refuse("account %q is not this cluster's account", clipped(req.GetAccount()))
	}
	if !validServiceID(sid) {
		return nil, refuse("%q is not a service id", clipped(sid))
	}
	ws := policy.NewID(s.c.Account, policy.KindWebservice, "conjur/"+kind+"/"+sid)
	g := s.c.Graph()
	if _, ok := g.Resource(ws); !ok {
		return nil, refuse("webservice %s is not declared: declare it in policy first", ws)
	}
	if !g.Allowed(policy.NewID(caller.Account, caller.Kind, caller.ID), "update", ws) {
		return nil, status.Errorf(codes.PermissionDenied, "'%s' does not have 'update' privilege on %s", caller.Login(), ws)
	}
	if err := s.c.Switches.SetEnabled(ctx, kind, sid, req.GetEnabled(), caller.RoleID()); err != nil {
		if isNotLeader(err) {
			return nil, err // the interceptor names the Leader
		}
		s.c.Logger.ErrorContext(ctx, "switch authenticator", "authenticator", kind, "service_id", sid, "err", err)
		return nil, status.Error(codes.Unavailable, "cannot switch the authenticator right now; try again")
	}
	s.c.Logger.InfoContext(ctx, "authenticator switched", "authenticator", kind, "service_id", sid, "enabled", req.GetEnabled(), "by", caller.RoleID())
	return &sowerv1.UpdateAuthenticatorResponse{}, nil
}

// isNotLeader reports whether err is a write refused because this node is
// not the Leader in its term (a fenced write on a Standby).
func isNotLeader(err error) bool {
	var nle *cluster.NotLeaderError
	return errors.As(err, &nle)
}

// disabled reports whether the service is switched off; without a switch
// store nothing is.
func (s *Service) disabled(ctx context.Context, kind, serviceID string) (bool, error) {
	if s.c.Switches == nil {
		return false, nil
	}
	return s.c.Switches.Disabled(ctx, kind, serviceID)
}

// GetAuthenticatorStatus runs Conjur's status checks in Conjur's order
// (Authentication::AuthnJwt::ValidateStatus): the account, the status
// webservice conjur/<authenticator>/<id>/status and the caller's read on
// it, the authenticator's webservice, its switch, then its settings (the
// verifier is built as the first login would build it; the JWKS is not
// fetched).
func (s *Service) GetAuthenticatorStatus(ctx context.Context, req *sowerv1.GetAuthenticatorStatusRequest) (*sowerv1.GetAuthenticatorStatusResponse, error) {
	caller, ok := authn.FromContext(ctx)
	if !ok {
		return nil, errUnauthenticated
	}
	kind, sid := req.GetAuthenticator(), req.GetServiceId()
	if s.jwts == nil || kind != kindJWT && kind != kindK8s {
		return nil, statusError(codes.NotFound, classNotSupported, "CONJ00001E Authenticator '%s' is not supported in sower (it serves authn, authn-jwt and authn-k8s)", clipped(kind))
	}
	if req.GetAccount() != s.c.Account {
		return nil, statusError(codes.FailedPrecondition, classNoAccount, "CONJ00008E Account '%s' is not defined in Conjur", clipped(req.GetAccount()))
	}
	name := kind + "/" + clipped(sid)
	if !validServiceID(sid) {
		return nil, statusError(codes.FailedPrecondition, classNoWebservice, "CONJ00005E Webservice '%s/status' not found", name)
	}
	g := s.c.Graph()
	statusWS := policy.NewID(s.c.Account, policy.KindWebservice, "conjur/"+kind+"/"+sid+"/status")
	if _, ok := g.Resource(statusWS); !ok {
		return nil, statusError(codes.FailedPrecondition, classNoWebservice, "CONJ00005E Webservice '%s/status' not found", name)
	}
	if !g.Allowed(policy.NewID(caller.Account, caller.Kind, caller.ID), "read", statusWS) {
		return nil, statusError(codes.PermissionDenied, classNotAuthorized, "CONJ00006E '%s' does not have 'read' privilege on %s", caller.Login(), statusWS)
	}
	if _, ok := g.Resource(policy.NewID(s.c.Account, policy.KindWebservice, "conjur/"+kind+"/"+sid)); !ok {
		return nil, statusError(codes.FailedPrecondition, classNoWebservice, "CONJ00005E Webservice '%s' not found", name)
	}
	off, err := s.disabled(ctx, kind, sid)
	if err != nil {
		s.c.Logger.ErrorContext(ctx, "read authenticator switch", "authenticator", name, "err", err)
		return nil, status.Error(codes.Unavailable, "cannot check the authenticator right now; try again")
	}
	if off {
		return nil, statusError(codes.FailedPrecondition, classNotEnabled, "CONJ00004E '%s' is not enabled", name)
	}
	if _, err := s.jwts.get(ctx, kind, sid); err != nil {
		if errors.Is(err, jwt.ErrSettings) {
			return nil, statusError(codes.FailedPrecondition, classBadSettings, "%v", err)
		}
		s.c.Logger.ErrorContext(ctx, "authenticator status", "authenticator", name, "err", err)
		return nil, status.Error(codes.Unavailable, "cannot check the authenticator right now; try again")
	}
	return &sowerv1.GetAuthenticatorStatusResponse{Status: "ok"}, nil
}
