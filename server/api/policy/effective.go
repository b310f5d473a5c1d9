package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
)

// GetEffectivePolicy answers Conjur's `policy fetch`: 404 for a policy the
// caller cannot see, 403 unless it holds the policy's owner role (Conjur's
// authorize_ownership), InvalidArgument for depth or limit out of range,
// and FailedPrecondition (Conjur's 422) for a branch over the limit.
func (s *Service) GetEffectivePolicy(ctx context.Context, req *sowerv1.GetEffectivePolicyRequest) (*sowerv1.GetEffectivePolicyResponse, error) {
	caller, id, g, err := s.visibleResource(ctx, req.GetAccount(), policy.KindPolicy, strings.Trim(req.GetIdentifier(), "/"))
	if err != nil {
		return nil, err
	}
	res, ok := g.Resource(id)
	if !ok {
		return nil, notFound(id)
	}
	if !holds(g, caller, res.Owner) {
		return nil, status.Errorf(codes.PermissionDenied, "fetching the effective policy of %s needs its owner's role, %s", id, res.Owner)
	}
	depth, limit := int32(policy.MaxEffectiveDepth), int32(policy.MaxEffectiveLimit)
	if req.Depth != nil {
		depth = req.GetDepth()
	}
	if req.Limit != nil {
		limit = req.GetLimit()
	}
	if depth < 0 || depth > policy.MaxEffectiveDepth {
		return nil, status.Error(codes.InvalidArgument, EffectiveParamError("depth", fmt.Sprint(depth)))
	}
	if limit < 0 || limit > policy.MaxEffectiveLimit {
		return nil, status.Error(codes.InvalidArgument, EffectiveParamError("limit", fmt.Sprint(limit)))
	}
	sts, err := g.EffectivePolicy(policy.EffectiveQuery{Policy: id, Viewer: caller, Depth: int(depth), Limit: int(limit)})
	if errors.Is(err, policy.ErrEffectiveTooLarge) {
		return nil, status.Error(codes.FailedPrecondition, strings.TrimPrefix(err.Error(), policy.ErrEffectiveTooLarge.Error()+": "))
	}
	if err != nil {
		return nil, s.toStatus(ctx, "effective policy", err)
	}
	s.c.Logger.InfoContext(ctx, "effective policy read", "policy", id.String(), "depth", depth, "limit", limit, "by", caller.String(), "peer", rpcctx.PeerAddr(ctx))
	if req.GetJson() {
		return &sowerv1.GetEffectivePolicyResponse{Text: string(policy.EffectiveJSON(sts))}, nil
	}
	return &sowerv1.GetEffectivePolicyResponse{Text: string(policy.EffectiveYAML(sts))}, nil
}

// EffectiveParamError is Conjur's message (CONJ00163E) for a depth or limit
// that is not a number from 0 up to its maximum.
func EffectiveParamError(name, value string) string {
	max := policy.MaxEffectiveDepth
	if name == "limit" {
		max = policy.MaxEffectiveLimit
	}
	return fmt.Sprintf("CONJ00163E Param '%s' is '%s' but should be a number from 0 up to %d", name, value, max)
}
