package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sowerproject/sower/authn"
	sowerproto "github.com/sowerproject/sower/proto"
	"github.com/sowerproject/sower/server/conjur"
)

// httpHandler serves the REST gateway and the node's plain endpoints:
//
//	/healthz       200 while the process lives
//	/readyz        200 when the node can take its role's writes (see readiness), else 503
//	/metrics       Prometheus metrics
//	/openapi.json  the OpenAPI document of the /v1 API
//	/ca            the cluster CA bundle (PEM), for clients that hold only a pin
//
// Conjur's own paths (/authn/..., /whoami, ...) go to the Conjur adapter,
// everything else to the /v1 gateway.
func (s *Server) httpHandler(gw *runtime.ServeMux, cj *conjur.Handler, n *node, m *metrics, np *nodePKI) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.readiness(r.Context(), n); err != "" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.HandleFunc("GET /ca", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(np.ca.BundlePEM())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(sowerproto.OpenAPI)
	})
	cj.Register(mux) // and Conjur's error JSON for every path it does not know
	mux.Handle("/v1/", gw)
	return withClientAddr(mux, s.c.TrustedProxies)
}

// withClientAddr makes r.RemoteAddr the client's address and removes
// X-Forwarded-For, so that the Conjur adapter and the /v1 gateway (which
// pass the address on to gRPC, where restricted_to, the rate limits and the
// audit trail read it) see one address that this node decided: the
// connection's, or, when the connection comes from a trusted proxy, the
// one authn.ClientAddr reads from X-Forwarded-For. Without trusted proxies
// the header is never believed.
func withClientAddr(h http.Handler, trusted authn.Networks) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, "cannot read the client address", http.StatusBadRequest)
			return
		}
		client := authn.ClientAddr(ap.Addr(), r.Header.Values("X-Forwarded-For"), trusted)
		r2 := *r
		r2.Header = r.Header.Clone()
		r2.Header.Del("X-Forwarded-For")
		r2.RemoteAddr = netip.AddrPortFrom(client, ap.Port()).String()
		h.ServeHTTP(w, &r2)
	})
}

// readiness returns "" when the node can serve what its role serves, else
// why not: it has finished starting, a Leader is elected (the raft leader
// alone is not enough), and a node the election names Leader holds the term
// that lets it write (on a restart the election key of its previous term
// names it Leader until that lease expires, and writes would be refused
// with NOT_LEADER until it wins again).
func (s *Server) readiness(ctx context.Context, n *node) string {
	select {
	case <-s.ready:
	default:
		return "starting"
	}
	l, known := n.election.Leader()
	if !known {
		return "no Leader is elected yet"
	}
	if l.MemberID == n.etcd.Info().MemberID && n.election.Check() != nil {
		return "becoming Leader: not taking writes yet"
	}
	// A serializable read proves the local member answers without
	// waiting for a quorum round-trip.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := n.etcd.Client().Get(ctx, keyClusterMeta, clientv3Serializable()...); err != nil {
		return "etcd does not answer reads"
	}
	return ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
