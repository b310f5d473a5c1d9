package policy

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const acct = "myorg"

func id(kind, name string) ID { return NewID(acct, kind, name) }

func policyID(name string) ID { return id(KindPolicy, name) }

// newTestGraph returns a graph holding a fresh account.
func newTestGraph(t testing.TB) *Graph {
	t.Helper()
	g := NewGraph()
	cs, err := g.PlanAccount(acct)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	return g
}

// load plans and applies a load, failing the test on error.
func load(t testing.TB, g *Graph, policy string, mode Mode, text string) *ChangeSet {
	t.Helper()
	cs, err := g.Plan(LoadRequest{Policy: policyID(policy), Mode: mode, Filename: policy + ".yml", Text: []byte(text)})
	if err != nil {
		t.Fatalf("load into %s (%s): %v", policy, mode, err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func keys(fs []Fact) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Key()
	}
	slices.Sort(out)
	return out
}

const seedGenerationRoot = `
- !policy
  id: conjur
  body:
  - !policy
    id: seed-generation
- !host follower-1
- !host intruder
`

const seedGenerationBody = `
- !webservice
- !group consumers
- !permit
  role: !group consumers
  privilege: execute
  resource: !webservice
`

func TestSeedGenerationPermission(t *testing.T) {
	t.Parallel()
	g := newTestGraph(t)
	load(t, g, "root", Replace, seedGenerationRoot)
	cs := load(t, g, "conjur/seed-generation", Replace, seedGenerationBody)
	if !slices.Equal(cs.NewRoles, nil) {
		t.Errorf("NewRoles = %v, want none", cs.NewRoles)
	}
	load(t, g, "root", Append, `
- !grant
  role: !group conjur/seed-generation/consumers
  member: !host follower-1
`)
	ws := id(KindWebservice, "conjur/seed-generation")
	tests := map[string]struct {
		role      ID
		privilege string
		want      bool
	}{
		"granted host executes":         {id(KindHost, "follower-1"), "execute", true},
		"granted host may not read":     {id(KindHost, "follower-1"), "read", false},
		"other host may not execute":    {id(KindHost, "intruder"), "execute", false},
		"admin owns everything":         {id(KindUser, "admin"), "execute", true},
		"policy role owns its contents": {id(KindPolicy, "conjur/seed-generation"), "update", true},
		"group executes":                {id(KindGroup, "conjur/seed-generation/consumers"), "execute", true},
		"unknown role":                  {id(KindHost, "nobody"), "execute", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := g.Allowed(tc.role, tc.privilege, ws); got != tc.want {
				t.Errorf("Allowed(%s, %s, %s) = %v, want %v", tc.role, tc.privilege, ws, got, tc.want)
			}
		})
	}
}

type loadStep struct {
	policy string
	mode   Mode
	text   string
}

func TestPlan(t *testing.T) {
	t.Parallel()
	hostsAB := "- !host a\n- !host b\n"
	tests := map[string]struct {
		setup []loadStep
		step  loadStep
		// wantErr, when set, is a substring of the error; the graph must be
		// left as it was.
		wantErr     string
		wantErrLine int
		created     []string
		updated     []string
		deleted     []string
		newRoles    []ID
		check       func(t *testing.T, g *Graph)
	}{
		"append creates roles, resources and ownerships": {
			step: loadStep{"root", Append, hostsAB},
			created: []string{
				"membership/myorg:host:a/myorg:user:admin/owner",
				"membership/myorg:host:b/myorg:user:admin/owner",
				"resource/myorg:host:a", "resource/myorg:host:b",
				"role/myorg:host:a", "role/myorg:host:b",
			},
			newRoles: []ID{id(KindHost, "a"), id(KindHost, "b")},
		},
		"replace with the same text changes nothing": {
			setup: []loadStep{{"root", Replace, hostsAB}},
			step:  loadStep{"root", Replace, hostsAB},
		},
		"replace deletes what the text no longer declares": {
			setup: []loadStep{{"root", Replace, hostsAB}},
			step:  loadStep{"root", Replace, "- !host a\n"},
			deleted: []string{
				"membership/myorg:host:b/myorg:user:admin/owner",
				"resource/myorg:host:b", "role/myorg:host:b",
			},
		},
		"update leaves undeclared records": {
			setup: []loadStep{{"root", Replace, hostsAB}},
			step:  loadStep{"root", Update, "- !host a\n"},
		},
		"update applies !delete": {
			setup: []loadStep{{"root", Replace, hostsAB}},
			step:  loadStep{"root", Update, "- !delete\n  record: !host b\n"},
			deleted: []string{
				"membership/myorg:host:b/myorg:user:admin/owner",
				"resource/myorg:host:b", "role/myorg:host:b",
			},
		},
		"append rejects deletion statements": {
			setup:       []loadStep{{"root", Replace, hostsAB}},
			step:        loadStep{"root", Append, "- !host c\n- !delete\n  record: !host b\n"},
			wantErr:     "may not contain deletion statements",
			wantErrLine: 2,
		},
		"append does not change an annotation": {
			setup: []loadStep{{"root", Replace, "- !host\n  id: a\n  annotations: {team: red}\n"}},
			step:  loadStep{"root", Append, "- !host\n  id: a\n  annotations: {team: blue}\n"},
		},
		"update changes an annotation": {
			setup:   []loadStep{{"root", Replace, "- !host\n  id: a\n  annotations: {team: red}\n"}},
			step:    loadStep{"root", Update, "- !host\n  id: a\n  annotations: {team: blue}\n"},
			updated: []string{"annotation/myorg:host:a/team"},
		},
		"update moves the ownership with the owner": {
			setup:   []loadStep{{"root", Replace, "- !group ops\n- !host a\n"}},
			step:    loadStep{"root", Update, "- !group ops\n- !host\n  id: a\n  owner: !group ops\n"},
			created: []string{"membership/myorg:host:a/myorg:group:ops/owner"},
			updated: []string{"resource/myorg:host:a"},
			deleted: []string{"membership/myorg:host:a/myorg:user:admin/owner"},
			check: func(t *testing.T, g *Graph) {
				if !g.Allowed(id(KindGroup, "ops"), "anything", id(KindHost, "a")) {
					t.Error("the new owner is not allowed")
				}
			},
		},
		"a record another policy loaded is left alone": {
			setup: []loadStep{
				{"root", Replace, "- !policy app\n- !group ops\n"},
				{"app", Replace, "- !host web\n"},
			},
			// Re-declaring root's group from policy app: the id resolves
			// inside app, so this declares app/ops; the policy itself is
			// root's and shadowed.
			step: loadStep{"app", Replace, "- !host web\n- !policy\n  id: x\n"},
			created: []string{
				"membership/myorg:policy:app%2Fx/myorg:policy:app/owner",
				"resource/myorg:policy:app%2Fx", "role/myorg:policy:app%2Fx",
			},
		},
		"unknown reference fails at the reference": {
			step:        loadStep{"root", Append, "- !host a\n- !grant\n  role: !group missing\n  member: !host a\n"},
			wantErr:     "Group 'missing' not found in account 'myorg'",
			wantErrLine: 3,
		},
		"reference to what the replace deletes fails": {
			setup:       []loadStep{{"root", Replace, "- !group ops\n- !host a\n"}},
			step:        loadStep{"root", Replace, "- !host a\n- !grant\n  role: !group ops\n  member: !host a\n"},
			wantErr:     "group 'ops' is deleted by this load",
			wantErrLine: 3,
		},
		"bad reference at the end of a large load leaves no trace": {
			setup:       []loadStep{{"root", Replace, hostsAB}},
			step:        loadStep{"root", Replace, strings.Repeat("- !variable v\n", 1) + bigVariables(2000) + "- !permit\n  role: !group nobody\n  privilege: read\n  resource: !variable v\n"},
			wantErr:     "not found",
			wantErrLine: 2003,
		},
		"deny removes this policy's permission only": {
			setup: []loadStep{
				{"root", Replace, "- !policy app\n- !group ops\n"},
				{"app", Replace, "- !variable v\n- !permit\n  role: !group /ops\n  privilege: read\n  resource: !variable v\n"},
				{"root", Append, "- !permit\n  role: !group ops\n  privilege: execute\n  resource: !variable app/v\n"},
			},
			step:    loadStep{"app", Update, "- !deny\n  role: !group /ops\n  privilege: [read, execute]\n  resource: !variable v\n"},
			deleted: []string{"permission/myorg:variable:app%2Fv/read/myorg:group:ops"},
			check: func(t *testing.T, g *Graph) {
				if !g.Allowed(id(KindGroup, "ops"), "execute", id(KindVariable, "app/v")) {
					t.Error("the root policy's permit was denied by app")
				}
			},
		},
		"deleting a policy deletes everything loaded into it": {
			setup: []loadStep{
				{"root", Replace, "- !policy app\n- !host outside\n"},
				{"app", Replace, "- !host web\n- !layer\n- !grant\n  role: !layer\n  member: !host web\n"},
			},
			step: loadStep{"root", Replace, "- !host outside\n"},
			deleted: []string{
				"membership/myorg:host:app%2Fweb/myorg:policy:app/owner",
				"membership/myorg:layer:app/myorg:host:app%2Fweb/grant",
				"membership/myorg:layer:app/myorg:policy:app/owner",
				"membership/myorg:policy:app/myorg:user:admin/owner",
				"resource/myorg:host:app%2Fweb", "resource/myorg:layer:app", "resource/myorg:policy:app",
				"role/myorg:host:app%2Fweb", "role/myorg:layer:app", "role/myorg:policy:app",
			},
		},
		// Conjur's "Delete statements prevail on conflicting policy
		// statements" (cucumber/policy deletion.feature).
		"delete and declare again in one load deletes": {
			setup: []loadStep{{"root", Replace, "- !host\n  id: a\n  annotations: {team: red}\n"}},
			step:  loadStep{"root", Update, "- !delete\n  record: !host a\n- !host\n  id: a\n  annotations: {team: blue}\n"},
			deleted: []string{
				"annotation/myorg:host:a/team", "membership/myorg:host:a/myorg:user:admin/owner",
				"resource/myorg:host:a", "role/myorg:host:a",
			},
		},
		"declare and delete a new record in one load creates nothing": {
			step: loadStep{"root", Update, "- !variable to_be_deleted\n- !delete\n  record: !variable to_be_deleted\n"},
		},
		"permit and deny in one load: the deny wins": {
			step: loadStep{"root", Update, "- !variable db/password\n- !host host-01\n" +
				"- !permit\n  resource: !variable db/password\n  privileges: [ execute ]\n  role: !host host-01\n" +
				"- !deny\n  resource: !variable db/password\n  privileges: [ execute ]\n  role: !host host-01\n"},
			created: []string{
				"membership/myorg:host:host-01/myorg:user:admin/owner",
				"resource/myorg:host:host-01", "resource/myorg:variable:db%2Fpassword", "role/myorg:host:host-01",
			},
			newRoles: []ID{id(KindHost, "host-01")},
		},
		"grant and revoke in one load: the revoke wins": {
			setup: []loadStep{{"root", Replace, "- !host host-01\n"}},
			step: loadStep{"root", Update, "- !group hosts\n" +
				"- !grant\n  role: !host host-01\n  member: !group hosts\n" +
				"- !revoke\n  role: !host host-01\n  member: !group hosts\n"},
			created: []string{
				"membership/myorg:group:hosts/myorg:user:admin/owner",
				"resource/myorg:group:hosts", "role/myorg:group:hosts",
			},
		},
		"an existing permit denied and declared again: the deny wins": {
			setup: []loadStep{{"root", Replace, "- !variable v\n- !group g\n- !permit\n  resource: !variable v\n  privilege: read\n  role: !group g\n"}},
			step: loadStep{"root", Update, "- !permit\n  resource: !variable v\n  privilege: read\n  role: !group g\n" +
				"- !deny\n  resource: !variable v\n  privilege: read\n  role: !group g\n"},
			deleted: []string{"permission/myorg:variable:v/read/myorg:group:g"},
		},
		// cucumber/policy cidr_restrictions.feature.
		"restricted_to is kept as CIDRs": {
			step: loadStep{"root", Replace, "- !user\n  id: alice\n  restricted_to: [192.168.101.1, '::1', 10.0.0.0/8]\n"},
			created: []string{
				"membership/myorg:user:alice/myorg:user:admin/owner", "resource/myorg:user:alice", "role/myorg:user:alice",
			},
			newRoles: []ID{id(KindUser, "alice")},
			check: func(t *testing.T, g *Graph) {
				r, _ := g.Role(id(KindUser, "alice"))
				if want := []string{"192.168.101.1/32", "::1/128", "10.0.0.0/8"}; !slices.Equal(r.RestrictedTo, want) {
					t.Errorf("restricted_to = %v, want %v", r.RestrictedTo, want)
				}
			},
		},
		"an append extends restricted_to": {
			setup:   []loadStep{{"root", Replace, "- !user\n  id: alice\n  restricted_to: 192.168.101.1\n- !host\n  id: serviceA\n  restricted_to: 192.168.0.1\n"}},
			step:    loadStep{"root", Append, "- !user\n  id: alice\n  restricted_to: 192.168.101.2\n- !host\n  id: serviceA\n  restricted_to: [192.168.0.1/32]\n"},
			updated: []string{"role/myorg:user:alice"},
			check: func(t *testing.T, g *Graph) {
				r, _ := g.Role(id(KindUser, "alice"))
				if want := []string{"192.168.101.1/32", "192.168.101.2/32"}; !slices.Equal(r.RestrictedTo, want) {
					t.Errorf("restricted_to = %v, want %v", r.RestrictedTo, want)
				}
			},
		},
		"a replace sets restricted_to": {
			setup:   []loadStep{{"root", Replace, "- !user\n  id: alice\n  restricted_to: 192.168.101.1\n"}},
			step:    loadStep{"root", Replace, "- !user\n  id: alice\n"},
			updated: []string{"role/myorg:user:alice"},
		},
		// cucumber/api public_keys.feature; Conjur's append adds public_key
		// resources and deletes none.
		"an append extends public_keys and restricted_to in one update": {
			setup:   []loadStep{{"root", Replace, "- !user\n  id: alice\n  restricted_to: 192.168.101.1\n  public_keys: [ssh-rsa BBB laptop, ' ssh-rsa AAA desk ']\n"}},
			step:    loadStep{"root", Append, "- !user\n  id: alice\n  restricted_to: 192.168.101.2\n  public_key: ssh-ed25519 CCC tablet\n"},
			updated: []string{"role/myorg:user:alice"},
			check: func(t *testing.T, g *Graph) {
				r, _ := g.Role(id(KindUser, "alice"))
				if want := []string{"ssh-ed25519 CCC tablet", "ssh-rsa AAA desk", "ssh-rsa BBB laptop"}; !slices.Equal(r.PublicKeys, want) {
					t.Errorf("public_keys = %q, want %q", r.PublicKeys, want)
				}
				if want := []string{"192.168.101.1/32", "192.168.101.2/32"}; !slices.Equal(r.RestrictedTo, want) {
					t.Errorf("restricted_to = %v, want %v", r.RestrictedTo, want)
				}
			},
		},
		"an update keeps the public keys the text leaves out": {
			setup:   []loadStep{{"root", Replace, "- !user\n  id: alice\n  public_keys: [ssh-rsa AAA desk]\n"}},
			step:    loadStep{"root", Update, "- !user\n  id: alice\n  public_keys: [ssh-rsa BBB laptop]\n"},
			updated: []string{"role/myorg:user:alice"},
			check: func(t *testing.T, g *Graph) {
				r, _ := g.Role(id(KindUser, "alice"))
				if want := []string{"ssh-rsa AAA desk", "ssh-rsa BBB laptop"}; !slices.Equal(r.PublicKeys, want) {
					t.Errorf("public_keys = %q, want %q", r.PublicKeys, want)
				}
			},
		},
		"a replace states the public keys": {
			setup:   []loadStep{{"root", Replace, "- !user\n  id: alice\n  public_keys: [ssh-rsa AAA desk]\n"}},
			step:    loadStep{"root", Replace, "- !user\n  id: alice\n"},
			updated: []string{"role/myorg:user:alice"},
		},
		"an update that repeats the keys changes nothing": {
			setup: []loadStep{{"root", Replace, "- !user\n  id: alice\n  public_keys: [ssh-rsa AAA desk, ssh-rsa BBB laptop]\n"}},
			step:  loadStep{"root", Update, "- !user\n  id: alice\n  public_keys: [ssh-rsa BBB laptop]\n"},
		},
		"load into a policy that does not exist": {
			step:    loadStep{"nowhere", Append, "- !host a\n"},
			wantErr: "policy not found",
		},
		"users are named by their policy": {
			setup:    []loadStep{{"root", Replace, "- !policy\n  id: dev\n  body:\n  - !policy db\n"}},
			step:     loadStep{"dev/db", Append, "- !user alice\n"},
			newRoles: []ID{id(KindUser, "alice@dev-db")},
			created: []string{
				"membership/myorg:user:alice@dev-db/myorg:policy:dev%2Fdb/owner",
				"resource/myorg:user:alice@dev-db", "role/myorg:user:alice@dev-db",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g := newTestGraph(t)
			for _, s := range tc.setup {
				load(t, g, s.policy, s.mode, s.text)
			}
			before, rev := g.Facts(), g.Revision()
			cs, err := g.Plan(LoadRequest{Policy: policyID(tc.step.policy), Mode: tc.step.mode, Text: []byte(tc.step.text)})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				var perr *Error
				if tc.wantErrLine != 0 && (!errors.As(err, &perr) || perr.Line != tc.wantErrLine) {
					t.Errorf("error %v: want it at line %d", err, tc.wantErrLine)
				}
				if g.Revision() != rev || !slices.EqualFunc(before, g.Facts(), Equal) {
					t.Error("a failed plan changed the graph")
				}
				return
			}
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if g.Revision() != rev {
				t.Error("Plan changed the graph")
			}
			for what, pair := range map[string][2][]string{
				"created": {keys(cs.Created), tc.created},
				"updated": {keys(cs.Updated), tc.updated},
				"deleted": {keys(cs.Deleted), tc.deleted},
			} {
				if !slices.Equal(pair[0], sortedCopy(pair[1])) {
					t.Errorf("%s = %q\nwant %q", what, pair[0], sortedCopy(pair[1]))
				}
			}
			if tc.newRoles != nil && !slices.Equal(cs.NewRoles, tc.newRoles) {
				t.Errorf("NewRoles = %v, want %v", cs.NewRoles, tc.newRoles)
			}
			if err := g.Apply(cs); err != nil {
				t.Fatal(err)
			}
			// Planning the same load again changes nothing: every mode is
			// idempotent once applied.
			again, err := g.Plan(LoadRequest{Policy: policyID(tc.step.policy), Mode: tc.step.mode, Text: []byte(tc.step.text)})
			if err != nil {
				t.Fatalf("second Plan: %v", err)
			}
			if !again.Empty() {
				t.Errorf("second load is not empty: created %q updated %q deleted %q", keys(again.Created), keys(again.Updated), keys(again.Deleted))
			}
			if tc.check != nil {
				tc.check(t, g)
			}
		})
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func bigVariables(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("- !variable v" + strings.Repeat("x", i%3) + itoa(i) + "\n")
	}
	return b.String()
}

func itoa(i int) string {
	return strconv.Itoa(i)
}

func TestApplyStale(t *testing.T) {
	t.Parallel()
	g := newTestGraph(t)
	cs, err := g.Plan(LoadRequest{Policy: policyID("root"), Mode: Append, Text: []byte("- !host a\n")})
	if err != nil {
		t.Fatal(err)
	}
	load(t, g, "root", Append, "- !host b\n")
	if err := g.Apply(cs); !errors.Is(err, ErrStale) {
		t.Errorf("Apply of a stale plan = %v, want ErrStale", err)
	}
}
