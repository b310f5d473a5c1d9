package authn

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// AuthenticateJWT exchanges a JWT for an access token.
func (s *Service) AuthenticateJWT(ctx context.Context, req *sowerv1.AuthenticateJWTRequest) (*sowerv1.AuthenticateJWTResponse, error) {
	return nil, status.Error(codes.Unimplemented, "the JWT authenticator is not enabled on this node")
}
