package policy_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sowerproject/sower/policy"
)

// load applies text to g's root as an append and fails the test on error.
func loadRoot(t *testing.T, g *policy.Graph, text string) {
	t.Helper()
	cs, err := g.Plan(policy.LoadRequest{Policy: policy.NewID("acme", policy.KindPolicy, policy.RootPolicy), Mode: policy.Append, Text: []byte(text)})
	if err != nil {
		t.Fatalf("load:\n%s\n%v", text, err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
}

func newAccount(t *testing.T) *policy.Graph {
	t.Helper()
	g := policy.NewGraph()
	cs, err := g.PlanAccount("acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	return g
}

// facts lists g's facts without the policy each came from (a copy loads
// everything through root).
func facts(g *policy.Graph) []string {
	var out []string
	for _, f := range g.Facts() {
		switch f := f.(type) {
		case policy.Role:
			f.PolicyID = policy.ID{}
			out = append(out, fmt.Sprintf("%#v", f))
		case policy.Resource:
			f.PolicyID = policy.ID{}
			out = append(out, fmt.Sprintf("%#v", f))
		case policy.Membership:
			f.PolicyID, f.AdminOption = policy.ID{}, f.Ownership
			out = append(out, fmt.Sprintf("%#v", f))
		case policy.Permission:
			f.PolicyID = policy.ID{}
			out = append(out, fmt.Sprintf("%#v", f))
		case policy.Annotation:
			f.PolicyID = policy.ID{}
			out = append(out, fmt.Sprintf("%#v", f))
		}
	}
	slices.Sort(out)
	return out
}

// The effective policy of root, loaded into an empty account, gives the
// same facts, whatever the annotation values hold (YAML's special words,
// numbers, colons, quotes, newlines, leading spaces).
func TestEffectivePolicyRoundTrips(t *testing.T) {
	values := []string{"yes", "No", "null", "~", "123", "1.5e3", "0x1F", "a: b", "# not a comment", "x #y", `"quoted"`, "'single'",
		"line\nbreak", " leading", "trailing ", "tab\there", "ünïcode ✓", "[list]", "{map}", "&anchor", "*alias", "!tag", "-", "- dash", "@at", "%pct", "`tick`", "|", ">"}
	var text strings.Builder
	text.WriteString("- !policy\n  id: apps\n  body:\n  - !user alice\n  - !layer nodes\n  - !host-factory\n    id: hf\n    layers: [ !layer nodes ]\n  - !variable\n    id: secret\n    kind: password\n    annotations:\n")
	for i, v := range values {
		fmt.Fprintf(&text, "      a%02d: %q\n", i, v)
	}
	text.WriteString("  - !permit\n    role: !layer nodes\n    privileges: [read, execute]\n    resource: !variable secret\n")
	text.WriteString("- !group ops\n- !grant\n  role: !group ops\n  member: !user alice@apps\n- !host\n  id: web\n  restricted_to: [10.0.0.0/8, \"::1\"]\n")
	src := newAccount(t)
	loadRoot(t, src, text.String())
	sts, err := src.EffectivePolicy(policy.EffectiveQuery{Policy: policy.NewID("acme", policy.KindPolicy, "root"), Depth: policy.MaxEffectiveDepth, Limit: policy.MaxEffectiveLimit})
	if err != nil {
		t.Fatal(err)
	}
	yaml := policy.EffectiveYAML(sts)
	dst := newAccount(t)
	loadRoot(t, dst, string(yaml))
	if got, want := facts(dst), facts(src); !slices.Equal(got, want) {
		t.Fatalf("facts after loading\n%s\ngot:\n%s\nwant:\n%s", yaml, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEffectivePolicyLimit(t *testing.T) {
	g := newAccount(t)
	loadRoot(t, g, "- !variable a\n- !variable\n  id: b\n  annotations: {x: y}\n")
	q := policy.EffectiveQuery{Policy: policy.NewID("acme", policy.KindPolicy, "root"), Depth: policy.MaxEffectiveDepth, Limit: 2}
	if _, err := g.EffectivePolicy(q); err == nil || !strings.Contains(err.Error(), "CONJ00164E Policy max allowed 'limit' = 2 exceeded. Value for policy is: 3") {
		t.Fatalf("EffectivePolicy over the limit: %v", err)
	}
	q.Limit = 3
	if _, err := g.EffectivePolicy(q); err != nil {
		t.Fatalf("EffectivePolicy at the limit: %v", err)
	}
}

// FuzzEffectiveScalar: any annotation value and id a load accepts comes
// back the same through the effective policy's YAML.
func FuzzEffectiveScalar(f *testing.F) {
	for _, s := range []string{"plain", "yes", "a: b", "# c", "10.0.0.0/8", "line\nbreak", " x", "\u0026", "-1", "0o17"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		src := newAccount(t)
		text := fmt.Sprintf("- !variable\n  id: %s\n  annotations:\n    k: %s\n", yamlJSON(v), yamlJSON(v))
		cs, err := src.Plan(policy.LoadRequest{Policy: policy.NewID("acme", policy.KindPolicy, policy.RootPolicy), Mode: policy.Append, Text: []byte(text)})
		if err != nil {
			return // not a value a load takes
		}
		if err := src.Apply(cs); err != nil {
			t.Fatal(err)
		}
		sts, err := src.EffectivePolicy(policy.EffectiveQuery{Policy: policy.NewID("acme", policy.KindPolicy, "root"), Depth: policy.MaxEffectiveDepth, Limit: policy.MaxEffectiveLimit})
		if err != nil {
			t.Fatal(err)
		}
		dst := newAccount(t)
		yaml := policy.EffectiveYAML(sts)
		cs, err = dst.Plan(policy.LoadRequest{Policy: policy.NewID("acme", policy.KindPolicy, policy.RootPolicy), Mode: policy.Append, Text: yaml})
		if err != nil {
			t.Fatalf("the effective policy of %q does not load: %v\n%s", v, err, yaml)
		}
		if err := dst.Apply(cs); err != nil {
			t.Fatal(err)
		}
		if got, want := facts(dst), facts(src); !slices.Equal(got, want) {
			t.Fatalf("value %q came back as\n%s\nwant\n%s", v, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// yamlJSON quotes s for a policy text.
func yamlJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
