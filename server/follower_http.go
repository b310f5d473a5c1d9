package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	sowerproto "github.com/sowerproject/sower/proto"
	"github.com/sowerproject/sower/replica"
	"github.com/sowerproject/sower/server/conjur"
)

// Read-after-write headers. Every answer of a Follower (and of a Leader
// or Standby) carries the source revision it was served at; a client that
// wrote on the Leader sends the revision it got back as
// X-Sower-Min-Revision to read its write on a Follower.
const (
	RevisionHeader    = "X-Sower-Revision"
	MinRevisionHeader = "X-Sower-Min-Revision"
	// LeaderHeader names the Leader's URL on a refused write.
	LeaderHeader = "X-Sower-Leader"
)

// httpHandler serves a Follower's HTTP port: Conjur's read endpoints and
// /v1 through the same handlers as a Leader, /health (Conjur's, with the
// replication state), /healthz, /readyz, /metrics, /openapi.json and /ca.
func (f *Follower) httpHandler(gw *runtime.ServeMux, cj *conjur.Handler, m *metrics, ft *followerTLS) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		h := f.health()
		if !h.OK {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": h.Reason})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		h := f.health()
		code := http.StatusOK
		if !h.OK {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h)
	})
	mux.HandleFunc("GET /ca", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(pemOf(ft.roots))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(sowerproto.OpenAPI)
	})
	cj.Register(mux) // and Conjur's error JSON for every path it does not know
	mux.Handle("/v1/", gw)
	return f.readOnly(mux)
}

// followerHealth is /health: Conjur's ok flag plus the replication state.
type followerHealth struct {
	OK          bool   `json:"ok"`
	Role        string `json:"role"`
	Reason      string `json:"reason,omitempty"`
	Replication struct {
		State           replica.State `json:"state"`
		AppliedRevision int64         `json:"applied_revision"`
		SourceRevision  int64         `json:"source_revision"`
		LagRevisions    int64         `json:"lag_revisions"`
		LagSeconds      float64       `json:"lag_seconds"`
		LastContact     *time.Time    `json:"last_contact,omitempty"`
		Node            string        `json:"node,omitempty"`
		Leader          string        `json:"leader,omitempty"`
		Resyncs         int           `json:"resyncs"`
		MaxStaleness    string        `json:"max_staleness,omitempty"`
	} `json:"replication"`
	// Audit is the audit queue (absent with --audit=false).
	Audit *followerAuditHealth `json:"audit,omitempty"`
}

// staleness is how old the copy may be: the time since it was last known
// to be as new as the source (since the start when never).
func staleness(st replica.Status, started time.Time) time.Duration {
	at := st.CurrentAt
	if at.IsZero() {
		at = started
	}
	return time.Since(at)
}

func (f *Follower) health() followerHealth {
	var h followerHealth
	h.Role = "follower"
	st := f.Replica().Status()
	h.Replication.State = st.State
	h.Replication.AppliedRevision, h.Replication.SourceRevision = st.Applied, st.Head
	h.Replication.LagRevisions = max(0, st.Head-st.Applied)
	h.Replication.LagSeconds = staleness(st, f.started).Seconds()
	if !st.LastContact.IsZero() {
		lc := st.LastContact.UTC()
		h.Replication.LastContact = &lc
	}
	h.Replication.Node = f.feed.Current()
	h.Replication.Leader = f.Leader().URL
	h.Replication.Resyncs = st.Resyncs
	h.OK = true
	if f.audit != nil {
		h.Audit = auditHealth(f.audit)
		if f.auditRefuses() {
			h.OK, h.Reason = false, "the audit queue is full and --audit-queue-full is refuse: authentication and secret reads are refused until a quorum node takes its events"
		}
	}
	if f.c.MaxStaleness > 0 {
		h.Replication.MaxStaleness = f.c.MaxStaleness.String()
		if staleness(st, f.started) > f.c.MaxStaleness {
			h.OK, h.Reason = false, fmt.Sprintf("the copy is older than --max-staleness %s: no quorum node has answered since %s", f.c.MaxStaleness, st.CurrentAt.UTC().Format(time.RFC3339))
		}
	}
	return h
}

// isWrite reports whether a request would change the cluster's state. A
// Follower answers reads and logins; everything else is a write.
func isWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	case http.MethodPost:
		p := r.URL.Path
		// Logins: Conjur's authenticators (authn, authn-jwt, authn-k8s, …)
		// end in /authenticate; /v1 has login and authenticate.
		if strings.HasSuffix(p, "/authenticate") || strings.HasPrefix(p, "/v1/authn/") && strings.HasSuffix(p, "/login") {
			return false
		}
	}
	return true
}

// needsFresh reports whether a request is refused while the copy is
// older than --max-staleness: authentication and secret reads.
func needsFresh(r *http.Request) bool {
	p := r.URL.Path
	return strings.HasPrefix(p, "/authn") || strings.HasPrefix(p, "/secrets") || strings.HasPrefix(p, "/v1/authn") || strings.HasPrefix(p, "/v1/secrets")
}

// conjurError writes Conjur's error JSON.
func conjurError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": msg}})
}

// readOnly is the Follower's front door: it refuses writes (Conjur's 405,
// naming the Leader), waits for X-Sower-Min-Revision, enforces
// --max-staleness, stamps X-Sower-Revision, and tells the audit hook.
func (f *Follower) readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		rep := f.Replica()
		defer func() {
			f.c.Audit.Served(ServedRequest{Method: r.Method, Path: r.URL.Path, RemoteAddr: r.RemoteAddr, Status: rw.code, Revision: rep.Applied(), At: time.Now()})
		}()
		if v := r.Header.Get(MinRevisionHeader); v != "" {
			want, err := strconv.ParseInt(v, 10, 64)
			if err != nil || want < 0 {
				rw.Header().Set(RevisionHeader, strconv.FormatInt(rep.Applied(), 10))
				conjurError(rw, http.StatusBadRequest, MinRevisionHeader+" must be a revision number, as "+RevisionHeader+" of a Leader's answer gives it")
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), f.c.MinRevisionWait)
			err = rep.WaitFor(ctx, want)
			if err == nil {
				err = f.graphAt(ctx) // permission checks and resources read the graph
			}
			cancel()
			if err != nil {
				cur := rep.Applied()
				rw.Header().Set(RevisionHeader, strconv.FormatInt(cur, 10))
				conjurError(rw, http.StatusPreconditionFailed, fmt.Sprintf("this Follower is at revision %d and did not reach %d within %s; retry, or read from the Leader", cur, want, f.c.MinRevisionWait))
				return
			}
		}
		rw.Header().Set(RevisionHeader, strconv.FormatInt(rep.Applied(), 10))
		if isWrite(r) {
			if l := f.Leader(); l.URL != "" {
				rw.Header().Set(LeaderHeader, l.URL)
			}
			conjurError(rw, http.StatusMethodNotAllowed, "Write operations are not allowed")
			return
		}
		if f.c.MaxStaleness > 0 && needsFresh(r) {
			if age := staleness(rep.Status(), f.started); age > f.c.MaxStaleness {
				conjurError(rw, http.StatusServiceUnavailable, fmt.Sprintf("this Follower's copy is %s old, more than --max-staleness %s: no quorum node answers it; use another Follower or the Leader", age.Round(time.Second), f.c.MaxStaleness))
				return
			}
		}
		if needsFresh(r) && f.auditRefuses() {
			f.refuseForAudit(rw)
			return
		}
		next.ServeHTTP(rw, r)
	})
}

// statusWriter remembers the status code for the audit hook.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

// registerFollowerMetrics adds the Follower's replication series.
func registerFollowerMetrics(m *metrics, rep func() *replica.Replica, maxStale time.Duration, started time.Time) {
	status := func() replica.Status { return rep().Status() }
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_applied_revision", Help: "The source etcd revision this Follower's copy reflects."},
			func() float64 { return float64(status().Applied) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_source_revision", Help: "The last revision the quorum was known to be at."},
			func() float64 { return float64(status().Head) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_lag_revisions", Help: "Revisions this Follower's copy is behind the quorum, as last known."},
			func() float64 { st := status(); return float64(max(0, st.Head-st.Applied)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_staleness_seconds", Help: "Seconds since the copy was last known to be as new as the quorum."},
			func() float64 { return staleness(status(), started).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_last_contact_seconds", Help: "Seconds since the last message from a quorum node (-1: none yet)."},
			func() float64 {
				lc := status().LastContact
				if lc.IsZero() {
					return -1
				}
				return time.Since(lc).Seconds()
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_resyncs_total", Help: "Snapshots taken after the first (the cursor was compacted away)."},
			func() float64 { return float64(status().Resyncs) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_follower_stale", Help: "1 when the copy is older than --max-staleness (refusing authentication and secret reads)."},
			func() float64 { return boolGauge(maxStale > 0 && staleness(status(), started) > maxStale) }),
	)
}

// pemOf encodes certificates as PEM.
func pemOf(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
