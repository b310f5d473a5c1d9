package authn

import (
	"context"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// weakPasswordMessage is Conjur's InsufficientPasswordComplexity
// (CONJ00046E), the message of its 422 validation_failed answer.
const weakPasswordMessage = "CONJ00046E The password you have chosen does not meet the complexity requirements. " +
	"Choose a password that includes: 12-128 characters, 2 uppercase letters, 2 lowercase letters, 1 digit and 1 special character"

// ReasonValidationFailed is the ErrorInfo reason of a refused new password:
// Conjur's validation_failed, with the field in metadata "target" and
// Conjur's message in "message".
const ReasonValidationFailed = "validation_failed"

// errHostPassword answers a host changing its password: Conjur refuses it
// (403) in CredentialsController#update_password.
var errHostPassword = status.Error(codes.PermissionDenied, "hosts have no password: a host logs in with its API key (rotate it with PUT /authn/{account}/api_key)")

// ChangePassword sets a user's password, authenticated by the user's
// login and its current API key or password, as Conjur's PUT
// /authn/{account}/password: an access token is not enough, hosts have
// none, and the new password must meet Conjur's rules (422 otherwise).
// Only a bcrypt hash of the peppered password is stored.
func (s *Service) ChangePassword(ctx context.Context, req *sowerv1.ChangePasswordRequest) (*sowerv1.ChangePasswordResponse, error) {
	id, _, _, err := s.checkSecret(ctx, "ChangePassword", req.GetAccount(), req.GetLogin(), req.GetSecret(), true)
	if err != nil {
		return nil, err
	}
	if id.Kind != policy.KindUser {
		s.c.Logger.InfoContext(ctx, "password change refused", "role", id.RoleID(), "reason", "hosts have no password")
		return nil, errHostPassword
	}
	if err := apikey.ValidatePassword(req.GetNewPassword()); err != nil {
		s.c.Logger.InfoContext(ctx, "password change refused", "role", id.RoleID(), "reason", "the new password does not meet the complexity rules")
		st := status.New(codes.InvalidArgument, "password "+weakPasswordMessage)
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonValidationFailed, Domain: "sower",
			Metadata: map[string]string{"target": "password", "message": weakPasswordMessage}}); derr == nil {
			st = d
		}
		return nil, st.Err()
	}
	if err := s.c.Keys.SetPassword(ctx, id.RoleID(), req.GetNewPassword()); err != nil {
		if isNotLeader(err) {
			return nil, err // the interceptor names the Leader
		}
		s.c.Logger.ErrorContext(ctx, "store password", "role", id.RoleID(), "err", err)
		return nil, status.Error(codes.Unavailable, "cannot change the password right now; try again")
	}
	s.c.Logger.InfoContext(ctx, "password changed", "role", id.RoleID())
	s.succeeded(ctx, "authn", id.RoleID(), "ChangePassword")
	return &sowerv1.ChangePasswordResponse{}, nil
}

// passwordLogin answers a login whose secret was the user's password with
// the API key, as Conjur does. sower keeps only a hash of the key, so it
// cannot return the current one: it issues a new key (the old one stops
// working) and returns it. A Follower cannot write and refuses, naming the
// Leader; a Standby's write is refused by the election's fence.
func (s *Service) passwordLogin(ctx context.Context, id authn.Identity) (*sowerv1.LoginResponse, error) {
	if s.c.ReadOnly != nil {
		s.c.Logger.InfoContext(ctx, "password login refused on a read-only node", "role", id.RoleID())
		return nil, s.c.ReadOnly()
	}
	key, err := s.c.Keys.Rotate(ctx, id.RoleID())
	if err != nil {
		if isNotLeader(err) {
			return nil, err // the interceptor names the Leader
		}
		s.c.Logger.ErrorContext(ctx, "rotate API key on password login", "role", id.RoleID(), "err", err)
		return nil, status.Error(codes.Unavailable, "cannot log in with a password right now; try again")
	}
	s.c.Logger.InfoContext(ctx, "API key rotated by a password login", "role", id.RoleID())
	s.succeeded(ctx, "authn", id.RoleID(), "Login (password; API key rotated)")
	return &sowerv1.LoginResponse{ApiKey: key}, nil
}
