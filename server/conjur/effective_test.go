package conjur_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/cyberark/conjur-api-go/conjurapi"
)

// effectivePolicy exercises every statement an effective policy writes:
// nested policies, a policy owned by a user of another, users named by
// their policy (ali@org-team), restricted_to, a variable's kind and
// mime_type, annotations, a host factory's layers, owners that are not
// the enclosing policy, grants and permits within and across policies.
const effectivePolicy = `
- !user rot
- !group ops
- !variable root-var
- !variable with/slash
- !policy
  id: org
  annotations:
    description: the org
  body:
  - !user ali
  - !user
    id: bob
    restricted_to: [172.17.0.3, 10.0.0.0/24]
  - !group admins
  - !grant
    role: !group admins
    members: [ !user ali, !user bob ]
  - !policy
    id: team
    owner: !user ali
    body:
    - !layer nodes
    - !host
      id: web
      restricted_to: 10.1.2.3
      annotations:
        role: "frontend: public"
    - !host-factory
      id: factory
      layers: [ !layer nodes ]
    - !variable
      id: db-password
      kind: password
      mime_type: text/plain
      annotations:
        rotation: "30"
    - !webservice
      id: svc
      owner: !group /org/admins
    - !grant
      role: !layer nodes
      member: !host web
    - !permit
      role: !layer nodes
      privileges: [read, execute]
      resource: !variable db-password
    - !permit
      role: !group /ops
      privileges: [read]
      resource: !webservice svc
- !grant
  role: !group ops
  members: [ !user rot, !user /org/ali ]
- !permit
  role: !group ops
  privileges: [read, update]
  resource: !policy org
`

// state is what a Conjur client can see of an account: every resource with
// its owner, annotations, permissions and restricted_to, and every role's
// memberships.
func state(t *testing.T, l leader, c *conjurapi.Client) []string {
	t.Helper()
	code, body := call(t, c, "GET", l.url+"/resources/acme", "")
	var rs []struct {
		ID           string   `json:"id"`
		Owner        string   `json:"owner"`
		RestrictedTo []string `json:"restricted_to"`
		Annotations  []struct {
			Name, Value string
		} `json:"annotations"`
		Permissions []struct {
			Privilege, Role string
		} `json:"permissions"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &rs) != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	var out []string
	for _, r := range rs {
		if strings.HasSuffix(r.ID, ":policy:root") {
			continue
		}
		out = append(out, fmt.Sprintf("resource %s owner %s restricted_to %v", r.ID, r.Owner, r.RestrictedTo))
		for _, a := range r.Annotations {
			out = append(out, fmt.Sprintf("annotation %s %s=%s", r.ID, a.Name, a.Value))
		}
		for _, p := range r.Permissions {
			out = append(out, fmt.Sprintf("permit %s %s %s", p.Role, p.Privilege, r.ID))
		}
		parts := strings.SplitN(r.ID, ":", 3)
		switch parts[1] {
		case "user", "host", "group", "layer", "policy", "host_factory":
		default:
			continue
		}
		code, body := call(t, c, "GET", l.url+"/roles/acme/"+parts[1]+"/"+url.PathEscape(parts[2])+"?memberships", "")
		var ms []struct {
			Role, Member string
			Ownership    bool
		}
		if code != http.StatusOK || json.Unmarshal(body, &ms) != nil {
			t.Fatalf("memberships of %s: %d %s", r.ID, code, body)
		}
		for _, m := range ms {
			out = append(out, fmt.Sprintf("member %s of %s ownership %v", m.Member, m.Role, m.Ownership))
		}
	}
	slices.Sort(out)
	return out
}

// conjur policy fetch: the effective policy of root, loaded into another
// cluster's empty root, gives the same records, owners, annotations,
// permissions and memberships (cucumber/api effective_policy*.feature).
func TestCLIPolicyFetchRoundTrips(t *testing.T) {
	a, b := startLeader(t), startLeader(t)
	adminA, adminB := newClient(t, a, "admin", a.adminKey), newClient(t, b, "admin", b.adminKey)
	load(t, adminA, conjurapi.PolicyModePost, "root", effectivePolicy)

	fetched, err := adminA.FetchPolicy("root", false, 64, 100000)
	if err != nil {
		t.Fatalf("FetchPolicy: %v", err)
	}
	t.Logf("effective policy of root:\n%s", fetched)
	load(t, adminB, conjurapi.PolicyModePost, "root", string(fetched))
	want, got := state(t, a, adminA), state(t, b, adminB)
	if !slices.Equal(got, want) {
		t.Fatalf("state after loading the fetched policy:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Fetching the copy gives the same text.
	again, err := adminB.FetchPolicy("root", false, 64, 100000)
	if err != nil || string(again) != string(fetched) {
		t.Fatalf("the copy's effective policy differs (%v):\n%s", err, again)
	}
}

// The branch below a policy, depth, limit, JSON, and who may fetch.
func TestCLIPolicyFetchBranch(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	resp := load(t, admin, conjurapi.PolicyModePost, "root", effectivePolicy)
	ali := newClient(t, l, "ali@org", resp.CreatedRoles["acme:user:ali@org"].APIKey)
	rot := newClient(t, l, "rot", resp.CreatedRoles["acme:user:rot"].APIKey)

	// ali owns org/team: she fetches it, and only it.
	got, err := ali.FetchPolicy("org/team", false, 64, 100000)
	if err != nil {
		t.Fatalf("ali fetches org/team: %v", err)
	}
	for _, want := range []string{"- !policy\n  id: team\n  owner: !user /org/ali\n  body:\n", "  - !host\n    id: web\n    restricted_to: [10.1.2.3/32]\n",
		"    kind: password\n    mime_type: text/plain\n", "  - !webservice\n    id: svc\n    owner: !group /org/admins\n",
		"  - !permit\n    role: !group /ops\n    privileges: [read]\n    resource: !webservice svc\n",
		"  - !grant\n    role: !layer nodes\n    members: [!host /org/team/web]\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("org/team lacks\n%s\nin\n%s", want, got)
		}
	}
	code, body := call(t, ali, "GET", l.url+"/policies/acme/policy/org", "")
	if code != http.StatusNotFound && code != http.StatusForbidden {
		t.Fatalf("ali fetches org: %d %s, want 403 or 404", code, body)
	}
	if code, body := call(t, rot, "GET", l.url+"/policies/acme/policy/org%2Fteam", ""); code != http.StatusNotFound {
		t.Fatalf("rot fetches org/team he cannot see: %d %s, want 404", code, body)
	}
	// rot sees org (ops may read it) but does not own it: Conjur's 403.
	if code, body := call(t, rot, "GET", l.url+"/policies/acme/policy/org", ""); code != http.StatusForbidden {
		t.Fatalf("rot fetches org he sees and does not own: %d %s, want 403", code, body)
	}

	tests := map[string]struct {
		query    string
		json     bool
		wantCode int
		want     string
	}{
		"depth 0":      {"?depth=0", false, 200, "---\n- !policy\n  id: org\n  annotations:\n    description: the org\n  body: []\n"},
		"depth 1":      {"?depth=1&limit=100", false, 200, "  - !policy\n    id: team\n    owner: !user /org/ali\n    body: []\n"},
		"json":         {"?depth=1", true, 200, `[{"policy":{"id":"org","annotations":{"description":"the org"},"body":[{"group":{"id":"admins"}},{"policy":{"id":"team","owner":{"user":"/org/ali"},"body":[]}}`},
		"limit 3":      {"?limit=3", false, 422, "CONJ00164E Policy max allowed 'limit' = 3 exceeded. Value for policy is: "},
		"depth 65":     {"?depth=65", false, 400, "CONJ00163E Param 'depth' is '65' but should be a number from 0 up to 64"},
		"limit abc":    {"?limit=abc", false, 400, "CONJ00163E Param 'limit' is 'abc' but should be a number from 0 up to 100000"},
		"limit 100001": {"?limit=100001", false, 400, "CONJ00163E Param 'limit' is '100001' but should be a number from 0 up to 100000"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var hdr []string
			if tc.json {
				hdr = []string{"Content-Type", "application/json"}
			}
			code, body := call(t, admin, "GET", l.url+"/policies/acme/policy/org"+tc.query, "", hdr...)
			if code != tc.wantCode || !strings.Contains(string(body), tc.want) {
				t.Fatalf("%d\n%s\nwant %d with\n%s", code, body, tc.wantCode, tc.want)
			}
		})
	}
}
