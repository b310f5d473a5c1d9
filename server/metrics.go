package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/server/etcdstore"
)

// metrics are a node's Prometheus series. Each Server has its own registry
// (no package state), so tests can run several nodes in one process.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(info func() cluster.Info) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sower_grpc_requests_total",
			Help: "gRPC requests handled, by full method and status code (REST calls included: the gateway calls gRPC).",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sower_grpc_request_duration_seconds",
			Help:    "gRPC request latency, by full method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method"}),
	}
	m.reg.MustRegister(m.requests, m.latency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sower_etcd_has_leader",
			Help: "1 when this node's etcd member knows a raft leader, else 0.",
		}, func() float64 { return boolGauge(info().LeaderID != 0) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sower_etcd_is_leader",
			Help: "1 when this node's etcd member is the raft leader, else 0.",
		}, func() float64 { return boolGauge(info().IsLeader()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sower_etcd_applied_index",
			Help: "The last raft index this node's etcd member applied.",
		}, func() float64 { return float64(info().RaftIndex) }),
	)
	return m
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) observe(method string, start time.Time, err error) {
	m.requests.WithLabelValues(method, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}

// registerAuditMetrics adds the audit trail's series: what this node's
// recorder stored, dropped (its memory bound was reached) and holds, and
// what the Leader's retention pruned, by bound.
func registerAuditMetrics(m *metrics, a *authnParts) {
	pruned := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sower_audit_pruned_events_total",
		Help: "Audit events the Leader deleted from the trail by retention, by bound (max_age, max_events).",
	}, []string{"bound"})
	a.pruned = func(p etcdstore.Pruned) {
		pruned.WithLabelValues("max_age").Add(float64(p.Age))
		pruned.WithLabelValues("max_events").Add(float64(p.Count))
	}
	m.reg.MustRegister(pruned,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sower_audit_recorded_events_total",
			Help: "Audit events this node's recorder stored in the trail.",
		}, func() float64 { return float64(a.recorder.Stored()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sower_audit_dropped_events_total",
			Help: "Audit events this node's recorder dropped: its in-memory queue was full (the trail unreachable for long) or the trail refused them.",
		}, func() float64 { return float64(a.recorder.Dropped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sower_audit_pending_events",
			Help: "Audit events this node's recorder holds in memory, not yet stored.",
		}, func() float64 { return float64(a.recorder.Pending()) }),
	)
}
