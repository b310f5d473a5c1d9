// Package rpcctx reads what every gRPC service needs from a call's context:
// the caller (whose identity package authn carries) and its address.
package rpcctx

import (
	"context"
	"net"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/policy"
)

// PeerAddr is the caller's IP. A call relayed by a node's REST gateway or
// Conjur adapter carries the HTTP client's address in x-forwarded-for; that
// header is believed only when the gRPC peer proved, with a verified
// certificate of the node profile, that it is a cluster node. Anyone else
// could write any address there, and restricted_to, the login rate limits
// and the audit trail read this value. The node's HTTP front door has
// already decided the client's address (trusted proxies included) and the
// gateway appends it last, so the right-most entry is the one taken.
func PeerAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	if fromNode(p) {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get("x-forwarded-for"); len(v) > 0 {
				hops := strings.Split(v[len(v)-1], ",")
				return strings.TrimSpace(hops[len(hops)-1])
			}
		}
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

func fromNode(p *peer.Peer) bool {
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return false
	}
	name, ok := pki.ProfileOf(ti.State.VerifiedChains[0][0])
	return ok && name == pki.ProfileLeaderServer
}

// Caller is the authenticated caller of a call, or the Unauthenticated
// status every service answers without one.
func Caller(ctx context.Context) (authn.Identity, error) {
	id, ok := authn.FromContext(ctx)
	if !ok {
		return authn.Identity{}, status.Error(codes.Unauthenticated, "authentication required")
	}
	return id, nil
}

// CallerRole is the authenticated caller's role id, as the permission
// graph names it.
func CallerRole(ctx context.Context) (policy.ID, error) {
	id, err := Caller(ctx)
	if err != nil {
		return policy.ID{}, err
	}
	return policy.NewID(id.Account, id.Kind, id.ID), nil
}
