package server

import (
	"context"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/pki"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/replica"
	"github.com/sowerproject/sower/server/api/replication"
	"github.com/sowerproject/sower/server/etcdstore"
)

// newHub is the node's replication fan-out over its own etcd member.
func (s *Server) newHub(etcd *cluster.Etcd) (*replica.Hub, error) {
	return replica.NewHub(replica.HubConfig{
		Client:     etcd.Client(),
		SnapshotAt: etcdstore.PolicySnapshotRevision(etcd.Client()),
		RingSize:   s.c.ReplicationRing,
		Logger:     s.lg,
	})
}

// replicationService serves the feed on this node. Revoking a Follower's
// seed cuts its stream at once (the revocation watch calls disconnect).
func (s *Server) replicationService(d serviceDeps) (*replication.Service, error) {
	dialer := &nodeDialer{np: d.pki, conns: map[string]*grpc.ClientConn{}}
	d.authn.onClose(dialer.close)
	return replication.New(replication.Config{
		Hub:  d.hub,
		Node: s.c.Name,
		Leader: func() (string, string) {
			l, ok := d.quorum.election.Leader()
			if !ok {
				return "", ""
			}
			return l.Name, l.URL
		},
		Revoked: d.pki.revoked.IsRevoked,
		Others: func(ctx context.Context) map[string]string {
			nodes, _ := cluster.Nodes(ctx, d.etcd.Client())
			out := map[string]string{}
			for _, n := range nodes {
				if n.Name != s.c.Name {
					out[n.Name] = n.URL
				}
			}
			return out
		},
		Dial: dialer.dial,
		// Followers' events: stored once each, on whichever quorum
		// node they replicate from.
		Audit: etcdstore.NewAuditTrail(d.etcd.Client(), etcdstore.TrailConfig{}),
		// The node's gRPC server runs replication.Codec (server.go).
		SharedEncoding: true,
		Logger:         s.lg,
	})
}

// disconnectRevoked cuts every Follower stream whose certificate is revoked.
func disconnectRevoked(hub *replica.Hub, revoked *pki.RevokedSet) {
	hub.Disconnect(func(serial string) bool {
		n, ok := new(big.Int).SetString(serial, 16)
		return ok && revoked.IsRevoked(n)
	})
}

// nodeDialer reaches other quorum nodes' gRPC services on their REST
// port with this node's certificate.
type nodeDialer struct {
	np    *nodePKI
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (d *nodeDialer) dial(u string) (sowerv1.ReplicationServiceClient, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.conns[u]; ok {
		return sowerv1.NewReplicationServiceClient(c), nil
	}
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	tc, err := pki.ClientTLS(d.np.roots, pu.Hostname(), d.np.node, pki.WithRevocations(d.np.revoked))
	if err != nil {
		return nil, err
	}
	c, err := grpc.NewClient(pu.Host, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, err
	}
	d.conns[u] = c
	return sowerv1.NewReplicationServiceClient(c), nil
}

func (d *nodeDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, c := range d.conns {
		c.Close()
		delete(d.conns, k)
	}
}

// withReplication wraps a Leader's or Standby's HTTP handler: gRPC calls
// of the replication service on the REST port go to the gRPC server (a
// Follower's seed lists REST URLs only), and every answer carries the
// node's etcd revision (X-Sower-Revision), which a client passes to a
// Follower as X-Sower-Min-Revision to read its own write there.
func withReplication(next http.Handler, gs *grpc.Server, etcd *cluster.Etcd) http.Handler {
	prefix := "/" + sowerv1.ReplicationService_ServiceDesc.ServiceName + "/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") && strings.HasPrefix(r.URL.Path, prefix) {
			gs.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&revisionWriter{ResponseWriter: w, rev: etcd.SeenRevision}, r)
	})
}

// revisionWriter stamps the revision when the handler writes its header:
// after the write it answers for has committed.
type revisionWriter struct {
	http.ResponseWriter
	rev     func() int64
	stamped bool
}

func (w *revisionWriter) stamp() {
	if !w.stamped {
		w.stamped = true
		w.Header().Set(RevisionHeader, strconv.FormatInt(w.rev(), 10))
	}
}

func (w *revisionWriter) WriteHeader(code int) { w.stamp(); w.ResponseWriter.WriteHeader(code) }

func (w *revisionWriter) Write(b []byte) (int, error) { w.stamp(); return w.ResponseWriter.Write(b) }

func (w *revisionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *revisionWriter) Flush() {
	w.stamp()
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

// registerHubMetrics adds the serving side's sower_follower_* series.
func registerHubMetrics(m *metrics, hub *replica.Hub) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_attached", Help: "Followers replicating from this node."},
			func() float64 { return float64(len(hub.Followers())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_max_lag_revisions", Help: "The largest lag, in revisions, of what a Follower attached to this node acknowledged as applied."},
			func() float64 {
				var lag int64
				for _, f := range hub.Followers() {
					lag = max(lag, f.Lag)
				}
				return float64(lag)
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_max_lag_seconds", Help: "The age of the oldest change a Follower attached to this node has not acknowledged as applied (0: all current)."},
			func() float64 {
				var lag float64
				for _, f := range hub.Followers() {
					lag = max(lag, f.LagTime.Seconds())
				}
				return lag
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_feed_revision", Help: "The last etcd revision this node's replication feed has seen."},
			func() float64 { return float64(hub.Revision()) }),
	)
}
