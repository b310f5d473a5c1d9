package conjur_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cyberark/conjur-api-go/conjurapi"
)

// The tests in this file drive sower with the HTTP requests the Conjur CLI
// (conjur-cli-go) sends for its commands: through conjur-api-go where the
// library has the call, as plain HTTP where it does not. Each asserts the
// status code and body Conjur answers with, taken from Conjur's controllers
// and its cucumber features (cucumber/api, cucumber/policy).

// call sends method url with body through c, which adds the access token.
// hdr are header name, value pairs.
func call(t *testing.T, c *conjurapi.Client, method, url, body string, hdr ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return submit(t, c, req, nil)
}

// conjurError is Conjur's error JSON.
type conjurError struct {
	Error struct {
		Code       string          `json:"code"`
		Message    string          `json:"message"`
		Target     string          `json:"target"`
		Details    json.RawMessage `json:"details"`
		Innererror *struct {
			Code         string `json:"code"`
			Filename     string `json:"filename"`
			Line, Column int
		} `json:"innererror"`
	} `json:"error"`
}

func decodeError(t *testing.T, code int, body []byte) conjurError {
	t.Helper()
	var e conjurError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%d %s: not Conjur's error JSON: %v", code, body, err)
	}
	return e
}

// load loads text with the CLI's request and fails the test on an error.
func load(t *testing.T, c *conjurapi.Client, mode conjurapi.PolicyMode, id, text string) *conjurapi.PolicyResponse {
	t.Helper()
	resp, err := c.LoadPolicy(mode, id, strings.NewReader(text))
	if err != nil {
		t.Fatalf("load into %s: %v", id, err)
	}
	return resp
}

// conjur policy replace: Conjur's ReplacePolicy authorisation. The caller
// needs update on the policy and on every resource under it, which the
// replace may delete; with update on the policy alone PATCH works and PUT is
// 403 (cucumber/api policy_load_errors.feature).
func TestCLIPolicyReplaceNeedsUpdateOnTheBranch(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	resp := load(t, admin, conjurapi.PolicyModePost, "root", `
- !user read_update
- !policy
  id: test_policy
  owner: !user admin
- !permit
  role: !user read_update
  privileges: [read, update]
  resource: !policy test_policy
`)
	load(t, admin, conjurapi.PolicyModePost, "test_policy", "- !variable test\n")
	ru := newClient(t, l, "read_update", resp.CreatedRoles["acme:user:read_update"].APIKey)

	req, err := ru.LoadPolicyRequest(conjurapi.PolicyModePut, "test_policy", strings.NewReader("- !variable alt\n"), false)
	code, body := submit(t, ru, req, err)
	if code != http.StatusForbidden || decodeError(t, code, body).Error.Code != "forbidden" {
		t.Fatalf("replace without update on test_policy/test: %d %s, want 403", code, body)
	}
	if ok, _ := admin.ResourceExists("acme:variable:test_policy/test"); !ok {
		t.Fatal("the refused replace deleted test_policy/test")
	}
	// A dry run of the replace is refused alike.
	req, err = ru.LoadPolicyRequest(conjurapi.PolicyModePut, "test_policy", strings.NewReader("- !variable alt\n"), true)
	if code, body = submit(t, ru, req, err); code != http.StatusForbidden {
		t.Fatalf("dry-run replace: %d %s, want 403", code, body)
	}

	// update on the policy is enough to update it.
	load(t, ru, conjurapi.PolicyModePatch, "test_policy", "- !variable alt\n")

	// With update on everything under it, the replace goes through and
	// deletes what the text no longer declares.
	load(t, admin, conjurapi.PolicyModePatch, "root", `
- !permit
  role: !user read_update
  privileges: [update]
  resource: !variable test_policy/test
- !permit
  role: !user read_update
  privileges: [update]
  resource: !variable test_policy/alt
`)
	load(t, ru, conjurapi.PolicyModePut, "test_policy", "- !variable alt\n")
	if ok, _ := admin.ResourceExists("acme:variable:test_policy/test"); ok {
		t.Fatal("the replace kept test_policy/test")
	}
}

// Conjur's error codes and messages (cucumber/api policy_load_errors,
// secrets_batch, resource_list features).
func TestCLIErrorsAsConjur(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	resp := load(t, admin, conjurapi.PolicyModePost, "root", `
- !user someone
- !variable secret1
- !variable secret2
- !permit
  role: !user someone
  privilege: read
  resource: !variable secret1
`)
	someone := newClient(t, l, "someone", resp.CreatedRoles["acme:user:someone"].APIKey)
	for _, id := range []string{"secret1", "secret2"} {
		if err := admin.AddSecret("acme:variable:"+id, "v-"+id); err != nil {
			t.Fatal(err)
		}
	}
	policyURL := l.url + "/policies/acme/policy/root"

	type want struct {
		status  int
		code    string
		message string
		target  string
		details string // the details JSON, when set
		inner   bool   // innererror with the position of a YAML error
	}
	tests := map[string]struct {
		c                  *conjurapi.Client
		method, path, body string
		want               want
	}{
		"a permit naming an undeclared user": {admin, "POST", policyURL,
			"- !variable password\n\n- !permit\n  role: !user bob\n  privilege: [ execute ]\n  resource: !variable password\n",
			want{status: 422, code: "policy_invalid", message: "User 'bob' not found in account 'acme'"}},
		"a grant naming an undeclared group": {admin, "POST", policyURL,
			"- !host y\n- !grant\n  role: !group x\n  member: !host y\n",
			want{status: 422, code: "policy_invalid", message: "Group 'x' not found in account 'acme'"}},
		"an empty policy body": {admin, "POST", policyURL, "",
			want{status: 422, code: "validation_failed", message: "policy_text is not present",
				details: `[{"code":"validation_failed","target":"policy_text","message":"is not present"}]`}},
		"a !delete in an append": {admin, "POST", policyURL, "- !delete\n  record: !variable secret1\n",
			want{status: 422, code: "validation_failed", message: "policy_text may not contain deletion statements",
				details: `[{"code":"validation_failed","target":"policy_text","message":"may not contain deletion statements"}]`}},
		"a YAML syntax error on the first line": {admin, "POST", policyURL, "- !user [\n",
			want{status: 422, code: "policy_invalid", inner: true}},
		"batch: found but not executable comes before missing": {someone, "GET",
			l.url + "/secrets?variable_ids=acme:variable:nope,acme:variable:secret1", "",
			want{status: 403, code: "forbidden"}},
		"batch: a missing variable": {admin, "GET",
			l.url + "/secrets?variable_ids=acme:variable:secret1,acme:variable:not-a-secret", "",
			want{status: 404, code: "not_found", message: "CONJ00076E Variable acme:variable:not-a-secret is empty or not found."}},
		"batch: not an id": {admin, "GET", l.url + "/secrets?variable_ids=1,2,3", "",
			want{status: 404, code: "not_found", message: "CONJ00076E Variable 1 is empty or not found."}},
		"batch: blank items": {admin, "GET",
			l.url + "/secrets?variable_ids=acme:variable:secret1,,,acme:variable:secret2", "",
			want{status: 422, code: "argument_error", message: "variable_ids"}},
		"batch: only blank items": {admin, "GET", l.url + "/secrets?variable_ids=,,,", "",
			want{status: 422, code: "argument_error", message: "variable_ids"}},
		"a missing variable": {admin, "GET", l.url + "/secrets/acme/variable/nope", "",
			want{status: 404, code: "not_found", message: "Variable 'nope' not found in account 'acme'", target: "variable",
				details: `{"code":"not_found","message":"acme:variable:nope","target":"id"}`}},
		"a missing resource": {admin, "GET", l.url + "/resources/acme/variable/nope", "",
			want{status: 404, code: "not_found", message: "Variable 'nope' not found in account 'acme'", target: "variable"}},
		"limit=abc": {admin, "GET", l.url + "/resources/acme/variable?limit=abc", "",
			want{status: 422, code: "unprocessable_entity", message: "'limit' contains an invalid value. 'limit' must be a positive integer."}},
		"limit=0": {admin, "GET", l.url + "/resources/acme/variable?limit=0", "",
			want{status: 422, code: "unprocessable_entity", message: "'limit' contains an invalid value. 'limit' must be a positive integer."}},
		"limit=-1": {admin, "GET", l.url + "/resources/acme?limit=-1", "",
			want{status: 422, code: "unprocessable_entity", message: "'limit' contains an invalid value. 'limit' must be a positive integer."}},
		"offset=-1": {admin, "GET", l.url + "/resources/acme?offset=-1", "",
			want{status: 422, code: "unprocessable_entity", message: "'offset' contains an invalid value. 'offset' must be an integer greater than or equal to 0."}},
		"members limit=0": {admin, "GET", l.url + "/roles/acme/user/admin?members&limit=0", "",
			want{status: 422, code: "unprocessable_entity", message: "'limit' contains an invalid value. 'limit' must be a positive integer."}},
		"issuers (conjur issuer list)": {admin, "GET", l.url + "/issuers/acme", "",
			want{status: 404, code: "not_found", message: "issuers are part of Conjur's dynamic secrets, which sower does not provide: store static secrets in variables instead"}},
		"conjur hostfactory tokens create of a missing factory": {admin, "POST", l.url + "/host_factory_tokens?host_factory=acme:host_factory:f&expiration=2030-01-01T00:00:00Z", "",
			want{status: 404, code: "not_found", message: "Host_factory 'f' not found in account 'acme'"}},
		"an unknown route": {admin, "GET", l.url + "/no/such/route", "",
			want{status: 404, code: "not_found"}},
		"a method Conjur has no route for": {admin, "DELETE", policyURL, "",
			want{status: 404, code: "not_found"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, body := call(t, tc.c, tc.method, tc.path, tc.body)
			if code != tc.want.status {
				t.Fatalf("%d %s, want %d", code, body, tc.want.status)
			}
			e := decodeError(t, code, body)
			if e.Error.Code != tc.want.code || (tc.want.message != "" && e.Error.Message != tc.want.message) ||
				(tc.want.target != "" && e.Error.Target != tc.want.target) {
				t.Fatalf("%s\nwant code %q message %q target %q", body, tc.want.code, tc.want.message, tc.want.target)
			}
			if tc.want.details != "" {
				var got, exp any
				_ = json.Unmarshal(e.Error.Details, &got)
				_ = json.Unmarshal([]byte(tc.want.details), &exp)
				if g, _ := json.Marshal(got); string(g) != mustJSON(exp) {
					t.Fatalf("details %s, want %s", e.Error.Details, tc.want.details)
				}
			}
			if tc.want.inner && (e.Error.Innererror == nil || e.Error.Innererror.Code != "policy_invalid" ||
				!strings.HasPrefix(e.Error.Message, "Error at line ")) {
				t.Fatalf("%s: want innererror with the position of a YAML error", body)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// conjur policy update with statements that both add and delete: the
// deletion is the outcome (cucumber/policy deletion.feature, "Delete
// statements prevail on conflicting policy statements").
func TestCLIDeletionsWinWithinOneLoad(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	load(t, admin, conjurapi.PolicyModePatch, "root", `
- !variable db/password
- !host host-01
- !permit
  resource: !variable db/password
  privileges: [ execute ]
  role: !host host-01
- !deny
  resource: !variable db/password
  privileges: [ execute ]
  role: !host host-01
`)
	roles, err := admin.PermittedRoles("acme:variable:db/password", "execute")
	if err != nil || strings.Contains(strings.Join(roles, ","), "host-01") {
		t.Fatalf("roles permitted to execute db/password: %v %v; want no host-01", roles, err)
	}
	load(t, admin, conjurapi.PolicyModePatch, "root", `
- !group hosts
- !grant
  role: !host host-01
  member: !group hosts
- !revoke
  role: !host host-01
  member: !group hosts
`)
	members, err := admin.RoleMembers("acme:host:host-01")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m["member"] == "acme:group:hosts" {
			t.Fatalf("group hosts is a member of host-01 after grant and revoke in one load: %v", members)
		}
	}
	load(t, admin, conjurapi.PolicyModePatch, "root", "- !variable to_be_deleted\n- !delete\n  record: !variable to_be_deleted\n")
	if ok, _ := admin.ResourceExists("acme:variable:to_be_deleted"); ok {
		t.Fatal("variable to_be_deleted exists")
	}
}

// restricted_to as Conjur shows and extends it (cucumber/policy
// cidr_restrictions.feature): single addresses as /32 and /128, and an
// append (conjur policy load, POST) adds to the list instead of replacing it.
func TestCLIRestrictedTo(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	restricted := func(id string) []string {
		t.Helper()
		r, err := admin.Resource(id)
		if err != nil {
			t.Fatalf("show %s: %v", id, err)
		}
		var out []string
		for _, c := range r["restricted_to"].([]any) {
			out = append(out, c.(string))
		}
		return out
	}
	load(t, admin, conjurapi.PolicyModePut, "root", `
- !user
  id: alice
  restricted_to: 192.168.101.1
- !host
  id: serviceA
  restricted_to: [ 192.168.0.1, "2001:db8::1", 192.168.1.0/24 ]
`)
	if got := strings.Join(restricted("acme:user:alice"), " "); got != "192.168.101.1/32" {
		t.Fatalf("alice restricted_to %s", got)
	}
	if got := strings.Join(restricted("acme:host:serviceA"), " "); got != "192.168.0.1/32 2001:db8::1/128 192.168.1.0/24" {
		t.Fatalf("serviceA restricted_to %s", got)
	}
	load(t, admin, conjurapi.PolicyModePost, "root", `
- !user
  id: alice
  restricted_to: 192.168.101.2
- !host
  id: serviceA
  restricted_to: 192.168.0.1
`)
	if got := strings.Join(restricted("acme:user:alice"), " "); got != "192.168.101.1/32 192.168.101.2/32" {
		t.Fatalf("alice after the append: %s, want old and new", got)
	}
	if got := strings.Join(restricted("acme:host:serviceA"), " "); got != "192.168.0.1/32 2001:db8::1/128 192.168.1.0/24" {
		t.Fatalf("serviceA after appending what it had: %s", got)
	}
	// A replace sets the list; without restricted_to it is empty.
	load(t, admin, conjurapi.PolicyModePut, "root", "- !user alice\n- !host serviceA\n")
	if got := restricted("acme:user:alice"); len(got) != 0 {
		t.Fatalf("alice after a replace without restricted_to: %v", got)
	}
}

// GET /resources without an account, with ?role= and ?acting_as= (what
// conjur list --role sends through conjur-api-go), as Conjur's
// resource_list_by_role feature.
func TestCLIResourcesByRole(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	resp := load(t, admin, conjurapi.PolicyModePost, "root", `
- !user alice
- !user bob
- !variable shared
- !variable hidden
- !permit
  role: !user alice
  privilege: read
  resource: !variable shared
`)
	alice := newClient(t, l, "alice", resp.CreatedRoles["acme:user:alice"].APIKey)
	bob := newClient(t, l, "bob", resp.CreatedRoles["acme:user:bob"].APIKey)

	// conjur-api-go sends acting_as.
	rs, err := admin.Resources(&conjurapi.ResourceFilter{Kind: "variable", Role: "acme:user:alice"})
	if err != nil || strings.Join(ids(rs), ",") != "acme:variable:shared" {
		t.Fatalf("resources acting as alice: %v %v", ids(rs), err)
	}
	for _, q := range []string{"role=acme:user:alice", "acting_as=acme:user:alice"} {
		code, body := call(t, admin, "GET", l.url+"/resources?kind=variable&"+q, "")
		var got []map[string]any
		if code != http.StatusOK || json.Unmarshal(body, &got) != nil || strings.Join(ids(got), ",") != "acme:variable:shared" {
			t.Fatalf("GET /resources?%s: %d %s", q, code, body)
		}
	}
	code, body := call(t, alice, "GET", l.url+"/resources?kind=variable", "")
	var got []map[string]any
	if code != http.StatusOK || json.Unmarshal(body, &got) != nil || strings.Join(ids(got), ",") != "acme:variable:shared" {
		t.Fatalf("GET /resources as alice: %d %s", code, body)
	}
	// bob may not list as alice: 403, as Conjur's assumed_role.
	if code, body := call(t, bob, "GET", l.url+"/resources?role=acme:user:alice", ""); code != http.StatusForbidden {
		t.Fatalf("bob listing as alice: %d %s, want 403", code, body)
	}
}

// A load whose annotations are named like policy attributes goes through
// with Conjur's warnings (PoliciesController KNOWN_POLICY_ATTRIBUTES); a
// load without them has no warnings key.
func TestCLILoadWarnings(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	text := "- !variable\n  id: v\n  annotations:\n    description: fine\n    owner: alice\n    restricted_to: 10.0.0.1\n- !host\n  id: h\n  annotations:\n    owner: bob\n"
	code, body := call(t, admin, "POST", l.url+"/policies/acme/policy/root", text)
	var got struct {
		Warnings []string `json:"warnings"`
	}
	want := []string{
		"Annotation 'owner' matches a known policy attribute. This annotation will not be treated as a standard attribute and may not have the intended effect.",
		"Annotation 'restricted_to' matches a known policy attribute. This annotation will not be treated as a standard attribute and may not have the intended effect.",
	}
	if code != http.StatusCreated || json.Unmarshal(body, &got) != nil || strings.Join(got.Warnings, "\n") != strings.Join(want, "\n") {
		t.Fatalf("load: %d %s\nwant warnings %q", code, body, want)
	}
	code, body = call(t, admin, "POST", l.url+"/policies/acme/policy/root?dryRun=true", text)
	if code != http.StatusOK || !strings.Contains(string(body), `"warnings":["Annotation 'owner'`) {
		t.Fatalf("dry run: %d %s", code, body)
	}
	code, body = call(t, admin, "POST", l.url+"/policies/acme/policy/root", "- !variable w\n")
	if code != http.StatusCreated || strings.Contains(string(body), "warnings") {
		t.Fatalf("load without warnings: %d %s", code, body)
	}
}

// conjur resource show of a variable lists the versions of its value, as
// Conjur's resource JSON does (cucumber/api resource_show.feature).
func TestCLIResourceShowsSecretVersions(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	load(t, admin, conjurapi.PolicyModePost, "root", "- !variable db/password\n- !variable empty\n")
	for _, v := range []string{"one", "two"} {
		if err := admin.AddSecret("acme:variable:db/password", v); err != nil {
			t.Fatal(err)
		}
	}
	code, body := call(t, admin, "GET", l.url+"/resources/acme/variable/db%2Fpassword", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"secrets":[{"version":1,"expires_at":null},{"version":2,"expires_at":null}]`) {
		t.Fatalf("show db/password: %d %s", code, body)
	}
	code, body = call(t, admin, "GET", l.url+"/resources/acme/variable/empty", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"secrets":[]`) {
		t.Fatalf("show empty: %d %s", code, body)
	}
}

// conjur resource show of a host factory lists its layers and tokens
// (cucumber/api host_factory_show.feature); this one has no tokens yet.
func TestCLIHostFactoryShowsLayers(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	resp := load(t, admin, conjurapi.PolicyModePost, "root", `
- !user alice
- !layer the-layer
- !layer other
- !host_factory
  id: the-layer-factory
  layers: [ !layer the-layer, !layer other ]
- !permit
  role: !user alice
  privilege: read
  resource: !host_factory the-layer-factory
`)
	alice := newClient(t, l, "alice", resp.CreatedRoles["acme:user:alice"].APIKey)
	code, body := call(t, alice, "GET", l.url+"/resources/acme/host_factory/the-layer-factory", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"layers":["acme:layer:other","acme:layer:the-layer"],"tokens":[]`) {
		t.Fatalf("show the host factory: %d %s", code, body)
	}
}

// GET /roles/...?graph: Conjur's role graph (cucumber/api
// role_graph.feature), every edge above and below the role.
func TestCLIRoleGraph(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	load(t, admin, conjurapi.PolicyModePatch, "root", `
- !group internal
- !layer applications
- !group shipping
- !user alice
- !grant
  role: !group internal
  member: !layer applications
- !grant
  role: !layer applications
  member: !group shipping
- !grant
  role: !group shipping
  member: !user alice
`)
	code, body := call(t, admin, "GET", l.url+"/roles/acme/group/internal?graph", "")
	want := `[{"child":"acme:layer:applications","parent":"acme:group:internal"},` +
		`{"child":"acme:user:admin","parent":"acme:group:internal"},` +
		`{"child":"acme:user:admin","parent":"acme:group:shipping"},` +
		`{"child":"acme:user:alice","parent":"acme:group:shipping"},` +
		`{"child":"acme:group:shipping","parent":"acme:layer:applications"},` +
		`{"child":"acme:user:admin","parent":"acme:layer:applications"},` +
		`{"child":"acme:user:admin","parent":"acme:user:alice"}]`
	if code != http.StatusOK || strings.TrimSpace(string(body)) != want {
		t.Fatalf("role graph: %d %s\nwant %s", code, body, want)
	}
	// From the middle: alice's graph goes up to internal.
	code, body = call(t, admin, "GET", l.url+"/roles/acme/user/alice?graph", "")
	if code != http.StatusOK || !strings.Contains(string(body), `{"child":"acme:layer:applications","parent":"acme:group:internal"}`) {
		t.Fatalf("alice's role graph: %d %s", code, body)
	}
}

// conjur policy load --dry-run: ids the caller cannot see are redacted
// (Conjur's PrimitiveFactory), and an error carries Conjur's advice on its
// second line (Commands::Policy::ExplainError).
func TestCLIDryRunRedactsAndAdvises(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	resp := load(t, admin, conjurapi.PolicyModePost, "root", `
- !user bob
- !group secret-ops
- !policy
  id: app
  owner: !user bob
`)
	bob := newClient(t, l, "bob", resp.CreatedRoles["acme:user:bob"].APIKey)
	req, err := bob.LoadPolicyRequest(conjurapi.PolicyModePost, "app", strings.NewReader("- !host h\n- !layer l\n- !grant\n  role: !layer l\n  member: !group /secret-ops\n"), true)
	code, body := submit(t, bob, req, err)
	if code != http.StatusOK || !strings.Contains(string(body), `"acme:group:[REDACTED]"`) || strings.Contains(string(body), "secret-ops") {
		t.Fatalf("bob's dry run: %d %s\nwant secret-ops redacted", code, body)
	}
	if !strings.Contains(string(body), `"identifier":"acme:host:app/h"`) {
		t.Fatalf("bob's dry run hides what bob sees: %s", body)
	}

	req, err = admin.LoadPolicyRequest(conjurapi.PolicyModePost, "root", strings.NewReader("- !user\n  id: x\n  restricted_to: not-an-address\n"), true)
	code, body = submit(t, admin, req, err)
	var bad struct {
		Status string
		Errors []struct{ Message string }
	}
	if code != http.StatusUnprocessableEntity || json.Unmarshal(body, &bad) != nil || len(bad.Errors) != 1 ||
		bad.Errors[0].Message != "Invalid IP address or CIDR range 'not-an-address'\nMake sure your address or range is in the correct format (e.g. 192.168.1.0 or 192.168.1.0/16)" {
		t.Fatalf("dry run of a bad address: %d %s", code, body)
	}
}
