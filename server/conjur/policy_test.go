package conjur_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/cyberark/conjur-api-go/conjurapi"
	"github.com/cyberark/conjur-api-go/conjurapi/response"
)

const rootPolicy = `
- !policy
  id: conjur/seed-generation
  body:
  - !webservice
  - !group consumers
  - !permit
    role: !group consumers
    privilege: execute
    resource: !webservice

- !layer apps
- !host follower-01
- !host
  id: app-01
  annotations:
    description: the first application
- !host app-02
- !grant
  role: !layer apps
  members: [!host app-01, !host app-02]
- !variable
  id: db/password
  annotations:
    description: database password
- !variable db/user
- !permit
  role: !layer apps
  privilege: [read, execute]
  resource: !variable db/password
- !grant
  role: !group conjur/seed-generation/consumers
  member: !host follower-01
`

// submit sends a request the client built and returns status and body.
func submit(t *testing.T, c *conjurapi.Client, req *http.Request, err error) (int, []byte) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.SubmitRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func ids(rs []map[string]any) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r["id"].(string))
	}
	return out
}

// TestConjurClientPolicies drives sower's Conjur policy and authorization
// endpoints with the real conjur-api-go client: loads in every mode, dry
// runs, permission checks, listings, permitted roles, role members and
// memberships, and a host logging in with the API key its load returned.
func TestConjurClientPolicies(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)

	loaded, err := admin.LoadPolicy(conjurapi.PolicyModePost, "root", strings.NewReader(rootPolicy))
	if err != nil {
		t.Fatalf("LoadPolicy POST: %v", err)
	}
	if loaded.Version != 1 || len(loaded.CreatedRoles) != 3 {
		t.Fatalf("LoadPolicy = version %d, %d created roles; want version 1 and 3 hosts", loaded.Version, len(loaded.CreatedRoles))
	}
	app1 := loaded.CreatedRoles["acme:host:app-01"]
	if app1.ID != "acme:host:app-01" || len(app1.APIKey) < 50 {
		t.Fatalf("created role app-01 = %+v", app1)
	}

	// The host logs in with the key the load returned and checks its own
	// permissions.
	host := newClient(t, l, "host/app-01", app1.APIKey)
	raw, err := host.WhoAmI()
	if err != nil || !strings.Contains(string(raw), `"username":"host/app-01"`) {
		t.Fatalf("the new host's WhoAmI = %s, %v", raw, err)
	}
	checks := map[string]struct {
		c                   *conjurapi.Client
		resource, role, prv string
		want                bool
	}{
		"host reads its secret":              {host, "acme:variable:db/password", "", "read", true},
		"host may not update it":             {host, "acme:variable:db/password", "", "update", false},
		"host cannot see the other secret":   {host, "acme:variable:db/user", "", "read", false},
		"admin owns everything":              {admin, "acme:variable:db/user", "", "update", true},
		"admin asks for the host":            {admin, "acme:variable:db/password", "acme:host:app-01", "execute", true},
		"admin asks for the other host":      {admin, "acme:webservice:conjur/seed-generation", "acme:host:app-02", "execute", false},
		"a follower consumes seeds":          {admin, "acme:webservice:conjur/seed-generation", "acme:host:follower-01", "execute", true},
		"host may not ask about admin (403)": {host, "acme:variable:db/password", "acme:user:admin", "read", false},
	}
	for name, tc := range checks {
		t.Run("check/"+name, func(t *testing.T) {
			var got bool
			var err error
			if tc.role == "" {
				got, err = tc.c.CheckPermission(tc.resource, tc.prv)
			} else {
				got, err = tc.c.CheckPermissionForRole(tc.resource, tc.role, tc.prv)
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	// The exact statuses: 204, 404, 403.
	for _, tc := range []struct {
		c                   *conjurapi.Client
		resource, role, prv string
		status              int
	}{
		{host, "acme:variable:db/password", "", "read", http.StatusNoContent},
		{host, "acme:variable:db/password", "", "update", http.StatusNotFound},
		{host, "acme:variable:db/user", "", "read", http.StatusNotFound},
		{host, "acme:variable:db/password", "acme:user:admin", "read", http.StatusForbidden},
		{host, "acme:variable:db/password", "acme:layer:apps", "read", http.StatusNoContent},
	} {
		var req *http.Request
		if tc.role == "" {
			req, err = tc.c.CheckPermissionRequest(tc.resource, tc.prv)
		} else {
			req, err = tc.c.CheckPermissionForRoleRequest(tc.resource, tc.role, tc.prv)
		}
		if code, _ := submit(t, tc.c, req, err); code != tc.status {
			t.Errorf("check %s %s as role %q: HTTP %d, want %d", tc.prv, tc.resource, tc.role, code, tc.status)
		}
	}

	// Listings.
	vars, err := admin.Resources(&conjurapi.ResourceFilter{Kind: "variable"})
	if err != nil || !slices.Equal(ids(vars), []string{"acme:variable:db/password", "acme:variable:db/user"}) {
		t.Fatalf("Resources(kind variable) = %v, %v", ids(vars), err)
	}
	found, err := admin.Resources(&conjurapi.ResourceFilter{Search: "database"})
	if err != nil || !slices.Equal(ids(found), []string{"acme:variable:db/password"}) {
		t.Fatalf("Resources(search database) = %v, %v", ids(found), err)
	}
	hosts, err := admin.Resources(&conjurapi.ResourceFilter{Kind: "host", Limit: 2, Offset: 1})
	if err != nil || !slices.Equal(ids(hosts), []string{"acme:host:app-02", "acme:host:follower-01"}) {
		t.Fatalf("Resources(host, limit 2, offset 1) = %v, %v", ids(hosts), err)
	}
	count, err := admin.ResourcesCount(&conjurapi.ResourceFilter{Kind: "host"})
	if err != nil || count.Count != 3 {
		t.Fatalf("ResourcesCount(host) = %+v, %v", count, err)
	}
	seen, err := host.Resources(nil)
	if err != nil || !slices.Equal(ids(seen), []string{"acme:variable:db/password"}) {
		t.Fatalf("what the host sees = %v, %v", ids(seen), err)
	}
	res, err := admin.Resource("acme:variable:db/password")
	if err != nil {
		t.Fatal(err)
	}
	if res["owner"] != "acme:user:admin" || res["policy"] != "acme:policy:root" ||
		!strings.Contains(fmt.Sprint(res["annotations"]), "database password") || !strings.Contains(fmt.Sprint(res["permissions"]), "acme:layer:apps") {
		t.Fatalf("Resource = %v", res)
	}

	permitted, err := admin.PermittedRoles("acme:variable:db/password", "execute")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"acme:layer:apps", "acme:host:app-01", "acme:host:app-02", "acme:user:admin"} {
		if !slices.Contains(permitted, want) {
			t.Errorf("PermittedRoles(execute) = %v, missing %s", permitted, want)
		}
	}
	if slices.Contains(permitted, "acme:host:follower-01") {
		t.Errorf("PermittedRoles(execute) = %v lists follower-01", permitted)
	}

	members, err := admin.RoleMembers("acme:layer:apps")
	if err != nil {
		t.Fatal(err)
	}
	var memberIDs []string
	for _, m := range members {
		memberIDs = append(memberIDs, fmt.Sprintf("%v/%v", m["member"], m["ownership"]))
	}
	if !slices.Equal(memberIDs, []string{"acme:host:app-01/false", "acme:host:app-02/false", "acme:user:admin/true"}) {
		t.Fatalf("RoleMembers(layer apps) = %v", memberIDs)
	}
	direct, err := admin.RoleMemberships("acme:host:app-01")
	if err != nil || len(direct) != 1 || direct[0]["role"] != "acme:layer:apps" || direct[0]["member"] != "acme:host:app-01" {
		t.Fatalf("RoleMemberships(app-01) = %v, %v", direct, err)
	}
	all, err := host.RoleMembershipsAll("acme:host:app-01")
	if err != nil || !slices.Equal(all, []string{"acme:host:app-01", "acme:layer:apps"}) {
		t.Fatalf("RoleMembershipsAll(app-01) = %v, %v", all, err)
	}
	role, err := admin.Role("acme:layer:apps")
	if err != nil || role["id"] != "acme:layer:apps" || len(role["members"].([]any)) != 3 {
		t.Fatalf("Role(layer apps) = %v, %v", role, err)
	}

	// Dry run: Conjur's shape, nothing applied.
	dry, err := admin.DryRunPolicy(conjurapi.PolicyModePatch, "root", strings.NewReader("- !host app-03\n- !grant\n  role: !layer apps\n  member: !host app-03\n"))
	if err != nil {
		t.Fatalf("DryRunPolicy: %v", err)
	}
	if dry.Status != "Valid YAML" || len(dry.Created.Items) != 1 || dry.Created.Items[0].Identifier != "acme:host:app-03" ||
		dry.Created.Items[0].Type != "host" || len(dry.Updated.After.Items) == 0 {
		t.Fatalf("DryRunPolicy = %+v", dry)
	}
	if ok, _ := admin.ResourceExists("acme:host:app-03"); ok {
		t.Fatal("a dry run created a host")
	}
	bad, err := admin.DryRunPolicy(conjurapi.PolicyModePost, "root", strings.NewReader("- !host\n  id: [unclosed\n"))
	if err != nil || bad.Status != "Invalid YAML" || len(bad.Errors) != 1 || bad.Errors[0].Line == 0 {
		t.Fatalf("DryRunPolicy(invalid) = %+v, %v", bad, err)
	}

	// Replace: what the text no longer declares goes, with its API key.
	replaced, err := admin.LoadPolicy(conjurapi.PolicyModePut, "root", strings.NewReader(strings.NewReplacer(
		"- !host app-02\n", "", "members: [!host app-01, !host app-02]", "members: [!host app-01]").Replace(rootPolicy)))
	if err != nil || len(replaced.CreatedRoles) != 0 || replaced.Version < 2 {
		t.Fatalf("LoadPolicy PUT = %+v, %v", replaced, err)
	}
	if ok, _ := admin.ResourceExists("acme:host:app-02"); ok {
		t.Fatal("replace kept a host the text no longer declares")
	}
	if _, err := newClient(t, l, "host/app-02", loaded.CreatedRoles["acme:host:app-02"].APIKey).WhoAmI(); err == nil {
		t.Fatal("a deleted host still logs in")
	}
	// Update: !delete applies; append refuses it.
	if _, err := admin.LoadPolicy(conjurapi.PolicyModePost, "root", strings.NewReader("- !delete\n  record: !variable db/user\n")); err == nil {
		t.Fatal("POST accepted a !delete")
	}
	if _, err := admin.LoadPolicy(conjurapi.PolicyModePatch, "root", strings.NewReader("- !delete\n  record: !variable db/user\n")); err != nil {
		t.Fatalf("PATCH with !delete: %v", err)
	}
	if ok, _ := admin.ResourceExists("acme:variable:db/user"); ok {
		t.Fatal("PATCH did not delete the variable")
	}

	// Errors in Conjur's JSON.
	_, err = admin.LoadPolicy(conjurapi.PolicyModePost, "root", strings.NewReader("- !grant\n  role: !group nobody\n  member: !host app-01\n"))
	var cerr *response.ConjurError
	if !errors.As(err, &cerr) || cerr.Code != http.StatusUnprocessableEntity || cerr.Details == nil || cerr.Details.Code != "policy_invalid" ||
		cerr.Details.Message != "Group 'nobody' not found in account 'acme'" {
		t.Fatalf("load with an unknown reference: %#v (%v)", cerr, err)
	}
	_, err = host.LoadPolicy(conjurapi.PolicyModePost, "root", strings.NewReader("- !host sneaky\n"))
	if !errors.As(err, &cerr) || cerr.Code != http.StatusNotFound {
		t.Fatalf("a host loading into root it cannot see: %v, want 404", err)
	}
}

// The raw answers: 201 and Conjur's exact load JSON, 422 with innererror.
func TestConjurPolicyWireFormat(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	req, err := admin.LoadPolicyRequest(conjurapi.PolicyModePost, "root", strings.NewReader("- !host x\n- !policy\n  id: sub\n  body:\n  - !user bob\n"), false)
	code, body := submit(t, admin, req, err)
	var got struct {
		CreatedRoles map[string]map[string]string `json:"created_roles"`
		Version      json.Number
	}
	if code != http.StatusCreated || json.Unmarshal(body, &got) != nil {
		t.Fatalf("POST: %d %s", code, body)
	}
	bob := got.CreatedRoles["acme:user:bob@sub"]
	if got.Version != "1" || len(got.CreatedRoles) != 2 || bob["id"] != "acme:user:bob@sub" || len(bob["api_key"]) < 50 || len(bob) != 2 {
		t.Fatalf("POST body: %s", body)
	}

	req, err = admin.LoadPolicyRequest(conjurapi.PolicyModePost, "root", strings.NewReader("- !host y\n- !grant\n  role: !group missing\n  member: !host y\n"), false)
	code, body = submit(t, admin, req, err)
	var e struct {
		Error struct {
			Code       string
			Message    string
			Innererror struct {
				Code         string
				Line, Column int
			}
		}
	}
	if code != http.StatusUnprocessableEntity || json.Unmarshal(body, &e) != nil || e.Error.Code != "policy_invalid" ||
		e.Error.Innererror.Line != 3 || e.Error.Innererror.Code != "policy_invalid" {
		t.Fatalf("invalid load: %d %s", code, body)
	}
	// Nothing of the failed load exists.
	if ok, _ := admin.ResourceExists("acme:host:y"); ok {
		t.Fatal("a failed load left a host behind")
	}

	// A dry run's raw answer, in Conjur's shape.
	req, err = admin.LoadPolicyRequest(conjurapi.PolicyModePatch, "root", strings.NewReader("- !host z\n- !variable v\n"), true)
	code, body = submit(t, admin, req, err)
	for _, want := range []string{`"status":"Valid YAML"`, `"identifier":"acme:host:z","id":"z","type":"host"`, `"permissions":{}`,
		`"restricted_to":[]`, `"identifier":"acme:variable:v","id":"v","type":"variable"`, `"permitted":{}`, `"deleted":{"items":[]}`} {
		if code != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("dry run: %d %s\nlacks %s", code, body, want)
		}
	}

	// The policy's versions (sower's ?version=N), as JSON.
	r, _ := http.NewRequest(http.MethodGet, l.url+"/policies/acme/policy/root?version=1", nil)
	r.Header.Set("Accept", "application/json")
	code, body = submit(t, admin, r, nil)
	var versions []map[string]any
	if code != http.StatusOK || json.Unmarshal(body, &versions) != nil || len(versions) != 1 || versions[0]["role"] != "acme:user:admin" {
		t.Fatalf("GET policy versions: %d %s", code, body)
	}
	r, _ = http.NewRequest(http.MethodGet, l.url+"/resources/acme/policy/root", nil)
	code, body = submit(t, admin, r, nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"policy_versions":[{"id":"acme:policy:root","version":1`) {
		t.Fatalf("GET the root policy resource: %d %s", code, body)
	}
}
