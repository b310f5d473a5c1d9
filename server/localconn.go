package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// localConn lets the node's own REST front ends (the /v1 gateway and the
// Conjur adapter) call its gRPC services in process: the same handlers
// behind the same interceptor chain (recovery, metrics, authentication,
// the Leader check) as a call over the network, without the TLS records,
// HTTP/2 frames and protobuf encoding of a loopback connection, which cost
// a seed request about a tenth of its time. The hop also made a REST call
// wait in the scheduler's run queue four more times (the gateway's HTTP/2
// writer, the gRPC server's reader and handler, and back): under a seed
// storm, /v1/status spent most of its time there. Streaming calls go to
// the network connection.
type localConn struct {
	methods map[string]localMethod
	chain   grpc.UnaryServerInterceptor
	// self is the chain of the node's current certificate: the peer a
	// handler sees is this node, as it is on the loopback connection.
	self    func() []*x509.Certificate
	network grpc.ClientConnInterface
	// maxBytes is the network connection's message size limit, kept
	// both ways in process.
	maxBytes int
}

type localMethod struct {
	impl    any
	handler grpc.MethodHandler
}

var _ grpc.ClientConnInterface = (*localConn)(nil)
var _ grpc.ServiceRegistrar = (*localConn)(nil)

func newLocalConn(network grpc.ClientConnInterface, self func() []*x509.Certificate, interceptors ...grpc.UnaryServerInterceptor) *localConn {
	return &localConn{methods: map[string]localMethod{}, chain: chainUnary(interceptors), self: self, network: network, maxBytes: maxMessageBytes}
}

// RegisterService implements grpc.ServiceRegistrar: services register
// here as they do on the gRPC server.
func (c *localConn) RegisterService(sd *grpc.ServiceDesc, impl any) {
	for _, m := range sd.Methods {
		c.methods["/"+sd.ServiceName+"/"+m.MethodName] = localMethod{impl: impl, handler: m.Handler}
	}
}

// localAddr is the peer address handlers see for in-process calls.
var localAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}

// Invoke runs a unary method in process. The outgoing metadata becomes the
// incoming metadata; headers and trailers the handler sets reach the
// caller's grpc.Header and grpc.Trailer options.
func (c *localConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return c.network.Invoke(ctx, method, args, reply, opts...)
	}
	in, ok1 := args.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !ok1 || !ok2 {
		return fmt.Errorf("server: in-process call %s: messages must be protobuf", method)
	}
	if n := proto.Size(in); n > c.maxBytes {
		return status.Errorf(codes.ResourceExhausted, "the request is %d bytes, larger than the limit of %d", n, c.maxBytes)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewIncomingContext(metadata.NewOutgoingContext(ctx, nil), md)
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: localAddr, LocalAddr: localAddr, AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{c.self()}},
	}})
	st := &localStream{method: method}
	ctx = grpc.NewContextWithServerTransportStream(ctx, st)
	dec := func(v any) error {
		proto.Merge(v.(proto.Message), in)
		return nil
	}
	resp, err := m.handler(m.impl, ctx, dec, c.chain)
	st.deliver(opts)
	if err != nil {
		return err
	}
	if n := proto.Size(resp.(proto.Message)); n > c.maxBytes {
		return status.Errorf(codes.ResourceExhausted, "the response is %d bytes, larger than the limit of %d", n, c.maxBytes)
	}
	moveMessage(out, resp.(proto.Message))
	return nil
}

// moveMessage sets dst's fields to src's without copying them: a
// response's large fields (a seed's archive, a policy dump) would
// otherwise be copied once more on their way to the front end, which only
// reads them. src must not be used after.
func moveMessage(dst, src proto.Message) {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	if d.Descriptor() != s.Descriptor() {
		proto.Reset(dst)
		proto.Merge(dst, src)
		return
	}
	proto.Reset(dst)
	s.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		d.Set(fd, v)
		return true
	})
	if u := s.GetUnknown(); len(u) > 0 {
		d.SetUnknown(u)
	}
}

// NewStream sends streaming calls over the network connection.
func (c *localConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.network.NewStream(ctx, desc, method, opts...)
}

// chainUnary composes interceptors the way grpc.ChainUnaryInterceptor does:
// the first is the outermost.
func chainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		var next func(i int) grpc.UnaryHandler
		next = func(i int) grpc.UnaryHandler {
			if i == len(ics) {
				return h
			}
			return func(ctx context.Context, req any) (any, error) { return ics[i](ctx, req, info, next(i+1)) }
		}
		return next(0)(ctx, req)
	}
}

// localStream collects what a handler sets with grpc.SetHeader,
// grpc.SendHeader and grpc.SetTrailer.
type localStream struct {
	method string

	mu              sync.Mutex
	header, trailer metadata.MD
}

func (s *localStream) Method() string { return s.method }

func (s *localStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *localStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *localStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

func (s *localStream) deliver(opts []grpc.CallOption) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = s.header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = s.trailer
		}
	}
}
