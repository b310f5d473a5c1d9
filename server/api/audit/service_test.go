package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/internal/testnode"
	"github.com/sowerproject/sower/internal/testutil"
)

// auditPolicy: an auditor with read on webservice:sower/audit, an app that
// reads db/password, a Follower host that may fetch seeds.
const auditPolicy = `
- !policy
  id: sower
  body:
  - !webservice audit
- !policy
  id: conjur/seed-generation
  body:
  - !webservice
    annotations:
      sower/follower-hostnames: "*.followers.example"
- !host auditor
- !host app
- !host follower
- !variable db/password
- !permit
  role: !host auditor
  privilege: read
  resource: !webservice sower/audit
- !permit
  role: !host app
  privilege: [read, execute]
  resource: !variable db/password
- !permit
  role: !host follower
  privilege: execute
  resource: !webservice conjur/seed-generation
`

type client struct {
	t   *testing.T
	n   *testnode.Node
	hc  *http.Client
	tok string
}

func (c *client) do(method, path, contentType string, body []byte) (int, []byte, http.Header) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.n.URL+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", `Token token="`+c.tok+`"`)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header
}

func login(t *testing.T, n *testnode.Node, hc *http.Client, who, key string) *client {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, n.URL+"/authn/acme/"+url.PathEscape(who)+"/authenticate", strings.NewReader(key))
	req.Header.Set("Accept-Encoding", "base64")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("authenticate %s: %s", who, resp.Status)
	}
	return &client{t: t, n: n, hc: hc, tok: string(tok)}
}

type event struct {
	ID, At, Node, Kind, Action, Outcome, Identity, Resource string
	Version                                                 int
}

type page struct {
	Events        []event
	NextPageToken string
}

func (c *client) list(q url.Values) (int, page, string) {
	c.t.Helper()
	code, body, _ := c.do(http.MethodGet, "/v1/audit/events?"+q.Encode(), "", nil)
	var p page
	if code == 200 {
		if err := json.Unmarshal(body, &p); err != nil {
			c.t.Fatalf("%s: %v", body, err)
		}
	}
	return code, p, string(body)
}

// waitFor lists q until it returns at least n events (the recorder writes
// the trail in the background), bounded.
func waitFor(t *testing.T, c *client, q url.Values, n int) []event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, p, body := c.list(q)
		if code != 200 {
			t.Fatalf("list %v: %d %s", q, code, body)
		}
		if len(p.Events) >= n {
			return p.Events
		}
		if time.Now().After(deadline) {
			t.Fatalf("list %v: %d events, want %d", q, len(p.Events), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setup loads the policy, sets the variable, has app read it three times
// and follower fetch a seed; it returns the auditor, the app and the seed id.
func setup(t *testing.T) (auditor, app *client, seedID string, before time.Time) {
	n := testnode.Start(t)
	hc := testutil.HTTPClient(t, n.DataDir)
	admin := login(t, n, hc, "admin", n.AdminKey)
	code, body, _ := admin.do(http.MethodPost, "/policies/acme/policy/root", "", []byte(auditPolicy))
	if code != 201 {
		t.Fatalf("load policy: %d %s", code, body)
	}
	var loaded struct {
		CreatedRoles map[string]struct {
			APIKey string `json:"api_key"`
		} `json:"created_roles"`
	}
	if err := json.Unmarshal(body, &loaded); err != nil {
		t.Fatal(err)
	}
	key := func(id string) string { return loaded.CreatedRoles["acme:host:"+id].APIKey }
	if code, body, _ := admin.do(http.MethodPost, "/secrets/acme/variable/db%2Fpassword", "", []byte("s3cret")); code != 201 {
		t.Fatalf("set: %d %s", code, body)
	}
	before = time.Now().UTC().Add(-time.Second)
	app = login(t, n, hc, "host/app", key("app"))
	for range 3 {
		if code, body, _ := app.do(http.MethodGet, "/secrets/acme/variable/db%2Fpassword", "", nil); code != 200 {
			t.Fatalf("read: %d %s", code, body)
		}
	}
	follower := login(t, n, hc, "host/follower", key("follower"))
	id, _ := age.GenerateX25519Identity()
	form := url.Values{"follower_hostnames": {"f-0.followers.example"}, "recipient": {id.Recipient().String()}}
	code, body, h := follower.do(http.MethodPost, "/configuration/acme/seed/follower", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if code != 200 {
		t.Fatalf("seed: %d %s", code, body)
	}
	return login(t, n, hc, "host/auditor", key("auditor")), app, h.Get("X-Sower-Seed-Id"), before
}

// TestListAuditEvents: without read on webservice:sower/audit the query is
// 403; with it, the filters answer who read the variable since T and which
// seeds the Follower host fetched; pages chain through next_page_token.
func TestListAuditEvents(t *testing.T) {
	auditor, app, seedID, before := setup(t)

	if code, _, body := app.list(url.Values{}); code != http.StatusForbidden || !strings.Contains(body, "webservice:sower/audit") {
		t.Fatalf("app without the privilege: %d %s", code, body)
	}

	reads := waitFor(t, auditor, url.Values{
		"filter.kind": {"secret-read"}, "filter.resource": {"acme:variable:db/password"},
		"filter.since": {before.Format(time.RFC3339Nano)},
	}, 3)
	if len(reads) != 3 {
		t.Fatalf("reads: %+v", reads)
	}
	for i, e := range reads {
		if e.Identity != "acme:host:app" || e.Action != "read" || e.Outcome != "success" || e.Version != 1 {
			t.Errorf("read %d: %+v", i, e)
		}
		if i > 0 && e.At > reads[i-1].At {
			t.Errorf("not newest first: %s after %s", e.At, reads[i-1].At)
		}
	}
	// Until before the reads selects none of them.
	_, p, _ := auditor.list(url.Values{"filter.kind": {"secret-read"}, "filter.until": {before.Format(time.RFC3339Nano)}})
	if len(p.Events) != 0 {
		t.Errorf("until %s: %+v", before, p.Events)
	}

	seeds := waitFor(t, auditor, url.Values{"filter.kind": {"seed"}, "filter.identity": {"acme:host:follower"}}, 1)
	if len(seeds) != 1 || seeds[0].Resource != seedID || seeds[0].Action != "issue" {
		t.Fatalf("seeds of follower (want %s): %+v", seedID, seeds)
	}

	// Paging: three reads, two pages of two and one.
	q := url.Values{"filter.kind": {"secret-read"}, "filter.identity": {"acme:host:app"}, "page_size": {"2"}}
	_, p1, _ := auditor.list(q)
	if len(p1.Events) != 2 || p1.NextPageToken == "" {
		t.Fatalf("page 1: %+v", p1)
	}
	q.Set("page_token", p1.NextPageToken)
	_, p2, _ := auditor.list(q)
	if len(p2.Events) != 1 || p2.Events[0].ID == p1.Events[0].ID || p2.Events[0].ID == p1.Events[1].ID {
		t.Fatalf("page 2: %+v after %+v", p2, p1)
	}
}

// TestListAuditEventsBadFilters: each bad filter is a 400 that says what is
// wrong, naming the limit.
func TestListAuditEventsBadFilters(t *testing.T) {
	auditor, _, _, _ := setup(t)
	for name, tc := range map[string]struct {
		q    url.Values
		want string
	}{
		"unknown kind":                      {url.Values{"filter.kind": {"bogus"}}, "secret-read"},
		"unknown outcome":                   {url.Values{"filter.outcome": {"maybe"}}, "success"},
		"since not RFC 3339":                {url.Values{"filter.since": {"yesterday"}}, "RFC 3339"},
		"until not a date":                  {url.Values{"filter.until": {"2026-13-01"}}, "RFC 3339"},
		"since after until":                 {url.Values{"filter.since": {"2026-02-01T00:00:00Z"}, "filter.until": {"2026-01-01T00:00:00Z"}}, "not before"},
		"page size over the limit":          {url.Values{"page_size": {"1001"}}, "1000"},
		"page token not made by the server": {url.Values{"page_token": {"garbage"}}, "page_token"},
	} {
		code, _, body := auditor.list(tc.q)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s (%v): %d %s (want 400 naming %q)", name, tc.q, code, body, tc.want)
		}
	}
}

// TestWatchAuditEvents: the stream sends the stored events the filter
// selects (from_start), then each new one as it is stored; without the
// privilege it is 403.
func TestWatchAuditEvents(t *testing.T) {
	auditor, app, _, _ := setup(t)
	if code, body, _ := app.do(http.MethodGet, "/v1/audit/events:watch", "", nil); code != http.StatusForbidden {
		t.Fatalf("app without the privilege: %d %s", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := url.Values{"filter.kind": {"secret-read"}, "filter.identity": {"acme:host:app"}, "from_start": {"true"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, auditor.n.URL+"/v1/audit/events:watch?"+q.Encode(), nil)
	req.Header.Set("Authorization", `Token token="`+auditor.tok+`"`)
	resp, err := auditor.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("watch: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() event {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		var msg struct {
			Result struct{ Event event }
			Error  *struct{ Message string }
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil || msg.Error != nil {
			t.Fatalf("stream line %s: %v", sc.Bytes(), err)
		}
		return msg.Result.Event
	}
	// The three reads of setup, oldest first (the recorder may still be
	// storing them: the stream waits for them).
	seen := map[string]bool{}
	var last string
	for range 3 {
		e := next()
		if e.Identity != "acme:host:app" || e.Kind != "secret-read" || seen[e.ID] || e.At < last {
			t.Fatalf("stored event: %+v (seen %v, last at %s)", e, seen, last)
		}
		seen[e.ID], last = true, e.At
	}
	if code, body, _ := app.do(http.MethodGet, "/secrets/acme/variable/db%2Fpassword?version=1", "", nil); code != 200 {
		t.Fatalf("read: %d %s", code, body)
	}
	if e := next(); seen[e.ID] || e.Resource != "acme:variable:db/password" || e.Version != 1 {
		t.Fatalf("new event: %+v", e)
	}
}
