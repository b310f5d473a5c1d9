package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/audit/queue"
	"github.com/sowerproject/sower/server/etcdstore"
)

// authnRecorder turns the authentication service's audit records into
// audit events. The Detail of a refusal stays in the log: the event keeps
// the reason only.
type authnRecorder struct{ rec audit.Recorder }

func (a authnRecorder) Record(e etcdstore.AuthnEvent) {
	a.rec.Record(audit.Event{
		At: e.At, Kind: audit.KindAuthn, Action: "authenticate", Outcome: e.Outcome,
		Identity: clipField(e.Identity), Source: clipField(e.Source), Authenticator: clipField(e.Authenticator), Reason: clipField(e.Reason),
	})
}

// clipField keeps a field within audit.MaxFieldBytes (on a rune boundary)
// so that a long claimed identity is recorded, cut, rather than refused.
func clipField(s string) string {
	if len(s) <= audit.MaxFieldBytes {
		return s
	}
	s = s[:audit.MaxFieldBytes]
	for len(s) > 0 && s[len(s)-1]&0xc0 == 0x80 {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xc0 {
		s = s[:len(s)-1]
	}
	return s
}

// followerAuditHealth is the audit part of a Follower's /health.
type followerAuditHealth struct {
	Queued        int     `json:"queued_events"`
	QueuedBytes   int64   `json:"queued_bytes"`
	MaxEvents     int     `json:"max_events"`
	MaxBytes      int64   `json:"max_bytes"`
	Full          bool    `json:"full"`
	Policy        string  `json:"full_policy"`
	OldestSeconds float64 `json:"oldest_seconds"`
	Synced        uint64  `json:"synced_sequence"`
	Forwarded     uint64  `json:"forwarded_sequence"`
	Dropped       uint64  `json:"dropped"`
	Refused       uint64  `json:"refused"`
	WriteError    string  `json:"write_error,omitempty"`
}

func auditHealth(q *queue.Queue) *followerAuditHealth {
	st := q.Stats()
	h := &followerAuditHealth{Queued: st.Events, QueuedBytes: st.Bytes, MaxEvents: st.MaxEvents, MaxBytes: st.MaxBytes,
		Full: st.Full, Policy: string(st.Policy), Synced: st.Synced, Forwarded: st.Cursor, Dropped: st.Dropped,
		Refused: st.Refused, WriteError: st.WriteError}
	if !st.Oldest.IsZero() {
		h.OldestSeconds = time.Since(st.Oldest).Seconds()
	}
	return h
}

// auditRefuses reports whether the Follower refuses authentication and
// secret reads because its audit queue is full under --audit-queue-full
// refuse.
func (f *Follower) auditRefuses() bool {
	return f.audit != nil && f.audit.Policy() == queue.Refuse && f.audit.Full()
}

// refuseForAudit answers a request the full audit queue cannot record.
func (f *Follower) refuseForAudit(w http.ResponseWriter) {
	st := f.audit.Stats()
	conjurError(w, http.StatusServiceUnavailable, fmt.Sprintf("this Follower's audit queue is full (%d events, %d bytes; --audit-queue-max-events %d, --audit-queue-max-bytes %d) and --audit-queue-full is refuse: no quorum node has taken its events; use another Follower or the Leader",
		st.Events, st.Bytes, st.MaxEvents, st.MaxBytes))
}

// refuseUnaudited is refuseForAudit for gRPC callers: authentication and
// secret reads are Unavailable while the full queue refuses.
func (f *Follower) refuseUnaudited(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if f.auditRefuses() && (strings.HasPrefix(info.FullMethod, "/sower.v1.AuthnService/") || strings.HasPrefix(info.FullMethod, "/sower.v1.SecretsService/")) {
		return nil, status.Error(codes.Unavailable, "this Follower's audit queue is full and --audit-queue-full is refuse: no quorum node has taken its events; use another Follower or the Leader")
	}
	return h(ctx, req)
}

// registerAuditQueueMetrics adds the sower_audit_queue_* series.
func registerAuditQueueMetrics(m *metrics, q *queue.Queue) {
	gauge := func(name, help string, v func(queue.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return v(q.Stats()) })
	}
	counter := func(name, help string, v func(queue.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(q.Stats())) })
	}
	m.reg.MustRegister(
		gauge("sower_audit_queue_events", "Audit events queued on this Follower and not yet stored by the quorum.", func(s queue.Stats) float64 { return float64(s.Events) }),
		gauge("sower_audit_queue_bytes", "Bytes of the audit events queued and not yet stored by the quorum.", func(s queue.Stats) float64 { return float64(s.Bytes) }),
		gauge("sower_audit_queue_max_events", "--audit-queue-max-events.", func(s queue.Stats) float64 { return float64(s.MaxEvents) }),
		gauge("sower_audit_queue_max_bytes", "--audit-queue-max-bytes.", func(s queue.Stats) float64 { return float64(s.MaxBytes) }),
		gauge("sower_audit_queue_full", "1 when the audit queue has no room for another event.", func(s queue.Stats) float64 { return boolGauge(s.Full) }),
		gauge("sower_audit_queue_oldest_seconds", "Age of the oldest queued audit event (0: none queued).", func(s queue.Stats) float64 {
			if s.Oldest.IsZero() {
				return 0
			}
			return time.Since(s.Oldest).Seconds()
		}),
		counter("sower_audit_queue_recorded_total", "Audit events recorded into the queue.", func(s queue.Stats) uint64 { return s.Recorded }),
		counter("sower_audit_queue_forwarded_total", "Audit events the quorum stored.", func(s queue.Stats) uint64 { return s.Acked }),
		counter("sower_audit_queue_dropped_total", "Audit events dropped, oldest first, because the queue was full (--audit-queue-full drop-oldest).", func(s queue.Stats) uint64 { return s.Dropped }),
		counter("sower_audit_queue_refused_total", "Audit events not recorded because the queue was full (--audit-queue-full refuse).", func(s queue.Stats) uint64 { return s.Refused }),
		counter("sower_audit_queue_invalid_total", "Audit events not recorded because they failed validation (a bug: the log names them).", func(s queue.Stats) uint64 { return s.Invalid }),
	)
}
