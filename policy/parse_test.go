package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		text string
		want string // the full Error(), Conjur's format
	}{
		"mapping at the root":           {"id: x\n", "Error at line 0, column 3 in p.yml : Unexpected mapping"},
		"scalar at the root":            {"hello\n", "Error at line 1, column 0 in p.yml : Unexpected scalar"},
		"untagged entry":                {"- id: x\n", "Error at line 0, column 5 in p.yml : No type given or inferred for sequence entry"},
		"duplicate anchor":              {"- !user &a x\n- !user &a y\n", "Error at line 2, column 0 in p.yml : Duplicate anchor a"},
		"id must be a string":           {"- !user\n  id: 123\n", "Error at line 2, column 0 in p.yml : Expected a string for field 'id', got Integer"},
		"list for a single field":       {"- !user\n  id: [a, b]\n", "Error at line 1, column 12 in p.yml : Expected a string for field 'id', got Array"},
		"owner must be a role":          {"- !user\n  id: a\n  owner: !variable v\n", "Error at line 3, column 0 in p.yml : Expected a Role for field 'owner', got Variable"},
		"member must be a role":         {"- !grant\n  role: !group g\n  member: !webservice w\n", "Error at line 3, column 0 in p.yml : Expected a Member for field 'member', got Webservice"},
		"yaml syntax":                   {"- !user\n  id: [a\n", "Error at line 2, column 0 in p.yml : did not find expected ',' or ']' while parsing a flow sequence at line 2 column 7"},
		"statement list holds a scalar": {"- !user a\n- b\n", "Error at line 2, column 0 in p.yml : Expected a statement (such as !user or !grant), got String"},
		"member is not a statement":     {"- !member\n  role: !user a\n", "Error at line 2, column 0 in p.yml : !member is not a statement: a policy lists records (such as !user or !policy) and !grant, !revoke, !permit, !deny or !delete"},
		"include is not supported":      {"- !include other.yml\n", "Error at line 1, column 0 in p.yml : Unrecognized data type '!include'"},
		"ipv4 cidr with host bits":      {"- !host\n  id: a\n  restricted_to: [10.1.2.3/8]\n", "Error at line 2, column 29 in p.yml : Invalid IP address or CIDR range '10.1.2.3/8': Value has bits set to right of mask. Did you mean '10.0.0.0/8'?"},
		"netmask":                       {"- !host\n  id: a\n  restricted_to: 10.0.0.0/255.0.0.0\n", "Error at line 3, column 0 in p.yml : Invalid IP address or CIDR range '10.0.0.0/255.0.0.0': Value has bits set to right of mask. Did you mean '10.0.0.0/8'?"},
		"cidr not a string":             {"- !host\n  id: a\n  restricted_to: 10\n", "Error at line 3, column 0 in p.yml : CIDR argument must be a String"},
		"admin must be boolean":         {"- !grant\n  role: !group g\n  member: !member {role: !user a, admin: maybe}\n", "Error at line 2, column 46 in p.yml : Expected a boolean for field 'admin', got String"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("p.yml", []byte(tc.text))
			if err == nil {
				t.Fatalf("Parse accepted %q", tc.text)
			}
			if err.Error() != tc.want {
				t.Errorf("Parse error:\n got %q\nwant %q", err.Error(), tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		text string
		dump string
	}{
		"empty text":           {"", "--- []\n"},
		"only comments":        {"# nothing yet\n", "--- []\n"},
		"explicit empty list":  {"[]\n", "--- []\n"},
		"tag spellings":        {"- !host_factory\n  id: f\n  layers: [!layer l]\n- !HostFactory g\n", "---\n- !host-factory\n  id: f\n  layer:\n  - !layer\n    id: l\n- !host-factory\n  id: g\n"},
		"managed role":         {"- !grant\n  role: !managed-role {record: !layer l, role_name: observe}\n  member: !user a\n", "---\n- !grant\n  member: !member\n    role: !user\n      id: a\n  role: !automatic-role\n    record: !layer\n      id: l\n    role_name: observe\n"},
		"quoted id stays text": {"- !user\n  id: \"123\"\n", "---\n- !user\n  id: '123'\n"},
		"admin as text":        {"- !grant\n  role: !group g\n  member: !member {role: !user a, admin: \"true\"}\n", "---\n- !grant\n  member: !member\n    admin: true\n    role: !user\n      id: a\n  role: !group\n    id: g\n"},
		"annotation types":     {"- !host\n  id: h\n  annotations:\n    n: 5\n    b: yes\n    s: \"5\"\n    d: ../x\n", "---\n- !host\n  annotations:\n    \"n\": 5\n    b: true\n    s: '5'\n    d: \"../x\"\n  id: h\n"},
		"ipv6 and bare hosts":  {"- !host\n  id: h\n  restricted_to: [\"::1\", 10.0.0.1, 2001:db8::/32]\n", "---\n- !host\n  id: h\n  restricted_to:\n  - \"::1\"\n  - 10.0.0.1\n  - 2001:db8::/32\n"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc, err := Parse("p.yml", []byte(tc.text))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := string(doc.Dump()); got != tc.dump {
				t.Errorf("Dump:\n%s\nwant:\n%s", got, tc.dump)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		text string
		want string
	}{
		"blank id at the top":   {"- !host\n", "host has a blank id"},
		"host factory blank id": {"- !host-factory\n  layers: [!layer l]\n", "host_factory has a blank id"},
		"declared twice":        {"- !group g\n- !group g\n", "group 'g' is declared more than once"},
		"ownership cycle":       {"- !group\n  id: a\n  owner: !group b\n- !group\n  id: b\n  owner: !group a\n", "Dependency cycle encountered between group 'a' and group 'b'"},
		"climbs above the root": {"- !policy\n  id: p\n  body:\n  - !host\n    id: h\n    owner: !group ../../x\n", "Invalid relative reference: p/../../x"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc, err := Parse("p.yml", []byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Resolve(doc, ResolveOptions{Account: acct, Owner: id(KindUser, "admin")})
			var perr *Error
			if !errors.As(err, &perr) || perr.Message != tc.want {
				t.Fatalf("Resolve error = %v, want %q", err, tc.want)
			}
			if perr.Line == 0 || !strings.HasPrefix(err.Error(), "p.yml:") {
				t.Errorf("error %q has no position", err)
			}
		})
	}
}

// TestAliasBombIsRefused: the 526-byte text nesting aliases ten deep and
// ten wide (ten billion nodes expanded) is refused with an error naming the
// limit, at the alias that crosses it.
func TestAliasBombIsRefused(t *testing.T) {
	t.Parallel()
	text, err := os.ReadFile(filepath.Join("testdata", "alias-bomb.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(text) != 526 {
		t.Fatalf("the bomb is %d bytes, want 526", len(text))
	}
	_, err = Parse("bomb.yml", text)
	var perr *Error
	if !errors.As(err, &perr) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse = %v, want an *Error wrapping ErrInvalid", err)
	}
	want := fmt.Sprintf("Aliases expand this policy to more than %d YAML nodes, the limit for a text of 526 bytes", MaxExpandedNodes(526))
	if !strings.Contains(perr.Message, want) {
		t.Fatalf("message %q does not name the limit (%q)", perr.Message, want)
	}
	// Planning parses the same way: the load is refused, not run.
	g := NewGraph()
	cs, err := g.PlanAccount("acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Plan(LoadRequest{Policy: NewID("acme", KindPolicy, RootPolicy), Mode: Append, Text: text}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Plan = %v, want the alias limit", err)
	}
}

// TestModestAliasesAreAccepted: aliases that repeat a node a few times, as
// policies do to share a list of privileges or members, stay well inside
// the limit.
func TestModestAliasesAreAccepted(t *testing.T) {
	t.Parallel()
	text := "- !group &ops ops\n- !user &alice alice\n- !grant\n  role: *ops\n  members: [*alice]\n- !variable &v db\n- !permit\n  role: *ops\n  privileges: &privs [read, execute]\n  resource: *v\n- !permit\n  role: *alice\n  privileges: *privs\n  resource: *v\n"
	if _, err := Parse("ok.yml", []byte(text)); err != nil {
		t.Fatal(err)
	}
}

// TestLoadRefusesUnsafeIDs: declared ids with a NUL, a line break, a ".."
// segment or an encoded slash are refused when loaded, with a clear error
// at the record (Resolve keeps Conjur's output for them).
func TestLoadRefusesUnsafeIDs(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		text string
		want string
	}{
		"NUL in an id":         {"- !host \"web\\0x\"\n", `Invalid id "web\x00x": an id may not contain a NUL character`},
		"newline in an id":     {"- !variable \"db\\npassword\"\n", `Invalid id "db\npassword": an id may not contain a line break`},
		"dot-dot in an id":     {"- !policy\n  id: p\n  body:\n  - !host ../admin\n", `Invalid id "p/../admin": '..' may climb only in references (owner, member, the role of a permit), not in a declared id`},
		"encoded slash":        {"- !variable a%2Fb\n", `Invalid id "a%2Fb": an encoded slash (%2F) would name another id once decoded; write '/' to nest`},
		"encoded slash, grant": {"- !grant\n  role: !group x%2fy\n  member: !user alice\n", `Invalid id "x%2fy": an encoded slash (%2F) would name another id once decoded; write '/' to nest`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g := NewGraph()
			cs, err := g.PlanAccount(acct)
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Apply(cs); err != nil {
				t.Fatal(err)
			}
			_, err = g.Plan(LoadRequest{Policy: NewID(acct, KindPolicy, RootPolicy), Mode: Append, Filename: "p.yml", Text: []byte(tc.text)})
			var perr *Error
			if !errors.As(err, &perr) || perr.Message != tc.want {
				t.Fatalf("Plan error = %v, want %q", err, tc.want)
			}
		})
	}
}
