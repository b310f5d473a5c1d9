package policy

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// orgPolicy is a small organisation: a chain of groups, a layer of hosts,
// a variable its consumers read.
const orgPolicy = `
- !group everyone
- !group engineers
- !group admins
- !user alice
- !user bob
- !layer apps
- !host web
- !variable
  id: db/password
  annotations:
    description: the production database password
- !variable
  id: db/url
- !webservice
  id: billing
  annotations: {description: invoices}
- !grant
  role: !group everyone
  member: !group engineers
- !grant
  role: !group engineers
  members:
  - !user alice
  - !member
    role: !group admins
    admin: true
- !grant
  role: !layer apps
  member: !host web
- !permit
  role: !group everyone
  privilege: read
  resource: !variable db/url
- !permit
  role: !layer apps
  privileges: [read, execute]
  resource: !variable db/password
`

func orgGraph(t testing.TB) *Graph {
	t.Helper()
	g := newTestGraph(t)
	load(t, g, "root", Replace, orgPolicy)
	return g
}

func TestAllowed(t *testing.T) {
	t.Parallel()
	g := orgGraph(t)
	password, url := id(KindVariable, "db/password"), id(KindVariable, "db/url")
	tests := map[string]struct {
		role      ID
		privilege string
		resource  ID
		want      bool
	}{
		"through two memberships":       {id(KindUser, "alice"), "read", url, true},
		"privileges do not imply":       {id(KindUser, "alice"), "execute", url, false},
		"not a member":                  {id(KindUser, "bob"), "read", url, false},
		"host through its layer":        {id(KindHost, "web"), "execute", password, true},
		"layer permission not granted":  {id(KindUser, "alice"), "read", password, false},
		"owner holds every privilege":   {id(KindUser, "admin"), "rotate", password, true},
		"nested admin group":            {id(KindGroup, "admins"), "read", url, true},
		"unknown resource":              {id(KindUser, "alice"), "read", id(KindVariable, "nope"), false},
		"a role is not its own owner":   {id(KindHost, "web"), "read", id(KindHost, "web"), false},
		"owner of a role is its member": {id(KindUser, "admin"), "read", id(KindHost, "web"), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := g.Allowed(tc.role, tc.privilege, tc.resource); got != tc.want {
				t.Errorf("Allowed(%s, %s, %s) = %v, want %v", tc.role, tc.privilege, tc.resource, got, tc.want)
			}
		})
	}
}

func TestMembershipQueries(t *testing.T) {
	t.Parallel()
	g := orgGraph(t)
	ids := func(kind string, names ...string) []ID {
		var out []ID
		for _, n := range names {
			out = append(out, id(kind, n))
		}
		return out
	}
	memberIDs := func(ms []Membership, member bool) []ID {
		var out []ID
		for _, m := range ms {
			if member {
				out = append(out, m.Member)
			} else {
				out = append(out, m.Role)
			}
		}
		return out
	}
	all := g.AllRoles(id(KindUser, "alice"))
	if want := append(ids(KindGroup, "engineers", "everyone"), id(KindUser, "alice")); !slices.Equal(all, want) {
		t.Errorf("AllRoles(alice) = %v, want %v", all, want)
	}
	members := g.Members(id(KindGroup, "engineers"))
	if got, want := memberIDs(members, true), append(ids(KindGroup, "admins"), id(KindUser, "admin"), id(KindUser, "alice")); !slices.Equal(got, want) {
		t.Errorf("Members(engineers) = %v, want %v", got, want)
	}
	for _, m := range members {
		switch m.Member {
		case id(KindGroup, "admins"):
			if !m.AdminOption || m.Ownership {
				t.Errorf("admins membership = %+v, want admin option", m)
			}
		case id(KindUser, "admin"):
			if !m.AdminOption || !m.Ownership {
				t.Errorf("owner membership = %+v, want admin option and ownership", m)
			}
		}
	}
	if got, want := memberIDs(g.Memberships(id(KindGroup, "engineers")), false), ids(KindGroup, "everyone"); !slices.Equal(got, want) {
		t.Errorf("Memberships(engineers) = %v, want %v", got, want)
	}
	permitted := g.PermittedRoles("read", id(KindVariable, "db/url"))
	want := append(ids(KindGroup, "admins", "engineers", "everyone"), id(KindUser, "admin"), id(KindUser, "alice"))
	if !slices.Equal(permitted, want) {
		t.Errorf("PermittedRoles(read, db/url) = %v, want %v", permitted, want)
	}
}

func TestResources(t *testing.T) {
	t.Parallel()
	g := orgGraph(t)
	names := func(page []ResourceInfo) []string {
		var out []string
		for _, r := range page {
			out = append(out, r.ID.Kind+":"+r.ID.Name)
		}
		return out
	}
	tests := map[string]struct {
		q         ResourceQuery
		want      []string
		wantCount int
	}{
		"kind":             {ResourceQuery{Kind: KindVariable}, []string{"variable:db/password", "variable:db/url"}, 2},
		"search id":        {ResourceQuery{Search: "URL"}, []string{"variable:db/url"}, 1},
		"search annots":    {ResourceQuery{Search: "database production"}, []string{"variable:db/password"}, 1},
		"limit and offset": {ResourceQuery{Kind: KindGroup, Offset: 1, Limit: 1}, []string{"group:engineers"}, 3},
		"offset past end":  {ResourceQuery{Kind: KindGroup, Offset: 9}, nil, 3},
		"visible to alice": {ResourceQuery{Viewer: id(KindUser, "alice")}, []string{"variable:db/url"}, 1},
		"visible to web":   {ResourceQuery{Viewer: id(KindHost, "web")}, []string{"variable:db/password"}, 1},
		"unknown viewer":   {ResourceQuery{Viewer: id(KindUser, "nobody")}, nil, 0},
		"other account":    {ResourceQuery{Account: "other"}, nil, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			page, count := g.Resources(tc.q)
			if got := names(page); !slices.Equal(got, tc.want) || count != tc.wantCount {
				t.Errorf("Resources(%+v) = %v, %d; want %v, %d", tc.q, got, count, tc.want, tc.wantCount)
			}
		})
	}
	info, ok := g.Resource(id(KindVariable, "db/password"))
	if !ok || info.Owner != id(KindUser, "admin") || info.PolicyID != policyID("root") ||
		len(info.Permissions) != 2 || len(info.Annotations) != 1 || info.Annotations[0].Name != "description" {
		t.Errorf("Resource(db/password) = %+v, %v", info, ok)
	}
	if !g.Visible(id(KindUser, "alice"), id(KindVariable, "db/url")) || g.Visible(id(KindUser, "alice"), id(KindVariable, "db/password")) {
		t.Error("Visible disagrees with the permissions")
	}
}

// TestClosureFollowsChanges: cached memberships are recomputed after a
// membership is added or removed.
func TestClosureFollowsChanges(t *testing.T) {
	t.Parallel()
	g := orgGraph(t)
	bob, url := id(KindUser, "bob"), id(KindVariable, "db/url")
	if g.Allowed(bob, "read", url) {
		t.Fatal("bob reads before the grant")
	}
	grant := Membership{Role: id(KindGroup, "everyone"), Member: bob, PolicyID: policyID("root")}
	g.Put(grant)
	if !g.Allowed(bob, "read", url) {
		t.Error("bob cannot read after the grant")
	}
	g.Delete(grant)
	if g.Allowed(bob, "read", url) {
		t.Error("bob reads after the revoke")
	}
}

// TestGraphFromStoredFacts: a graph rebuilt from the facts another graph
// stored (keys and values through MarshalFact) answers the same.
func TestGraphFromStoredFacts(t *testing.T) {
	t.Parallel()
	g := orgGraph(t)
	var rebuilt []Fact
	for _, f := range g.Facts() {
		value, err := MarshalFact(f)
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalFact(f.Key(), value)
		if err != nil {
			t.Fatalf("UnmarshalFact(%s, %s): %v", f.Key(), value, err)
		}
		if !Equal(back, f) {
			t.Fatalf("round trip of %s: %+v, want %+v", f.Key(), back, f)
		}
		rebuilt = append(rebuilt, back)
	}
	h := NewGraph(rebuilt...)
	if !slices.EqualFunc(g.Facts(), h.Facts(), Equal) {
		t.Error("the rebuilt graph holds other facts")
	}
	if !h.Allowed(id(KindHost, "web"), "execute", id(KindVariable, "db/password")) {
		t.Error("the rebuilt graph does not allow what the original does")
	}
	if _, err := UnmarshalFact("role/myorg:host:x", []byte(`{"id":"myorg:host:y"}`)); err == nil {
		t.Error("a fact stored under another fact's key was accepted")
	}
}

// TestConcurrentChecksAndLoads: checks and listings run while loads apply
// (run with -race).
func TestConcurrentChecksAndLoads(t *testing.T) {
	t.Parallel()
	g := orgGraph(t)
	alice, url := id(KindUser, "alice"), id(KindVariable, "db/url")
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				g.Allowed(alice, "read", url)
				g.AllRoles(alice)
				g.Resources(ResourceQuery{Viewer: alice})
			}
		}()
	}
	for i := range 20 {
		load(t, g, "root", Append, fmt.Sprintf("- !group g%d\n- !grant\n  role: !group everyone\n  member: !group g%d\n", i, i))
	}
	close(done)
	wg.Wait()
	if !g.Allowed(alice, "read", url) {
		t.Error("alice lost read")
	}
}
