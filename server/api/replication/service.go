// Package replication implements sower.v1.ReplicationService, the feed
// Followers replicate from, and the Follower's client of it. It is the
// adapter between package replica's messages and the API's: the hub's
// fan-out and the Follower's apply loop live in replica, the certificate
// checks and the wire format here.
package replication

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"sort"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/pki"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/replica"
	"github.com/sowerproject/sower/server/api/rpcctx"
)

// Config is what the service needs.
type Config struct {
	// Hub is the node's fan-out (required).
	Hub *replica.Hub
	// Node is this node's name.
	Node string
	// Leader names the cluster's Leader as this node knows it.
	Leader func() (name, url string)
	// Revoked reports whether a certificate serial is revoked (required).
	Revoked func(serial *big.Int) bool
	// Others lists the other quorum nodes (name → REST URL) and Dial
	// reaches one; ListFollowers asks them for theirs. Optional.
	Others func(ctx context.Context) map[string]string
	Dial   func(url string) (sowerv1.ReplicationServiceClient, error)
	// Audit is the trail PushAudit stores Followers' events in; without
	// it PushAudit is Unavailable.
	Audit audit.Trail
	// SharedEncoding says the gRPC server runs Codec: each change and
	// progress mark is then encoded once for all the Followers it goes
	// to, not once per Follower.
	SharedEncoding bool
	Logger         *slog.Logger
}

// Service implements sowerv1.ReplicationServiceServer.
type Service struct {
	sowerv1.UnsafeReplicationServiceServer
	c   Config
	enc encodings
}

// New checks the dependencies and returns the service.
func New(c Config) (*Service, error) {
	switch {
	case c.Hub == nil:
		return nil, errors.New("replication service: Hub is required")
	case c.Revoked == nil:
		return nil, errors.New("replication service: Revoked is required")
	}
	if c.Leader == nil {
		c.Leader = func() (string, string) { return "", "" }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{c: c}, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { sowerv1.RegisterReplicationServiceServer(g, s) }

// RegisterGateway maps the service's REST paths onto mux, calling through conn.
func (s *Service) RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	return sowerv1.RegisterReplicationServiceHandlerClient(ctx, mux, sowerv1.NewReplicationServiceClient(conn))
}

// FollowMethod is the full method name of Follow: authenticated by its
// client certificate, not by an access token.
const FollowMethod = "/sower.v1.ReplicationService/Follow"

// followerCert returns the caller's verified Follower replication
// certificate, or the PermissionDenied status for anyone else.
func (s *Service) followerCert(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "replication needs mutual TLS with a Follower certificate")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil, status.Error(codes.Unauthenticated, "replication needs mutual TLS with a Follower certificate (the seed's tls/replication.pem)")
	}
	leaf := ti.State.VerifiedChains[0][0]
	if name, _ := pki.ProfileOf(leaf); name != pki.ProfileFollowerClient {
		return nil, status.Errorf(codes.PermissionDenied, "replication is only for Follower certificates (profile %s)", pki.ProfileFollowerClient)
	}
	// The handshake checked revocation, but a connection opened before
	// the seed was revoked may start new streams.
	if s.c.Revoked(leaf.SerialNumber) {
		return nil, status.Error(codes.PermissionDenied, "this Follower's certificate is revoked; issue it a new seed")
	}
	return leaf, nil
}

// Follow implements the feed: the first request names the cursor, every
// later one acknowledges an applied revision.
func (s *Service) Follow(stream grpc.BidiStreamingServer[sowerv1.FollowRequest, sowerv1.FollowResponse]) error {
	ctx := stream.Context()
	leaf, err := s.followerCert(ctx)
	if err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return status.Error(codes.InvalidArgument, "a Follow stream starts with a request naming the cursor")
	}
	if req.GetCursor() < 0 {
		return status.Error(codes.InvalidArgument, "cursor must not be negative")
	}
	p := replica.Peer{Name: leaf.Subject.CommonName, Addr: rpcctx.PeerAddr(ctx), Serial: leaf.SerialNumber.Text(16)}
	s.c.Logger.Info("follower attached", "follower", p.Name, "addr", p.Addr, "cursor", req.GetCursor())
	// The acknowledgements: only the latest matters, so a slow hub
	// never holds this reader up.
	acks := make(chan int64, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				return // the stream ended; the handler returns too
			}
			a := r.GetApplied()
			select {
			case acks <- a:
			default:
				select {
				case old := <-acks:
					a = max(a, old)
				default:
				}
				acks <- a
			}
		}
	}()
	err = s.c.Hub.Serve(ctx, p, req.GetCursor(), func(m replica.Message) error {
		name, url := s.c.Leader()
		toProto := func() *sowerv1.FollowResponse {
			resp := MessageToProto(m)
			resp.LeaderName, resp.LeaderUrl = name, url
			return resp
		}
		if !s.c.SharedEncoding {
			return stream.Send(toProto())
		}
		e, err := s.enc.get(m, name, url, func() ([]byte, error) { return proto.Marshal(toProto()) })
		if err != nil {
			return status.Errorf(codes.Internal, "encode a feed message: %v", err)
		}
		return stream.SendMsg(e)
	}, acks)
	s.c.Logger.Info("follower detached", "follower", p.Name, "addr", p.Addr, "err", err)
	return toStatus(err)
}

// toStatus is the one place the feed's errors become gRPC codes.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, replica.ErrSlow), errors.Is(err, replica.ErrBehind), errors.Is(err, replica.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unavailable, "replication feed failed on this node; try another")
}

// ListFollowers lists this node's Followers and, unless req.Local, every
// other node's.
func (s *Service) ListFollowers(ctx context.Context, req *sowerv1.ListFollowersRequest) (*sowerv1.ListFollowersResponse, error) {
	if _, err := rpcctx.Caller(ctx); err != nil {
		return nil, err
	}
	resp := &sowerv1.ListFollowersResponse{}
	for _, a := range s.c.Hub.Followers() {
		resp.Followers = append(resp.Followers, &sowerv1.AttachedFollower{
			Name: a.Name, Address: a.Addr, Serial: a.Serial, Node: s.c.Node,
			SentRevision: a.Sent, LagRevisions: a.Lag, Since: a.Since.UTC().Format(time.RFC3339),
			AppliedRevision: a.Applied, LagSeconds: a.LagTime.Seconds(),
		})
	}
	if req.GetLocal() || s.c.Others == nil || s.c.Dial == nil {
		return resp, nil
	}
	// The caller's token is valid on every node: pass it on.
	md, _ := metadata.FromIncomingContext(ctx)
	out := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", first(md.Get("authorization"))))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, url := range s.c.Others(ctx) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(out, 2*time.Second)
			defer cancel()
			var r *sowerv1.ListFollowersResponse
			cli, err := s.c.Dial(url)
			if err == nil {
				r, err = cli.ListFollowers(cctx, &sowerv1.ListFollowersRequest{Local: true})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				resp.Unreachable = append(resp.Unreachable, name)
				return
			}
			resp.Followers = append(resp.Followers, r.GetFollowers()...)
		}()
	}
	wg.Wait()
	sort.Slice(resp.Followers, func(i, j int) bool {
		a, b := resp.Followers[i], resp.Followers[j]
		return a.Node < b.Node || a.Node == b.Node && a.Name < b.Name
	})
	sort.Strings(resp.Unreachable)
	return resp, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// MessageToProto converts a feed message.
func MessageToProto(m replica.Message) *sowerv1.FollowResponse {
	r := &sowerv1.FollowResponse{Head: m.Head}
	switch {
	case m.SnapshotStart > 0:
		r.Part = &sowerv1.FollowResponse_SnapshotStart{SnapshotStart: m.SnapshotStart}
	case m.Snapshot != nil:
		r.Part = &sowerv1.FollowResponse_Snapshot{Snapshot: &sowerv1.SnapshotPage{Kvs: kvsToProto(m.Snapshot)}}
	case m.SnapshotEnd:
		r.Part = &sowerv1.FollowResponse_SnapshotEnd{SnapshotEnd: true}
	case m.Change != nil:
		r.Part = &sowerv1.FollowResponse_Change{Change: &sowerv1.Change{Revision: m.Change.Revision, Puts: kvsToProto(m.Change.Puts), Deletes: m.Change.Deletes}}
	default:
		r.Part = &sowerv1.FollowResponse_Progress{Progress: m.Progress}
	}
	return r
}

// MessageFromProto converts a feed message back.
func MessageFromProto(r *sowerv1.FollowResponse) replica.Message {
	m := replica.Message{Head: r.GetHead()}
	switch p := r.GetPart().(type) {
	case *sowerv1.FollowResponse_SnapshotStart:
		m.SnapshotStart = p.SnapshotStart
	case *sowerv1.FollowResponse_Snapshot:
		m.Snapshot = kvsFromProto(p.Snapshot.GetKvs())
	case *sowerv1.FollowResponse_SnapshotEnd:
		m.SnapshotEnd = p.SnapshotEnd
	case *sowerv1.FollowResponse_Change:
		m.Change = &replica.Change{Revision: p.Change.GetRevision(), Puts: kvsFromProto(p.Change.GetPuts()), Deletes: p.Change.GetDeletes()}
	case *sowerv1.FollowResponse_Progress:
		m.Progress = p.Progress
	}
	return m
}

func kvsToProto(kvs []replica.KV) []*sowerv1.KeyValue {
	out := make([]*sowerv1.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = &sowerv1.KeyValue{Key: kv.Key, Value: kv.Value}
	}
	return out
}

func kvsFromProto(kvs []*sowerv1.KeyValue) []replica.KV {
	out := make([]replica.KV, len(kvs))
	for i, kv := range kvs {
		out[i] = replica.KV{Key: kv.GetKey(), Value: kv.GetValue()}
	}
	return out
}
