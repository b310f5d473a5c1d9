package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/replica"
)

// FeedConfig is what a Follower's feed client needs.
type FeedConfig struct {
	// Endpoints lists the quorum nodes' REST URLs (the seed's, then the
	// replicated node list); the feed is served on every node's REST port
	// as well as its gRPC port. Required.
	Endpoints func() []string
	// TLS returns the mutual-TLS client config (the Follower's
	// replication certificate) for a node's host name. Required.
	TLS func(serverName string) (*tls.Config, error)
	// OnLeader is told the Leader each message names. Optional.
	OnLeader func(name, url string)
	// Silence is how long a stream may stay silent before it is given up
	// (default 5s; the hub sends a progress mark every second when idle).
	Silence time.Duration
	// AckEvery is the least time between two acknowledgements of the
	// applied revision (default 100ms): each costs the serving node a
	// receive, so at a hundred writes a second twenty Followers would
	// send it two thousand. What the node reports lags by at most this.
	AckEvery time.Duration
	Logger   *slog.Logger
}

// feedWindow is the feed connection's HTTP/2 flow-control window, for the
// stream and the connection: gRPC's largest (a snapshot page is megabytes).
const feedWindow = 16 << 20

// Feed is replica.Feed over gRPC: each Open tries the next node, so a
// Follower whose node died continues from its cursor on another one.
type Feed struct {
	c FeedConfig

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	next  int
	// current is the node of the last stream opened.
	current string
}

var _ replica.Feed = (*Feed)(nil)

// NewFeed returns the feed client.
func NewFeed(c FeedConfig) (*Feed, error) {
	if c.Endpoints == nil || c.TLS == nil {
		return nil, errors.New("replication feed: Endpoints and TLS are required")
	}
	if c.Silence <= 0 {
		c.Silence = 5 * time.Second
	}
	if c.AckEvery <= 0 {
		c.AckEvery = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Feed{c: c, conns: map[string]*grpc.ClientConn{}}, nil
}

// Current is the URL of the node the feed last streamed from.
func (f *Feed) Current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.current
}

// Close closes every connection.
func (f *Feed) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, c := range f.conns {
		c.Close()
		delete(f.conns, k)
	}
	return nil
}

func (f *Feed) conn(endpoint string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.conns[endpoint]; ok {
		return c, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("replication feed: endpoint %q is not a URL", endpoint)
	}
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = "443"
	}
	tc, err := f.c.TLS(host)
	if err != nil {
		return nil, err
	}
	c, err := grpc.NewClient(net.JoinHostPort(host, port),
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, MaxDelay: 2 * time.Second}, MinConnectTimeout: 2 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
		// Fixed windows, as large as gRPC's estimator would grow them:
		// the estimator pings the node on every received message when
		// messages are a few milliseconds apart (a change per write), a
		// ping the node reads and answers, both ends' CPU per change.
		grpc.WithStaticStreamWindowSize(feedWindow), grpc.WithStaticConnWindowSize(feedWindow))
	if err != nil {
		return nil, fmt.Errorf("replication feed: %s: %w", endpoint, err)
	}
	f.conns[endpoint] = c
	return c, nil
}

// Open implements replica.Feed.
func (f *Feed) Open(ctx context.Context, cursor int64) (replica.Stream, error) {
	eps := f.c.Endpoints()
	if len(eps) == 0 {
		return nil, errors.New("replication feed: no quorum node is known; the seed lists none")
	}
	f.mu.Lock()
	ep := eps[f.next%len(eps)]
	f.next++
	f.current = ep
	f.mu.Unlock()
	conn, err := f.conn(ep)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	st, err := sowerv1.NewReplicationServiceClient(conn).Follow(sctx)
	if err == nil {
		err = st.Send(&sowerv1.FollowRequest{Cursor: cursor})
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("replication feed: %s: %w", ep, err)
	}
	s := &stream{st: st, cancel: cancel, f: f, ep: ep, ackc: make(chan struct{}, 1)}
	go s.sendAcks(sctx)
	// A node that stops answering without closing the connection (a
	// partition, a stopped process) is given up after the silence.
	s.timer = time.AfterFunc(f.c.Silence, cancel)
	return s, nil
}

type stream struct {
	st     grpc.BidiStreamingClient[sowerv1.FollowRequest, sowerv1.FollowResponse]
	cancel context.CancelFunc
	timer  *time.Timer
	f      *Feed
	ep     string
	// applied is the latest revision to acknowledge; ackc wakes sendAcks.
	applied atomic.Int64
	ackc    chan struct{}
}

var _ replica.Acker = (*stream)(nil)

// Ack implements replica.Acker: it never waits for the network; acks that
// pile up while one is being sent collapse into the latest.
func (s *stream) Ack(applied int64) {
	for {
		cur := s.applied.Load()
		if applied <= cur || s.applied.CompareAndSwap(cur, applied) {
			break
		}
	}
	select {
	case s.ackc <- struct{}{}:
	default:
	}
}

func (s *stream) sendAcks(ctx context.Context) {
	var sent int64
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		// At most one acknowledgement per AckEvery: the first after a
		// quiet spell goes at once, later ones carry the latest revision.
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
		select {
		case <-ctx.Done():
			return
		case <-s.ackc:
		}
		if a := s.applied.Load(); a > sent {
			if err := s.st.Send(&sowerv1.FollowRequest{Applied: a}); err != nil {
				return // Recv reports why the stream ended
			}
			sent = a
		}
		pause.Reset(s.f.c.AckEvery)
	}
}

func (s *stream) Recv() (replica.Message, error) {
	r, err := s.st.Recv()
	if err != nil {
		return replica.Message{}, fmt.Errorf("replication feed: %s: %w", s.ep, err)
	}
	s.timer.Reset(s.f.c.Silence)
	if s.f.c.OnLeader != nil {
		s.f.c.OnLeader(r.GetLeaderName(), r.GetLeaderUrl())
	}
	return MessageFromProto(r), nil
}

func (s *stream) Close() error {
	s.timer.Stop()
	s.cancel()
	return nil
}
