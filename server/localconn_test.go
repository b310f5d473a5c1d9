package server

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type fallbackConn struct{ methods []string }

func (f *fallbackConn) Invoke(_ context.Context, method string, _, _ any, _ ...grpc.CallOption) error {
	f.methods = append(f.methods, method)
	return nil
}

func (f *fallbackConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, errors.New("no streams here")
}

// An in-process call runs the interceptors in order with the caller's
// metadata as incoming metadata and this node as the peer, and hands back
// the reply, headers, trailers and status errors as a network call would.
func TestLocalConn(t *testing.T) {
	self := []*x509.Certificate{{Raw: []byte("node certificate")}}
	var order []string
	var sawMD metadata.MD
	var sawPeer *peer.Peer
	first := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		order = append(order, "first:"+info.FullMethod)
		sawMD, _ = metadata.FromIncomingContext(ctx)
		sawPeer, _ = peer.FromContext(ctx)
		if err := grpc.SetHeader(ctx, metadata.Pairs("x-header", "h")); err != nil {
			return nil, err
		}
		if err := grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t")); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	second := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		order = append(order, "second")
		if out, _ := metadata.FromOutgoingContext(ctx); len(out) > 0 {
			t.Error("the caller's outgoing metadata reached the handler as outgoing metadata")
		}
		if req.(*healthpb.HealthCheckRequest).Service == "refuse" {
			return nil, status.Error(codes.PermissionDenied, "no")
		}
		return h(ctx, req)
	}
	fb := &fallbackConn{}
	c := newLocalConn(fb, func() []*x509.Certificate { return self }, first, second)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(c, hs)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Token token=\"abc\"")
	var header, trailer metadata.MD
	resp, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check = %v, %v", resp, err)
	}
	if len(order) != 2 || order[0] != "first:/grpc.health.v1.Health/Check" || order[1] != "second" {
		t.Fatalf("interceptors ran as %v", order)
	}
	if got := sawMD.Get("authorization"); len(got) != 1 || got[0] != `Token token="abc"` {
		t.Fatalf("incoming metadata = %v", sawMD)
	}
	ti, ok := sawPeer.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) != 1 || ti.State.VerifiedChains[0][0] != self[0] {
		t.Fatalf("peer = %+v, want this node's certificate", sawPeer)
	}
	if header.Get("x-header")[0] != "h" || trailer.Get("x-trailer")[0] != "t" {
		t.Fatalf("header %v, trailer %v", header, trailer)
	}

	_, err = healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{Service: "refuse"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("refused call: %v, want PermissionDenied", err)
	}
	_, err = healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown-service"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("handler error: %v, want NotFound", err)
	}

	// A method not registered here goes to the network connection.
	if err := c.Invoke(ctx, "/other.Service/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}); err != nil {
		t.Fatal(err)
	}
	if len(fb.methods) != 1 || fb.methods[0] != "/other.Service/Call" {
		t.Fatalf("network connection got %v", fb.methods)
	}
}

// In process, messages keep the network connection's size limit both
// ways: what the gRPC listener would refuse is refused here too.
func TestLocalConnMessageLimit(t *testing.T) {
	c := newLocalConn(&fallbackConn{}, func() []*x509.Certificate { return nil })
	hs := health.NewServer()
	healthpb.RegisterHealthServer(c, hs)
	hs.SetServingStatus("a-service-name", healthpb.HealthCheckResponse_SERVING)
	c.maxBytes = len("a-service-name") + 2 // the request's size, tag and length included
	resp, err := healthpb.NewHealthClient(c).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "a-service-name"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("a request at the limit: %v, %v", resp, err)
	}
	_, err = healthpb.NewHealthClient(c).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "a-service-name-longer"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "request is 23 bytes") {
		t.Fatalf("a request over the limit: %v, want ResourceExhausted", err)
	}
	c.maxBytes = 1 // the SERVING response is 2 bytes
	_, err = healthpb.NewHealthClient(c).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "response is 2 bytes") {
		t.Fatalf("a response over the limit: %v, want ResourceExhausted", err)
	}
}

// A response reaches the caller without its fields being copied: the
// caller's message holds the handler's bytes (a seed's archive is not
// copied again), and every field, unknown fields included, arrives.
func TestMoveMessage(t *testing.T) {
	src := &healthpb.HealthCheckRequest{Service: "a service"}
	src.ProtoReflect().SetUnknown([]byte{0xf8, 0x01, 0x01}) // field 31, varint 1
	dst := &healthpb.HealthCheckRequest{Service: "overwritten"}
	moveMessage(dst, src)
	if dst.GetService() != "a service" || string(dst.ProtoReflect().GetUnknown()) != "\xf8\x01\x01" {
		t.Fatalf("moved %v", dst)
	}
	archive := &wrapperspb.BytesValue{Value: []byte("a seed's archive")}
	var got wrapperspb.BytesValue
	moveMessage(&got, archive)
	if &got.Value[0] != &archive.Value[0] {
		t.Fatal("the bytes were copied")
	}
	empty := &healthpb.HealthCheckRequest{}
	moveMessage(dst, empty)
	if dst.GetService() != "" || len(dst.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("an empty message moved as %v", dst)
	}
}
