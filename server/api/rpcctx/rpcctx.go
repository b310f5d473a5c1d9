// Package rpcctx reads what every gRPC service needs from a call's context
// besides the caller's identity (which package authn carries).
package rpcctx

import (
	"context"
	"net"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// PeerAddr is the caller's IP: the first X-Forwarded-For hop when the call
// came through the REST gateway (which sets it), else the gRPC peer.
func PeerAddr(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-forwarded-for"); len(v) > 0 {
			return strings.TrimSpace(strings.Split(v[0], ",")[0])
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return host
		}
		return p.Addr.String()
	}
	return ""
}
