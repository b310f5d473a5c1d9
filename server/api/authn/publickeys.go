package authn

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// GetPublicKeys returns the public keys the role's policy declares, from
// the policy graph. As Conjur's, it takes no token and tells nothing apart:
// a role that does not exist, a host and another account all have none.
func (s *Service) GetPublicKeys(_ context.Context, req *sowerv1.GetPublicKeysRequest) (*sowerv1.GetPublicKeysResponse, error) {
	if s.c.Graph == nil {
		return nil, status.Error(codes.Unimplemented, "this node serves no policy")
	}
	if req.GetAccount() != s.c.Account || req.GetKind() == "" || req.GetIdentifier() == "" {
		return &sowerv1.GetPublicKeysResponse{}, nil
	}
	info, ok := s.c.Graph().Role(policy.NewID(s.c.Account, req.GetKind(), req.GetIdentifier()))
	if !ok {
		return &sowerv1.GetPublicKeysResponse{}, nil
	}
	return &sowerv1.GetPublicKeysResponse{PublicKeys: info.PublicKeys}, nil
}
