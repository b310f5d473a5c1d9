package clustertest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/pki"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/replication"
)

// followerAudit is the audit part of a Follower's /health.
type followerAudit struct {
	OK    bool `json:"ok"`
	Audit *struct {
		Queued    int    `json:"queued_events"`
		Full      bool   `json:"full"`
		Policy    string `json:"full_policy"`
		Synced    uint64 `json:"synced_sequence"`
		Forwarded uint64 `json:"forwarded_sequence"`
		Refused   uint64 `json:"refused"`
		Dropped   uint64 `json:"dropped"`
	} `json:"audit"`
}

// auditHealth reads p's /health whatever its status (a Follower whose
// full queue refuses answers 503).
func (p *proc) auditHealth() (followerAudit, error) {
	var fa followerAudit
	_, _, body, err := p.req(http.MethodGet, "/health", "", "")
	if err != nil {
		return fa, err
	}
	if err := json.Unmarshal([]byte(body), &fa); err != nil || fa.Audit == nil {
		return fa, fmt.Errorf("health of %s holds no audit part: %s (%v)", p.name, body, err)
	}
	return fa, nil
}

// trailEvents reads every event in the trail from p's etcd member with
// p's node certificate.
func trailEvents(h *harness, p *proc) (map[string]audit.Event, []string, error) {
	tlsDir := filepath.Join(p.dir, "tls")
	cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "node.pem"), filepath.Join(tlsDir, "node-key.pem"))
	if err != nil {
		return nil, nil, err
	}
	rootsPEM, err := os.ReadFile(h.caFile())
	if err != nil {
		return nil, nil, err
	}
	roots, err := pki.ParseCertificatesPEM(rootsPEM)
	if err != nil {
		return nil, nil, err
	}
	tc, err := pki.ClientTLS(roots, p.ip, nil)
	if err != nil {
		return nil, nil, err
	}
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + p.etcdc}, TLS: tc, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/sower/audit/events/", clientv3.WithPrefix())
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]audit.Event{}
	var raw []string
	for _, kv := range resp.Kvs {
		var e audit.Event
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		if _, dup := byID[e.ID]; dup {
			return nil, nil, fmt.Errorf("event %s is stored twice", e.ID)
		}
		if string(kv.Key) != "/sower/audit/events/"+e.Key() {
			return nil, nil, fmt.Errorf("event %s is stored under %s, not its key", e.ID, kv.Key)
		}
		byID[e.ID] = e
		raw = append(raw, string(kv.Value))
	}
	return byID, raw, nil
}

// nodeEvents are the events of one node, by sequence.
func nodeEvents(all map[string]audit.Event, node string) []audit.Event {
	var out []audit.Event
	for _, e := range all {
		if e.Node == node {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return seqOf(out[i]) < seqOf(out[j]) })
	return out
}

func seqOf(e audit.Event) int {
	var n int
	fmt.Sscanf(e.ID[strings.LastIndex(e.ID, "/")+1:], "%d", &n)
	return n
}

// checkContiguous fails unless events are exactly sequences 1..want.
func checkContiguous(t *testing.T, node string, events []audit.Event, want int) {
	t.Helper()
	if len(events) != want {
		t.Errorf("%s: %d events in the trail, want %d", node, len(events), want)
	}
	for i, e := range events {
		if seqOf(e) != i+1 {
			t.Errorf("%s: event %d of the trail is %s, want sequence %d (none lost, none twice)", node, i, e.ID, i+1)
			return
		}
	}
}

// TestFollowerAudit is issue 13's Follower acceptance on real processes:
// Followers serve logins and secret reads while the Leader of a one-node
// cluster is down, queue the events on their own disk, and once it is back
// every event is in the trail exactly once; a Follower whose full queue
// refuses requests, killed with -9 and restarted, loses none of the events
// it had written to disk.
func TestFollowerAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	h := newHarness(t, "prod", 2)
	l1 := h.node("leader-1", "127.0.0.2")
	if err := l1.start("--cluster", "prod"); err != nil {
		t.Fatal(err)
	}
	admin, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	pol := strings.Replace(h.clusterPolicy("leader-1"), "    - !webservice\n",
		"    - !webservice\n      annotations:\n        sower/follower-hostnames: \"*."+followerDomain+"\"\n", 1) + `
- !host app
- !variable db/password
- !permit
  role: !host app
  privileges: [read, execute]
  resource: !variable db/password
- !policy
  id: sower
  body:
  - !webservice audit
- !permit
  role: !user admin
  privilege: read
  resource: !webservice sower/audit
`
	code, body, err := h.loadPolicy(l1.url(), admin, pol)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("load policy: %d %s %v", code, body, err)
	}
	var loaded struct {
		CreatedRoles map[string]struct {
			APIKey string `json:"api_key"`
		} `json:"created_roles"`
	}
	if err := json.Unmarshal([]byte(body), &loaded); err != nil {
		t.Fatal(err)
	}
	appKey := loaded.CreatedRoles[account+":host:app"].APIKey
	const secretValue = "s3cret-audit-value"
	if _, err := setSecret(l1, admin, secretValue); err != nil {
		t.Fatal(err)
	}

	const refuseAt = 12
	f1, _ := h.followerNode(l1.url(), "follower-1", "127.0.0.5")
	f2, _ := h.followerNode(l1.url(), "follower-2", "127.0.0.6")
	f2.follower = append(f2.follower, "--audit-queue-max-events", fmt.Sprint(refuseAt), "--audit-queue-full", "refuse")
	for _, f := range []*proc{f1, f2} {
		if err := f.start(); err != nil {
			t.Fatal(err)
		}
	}
	node1, node2 := "follower-1."+followerDomain, "follower-2."+followerDomain

	// loginAndRead logs host/app in on f and reads the secret; it returns
	// how many of the two requests were served.
	loginAndRead := func(f *proc) (int, error) {
		code, _, body, err := f.req(http.MethodPost, "/authn/"+account+"/host%2Fapp/authenticate", "", appKey, "Accept-Encoding", "base64")
		if err != nil {
			return 0, err
		}
		if code == http.StatusServiceUnavailable {
			return 0, nil
		}
		if code != http.StatusOK {
			return 0, fmt.Errorf("login on %s: %d %s", f.name, code, body)
		}
		code, _, body, err = f.req(http.MethodGet, secretPath, `Token token="`+body+`"`, "")
		if err != nil {
			return 1, err
		}
		if code == http.StatusServiceUnavailable {
			return 1, nil
		}
		if code != http.StatusOK || body != secretValue {
			return 1, fmt.Errorf("read on %s: %d %q", f.name, code, body)
		}
		return 2, nil
	}

	// With the Leader up: served and forwarded.
	if n, err := loginAndRead(f1); err != nil || n != 2 {
		t.Fatalf("with the Leader up: %d served, %v", n, err)
	}
	served1 := 2
	waitFor(t, "follower-1 to forward its first events", func() bool {
		fa, err := f1.auditHealth()
		return err == nil && fa.Audit.Queued == 0 && fa.Audit.Forwarded == 2
	})

	l1.stop()

	// With the Leader down: Followers serve and queue.
	for range 5 {
		n, err := loginAndRead(f1)
		if err != nil || n != 2 {
			t.Fatalf("with the Leader down: %d served, %v", n, err)
		}
		served1 += n
	}
	served2 := 0
	for i := 0; ; i++ {
		n, err := loginAndRead(f2)
		if err != nil {
			t.Fatal(err)
		}
		served2 += n
		if n < 2 {
			break
		}
		if i > refuseAt {
			t.Fatalf("follower-2 served %d requests with a queue of %d and --audit-queue-full refuse", served2, refuseAt)
		}
	}
	if served2 != refuseAt {
		t.Errorf("follower-2 served %d requests before refusing, want %d (its queue's bound)", served2, refuseAt)
	}
	waitFor(t, "follower-2's events on disk", func() bool {
		fa, err := f2.auditHealth()
		return err == nil && fa.Audit.Synced == refuseAt
	})
	fa, err := f2.auditHealth()
	if err != nil {
		t.Fatal(err)
	}
	if fa.OK || !fa.Audit.Full || fa.Audit.Policy != "refuse" || fa.Audit.Queued != refuseAt {
		t.Errorf("follower-2's health with a full queue: ok %v, audit %+v; want not ok, full, refuse, %d queued", fa.OK, *fa.Audit, refuseAt)
	}
	if _, _, body, _ := f2.req(http.MethodGet, "/metrics", "", ""); !strings.Contains(body, "sower_audit_queue_full 1") {
		t.Errorf("follower-2's metrics do not say sower_audit_queue_full 1")
	}
	waitFor(t, "follower-1's events on disk", func() bool {
		fa, err := f1.auditHealth()
		return err == nil && fa.Audit.Synced == uint64(served1)
	})

	// A crash of the full Follower loses nothing it had on disk.
	f2.kill9()
	if err := f2.launch(); err != nil {
		t.Fatal(err)
	}

	// The Leader comes back, exporting the trail; the Followers catch up
	// from their cursors.
	exportFile := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := l1.start("--audit-export", exportFile); err != nil {
		t.Fatal(err)
	}
	if err := f2.waitReady(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*proc{f1, f2} {
		waitFor(t, f.name+" to forward its queue", func() bool {
			fa, err := f.auditHealth()
			return err == nil && fa.Audit.Queued == 0 && fa.Audit.Forwarded == fa.Audit.Synced
		})
	}
	all, raw, err := trailEvents(h, l1)
	if err != nil {
		t.Fatal(err)
	}
	ev1, ev2 := nodeEvents(all, node1), nodeEvents(all, node2)
	t.Logf("trail: %d events of %s, %d of %s; first %+v", len(ev1), node1, len(ev2), node2, ev1[0])
	checkContiguous(t, node1, ev1, served1)
	checkContiguous(t, node2, ev2, refuseAt)
	for _, e := range append(ev1, ev2...) {
		want := audit.KindAuthn
		if seqOf(e)%2 == 0 {
			want = audit.KindSecretRead
		}
		if e.Kind != want || e.Outcome != audit.OutcomeSuccess || e.Identity == "" || e.Source == "" {
			t.Errorf("event %s: %+v; want a successful %s with identity and source", e.ID, e, want)
		}
		if e.Kind == audit.KindSecretRead && (e.Resource != account+":variable:db/password" || e.Version != 1) {
			t.Errorf("read event %s names %s version %d", e.ID, e.Resource, e.Version)
		}
		if e.Kind == audit.KindAuthn && (e.Identity != account+":host:app" || e.Authenticator != "authn") {
			t.Errorf("login event %s: identity %s authenticator %s", e.ID, e.Identity, e.Authenticator)
		}
	}
	for _, v := range raw {
		if strings.Contains(v, secretValue) || strings.Contains(v, appKey) {
			t.Errorf("the trail holds a secret: %s", v)
		}
	}

	// The quorum answers queries of the trail, the Followers' pushed
	// events included; a Follower serves none (the trail is not
	// replicated).
	if admin, err = h.authenticate(l1.url()); err != nil {
		t.Fatal(err)
	}
	q := "/v1/audit/events?page_size=1000&filter.kind=secret-read&filter.node=" + node1
	code, _, body, err = l1.req(http.MethodGet, q, admin, "")
	var listed struct {
		Events []struct{ Node, Identity string }
	}
	if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &listed) != nil {
		t.Fatalf("GET %s on the Leader: %d %s %v", q, code, body, err)
	}
	if len(listed.Events) != served1/2 || listed.Events[0].Node != node1 || listed.Events[0].Identity != account+":host:app" {
		t.Errorf("reads on %s listed by the Leader: %+v, want %d", node1, listed.Events, served1/2)
	}
	if code, _, body, err = f1.req(http.MethodGet, q, admin, ""); err != nil || code != http.StatusNotFound {
		t.Errorf("GET %s on a Follower: %d %s %v, want 404", q, code, body, err)
	}

	t.Run("the export holds every Follower event forwarded since, as slog JSON lines, and no secret", func(t *testing.T) {
		want := map[string]audit.Event{}
		for _, e := range append(ev1, ev2...) {
			want[e.ID] = e
		}
		exported := map[string]map[string]any{}
		var lines []string
		waitFor(t, "the Followers' events in the export", func() bool {
			raw, err := os.ReadFile(exportFile)
			if err != nil {
				return false
			}
			lines = strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
			for _, l := range lines {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil {
					if id, _ := m["id"].(string); id != "" {
						exported[id] = m
					}
				}
			}
			for id := range want {
				if exported[id] == nil {
					return false
				}
			}
			return true
		})
		for id, e := range want {
			m := exported[id]
			if m["msg"] != "audit" || m["level"] != "INFO" || m["kind"] != string(e.Kind) || m["node"] != e.Node || m["identity"] != e.Identity {
				t.Errorf("exported %s = %v; want msg audit, level INFO and the event's fields %+v", id, m, e)
			}
			if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"])); err != nil || !at.Equal(e.At) {
				t.Errorf("exported %s at %v, the event at %v", id, m["time"], e.At)
			}
		}
		for _, l := range lines {
			if strings.Contains(l, secretValue) || strings.Contains(l, appKey) {
				t.Errorf("the export holds a secret: %s", l)
			}
		}
		if fi, err := os.Stat(exportFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("the export file: %v %v; want mode 0600", fi.Mode(), err)
		}
	})

	t.Run("PushAudit: only a Follower's own events, bounded, stored once", func(t *testing.T) {
		cli := func(who *proc, kind string) sowerv1.ReplicationServiceClient {
			certFile, keyFile := filepath.Join(who.dir, "seed", "tls", "replication.pem"), filepath.Join(who.dir, "seed", "tls", "replication-key.pem")
			if kind == "node" {
				certFile, keyFile = filepath.Join(who.dir, "tls", "node.pem"), filepath.Join(who.dir, "tls", "node-key.pem")
			}
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			rootsPEM, _ := os.ReadFile(h.caFile())
			roots, _ := pki.ParseCertificatesPEM(rootsPEM)
			tc, _ := pki.ClientTLS(roots, l1.ip, nil)
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
			conn, err := grpc.NewClient(l1.http, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return sowerv1.NewReplicationServiceClient(conn)
		}
		push := func(c sowerv1.ReplicationServiceClient, events ...audit.Event) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return replication.Push(ctx, c, events)
		}
		own := ev1[0]
		f1c := cli(f1, "replication")
		// Re-sending a stored event stores nothing new.
		if err := push(f1c, own); err != nil {
			t.Fatalf("re-send of %s: %v", own.ID, err)
		}
		other := ev2[0]
		if err := push(f1c, other); !strings.Contains(fmt.Sprint(err), "PermissionDenied") {
			t.Errorf("follower-1 pushing follower-2's event: %v, want PermissionDenied", err)
		}
		forged := own
		forged.ID, forged.At = node1+"/999999", time.Now()
		if err := push(cli(l1, "node"), forged); !strings.Contains(fmt.Sprint(err), "PermissionDenied") {
			t.Errorf("a node certificate pushing: %v, want PermissionDenied", err)
		}
		big := make([]audit.Event, replication.MaxPushEvents+1)
		for i := range big {
			big[i] = own
			big[i].ID = fmt.Sprintf("%s/%d", node1, 1_000_000+i)
		}
		if err := push(f1c, big...); !strings.Contains(fmt.Sprint(err), "InvalidArgument") || !strings.Contains(fmt.Sprint(err), "MaxPushEvents") {
			t.Errorf("a batch of %d: %v, want InvalidArgument naming MaxPushEvents", len(big), err)
		}
		again, _, err := trailEvents(h, l1)
		if err != nil {
			t.Fatal(err)
		}
		// The Leader's own events may have grown; the Followers' may not.
		if n1, n2 := len(nodeEvents(again, node1)), len(nodeEvents(again, node2)); n1 != len(ev1) || n2 != len(ev2) {
			t.Errorf("the Followers' events went from %d and %d to %d and %d; the pushes above should store nothing", len(ev1), len(ev2), n1, n2)
		}
	})
}
