package clustertest

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestStandbyAnswersAuditQueries: a Standby serves GET /v1/audit/events
// from the quorum's trail, so a query still answers while only Standbys
// are reachable; the secret read on the Leader is listed by the Standby.
func TestStandbyAnswersAuditQueries(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	h := newHarness(t, "prod", 2)
	l1 := h.node("leader-1", "127.0.0.2")
	s1 := h.node("standby-1", "127.0.0.3")
	if err := l1.start("--cluster", "prod"); err != nil {
		t.Fatal(err)
	}
	tok, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	pol := h.clusterPolicy("leader-1", "standby-1") + `- !variable db/password
- !policy
  id: sower
  body:
  - !webservice audit
- !permit
  role: !user admin
  privilege: read
  resource: !webservice sower/audit
`
	if code, body, err := h.loadPolicy(l1.url(), tok, pol); err != nil || code != http.StatusCreated {
		t.Fatalf("load the cluster policy: %d %s %v", code, body, err)
	}
	if err := h.join(l1.url(), s1); err != nil {
		t.Fatal(err)
	}
	h.waitVoters(l1.url(), "leader-1", "standby-1")
	if _, err := setSecret(l1, tok, "v1"); err != nil {
		t.Fatal(err)
	}
	if code, _, body, err := l1.req(http.MethodGet, secretPath, tok, ""); err != nil || code != http.StatusOK {
		t.Fatalf("read: %d %s %v", code, body, err)
	}
	q := "/v1/audit/events?filter.kind=secret-read&filter.identity=" + account + ":user:admin"
	var listed struct {
		Events []struct{ Node, Resource string }
	}
	waitFor(t, "the Standby to list the read", func() bool {
		code, _, body, err := s1.req(http.MethodGet, q, tok, "")
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET %s on the Standby: %d %s %v", q, code, body, err)
		}
		return json.Unmarshal([]byte(body), &listed) == nil && len(listed.Events) > 0
	})
	if e := listed.Events[0]; len(listed.Events) != 1 || e.Node != "leader-1" || e.Resource != account+":variable:db/password" {
		t.Fatalf("the Standby lists %+v", listed.Events)
	}
}
