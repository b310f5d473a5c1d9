package policy

import (
	"bytes"
	"testing"
)

// FuzzParse feeds the parser arbitrary text. It must never panic or hang;
// what it accepts must dump to text that parses back to the same dump (the
// canonical form is a fixed point), and resolving and planning it must not
// panic either. The seed corpus in testdata/fuzz/FuzzParse holds Conjur's
// conformance fixtures and the example policy repository.
func FuzzParse(f *testing.F) {
	f.Add([]byte("- !user alice\n- !group &g ops\n- !grant\n  role: *g\n  member: !user alice\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		doc, err := Parse("fuzz.yml", text)
		if err != nil {
			return
		}
		dump := doc.Dump()
		again, err := Parse("dump.yml", dump)
		if err != nil {
			t.Fatalf("the dump does not parse: %v\n--- input\n%q\n--- dump\n%s", err, text, dump)
		}
		if redump := again.Dump(); !bytes.Equal(redump, dump) {
			t.Fatalf("the dump is not a fixed point\n--- input\n%q\n--- dump\n%s\n--- dump of the dump\n%s", text, dump, redump)
		}
		if resolved, err := Resolve(doc, ResolveOptions{Account: "fuzz", Owner: NewID("fuzz", KindUser, "admin")}); err == nil {
			_ = resolved.Dump()
		}
		g := NewGraph()
		cs, err := g.PlanAccount("fuzz")
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Apply(cs); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []Mode{Append, Replace} {
			cs, err := g.Plan(LoadRequest{Policy: NewID("fuzz", KindPolicy, RootPolicy), Mode: mode, Text: text})
			if err == nil {
				if err := g.Apply(cs); err != nil {
					t.Fatalf("Apply: %v", err)
				}
			}
		}
	})
}
