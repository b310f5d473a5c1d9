package policy

import (
	"bytes"
	"encoding/json"
	"testing"
)

func factsFromStrings(a, b, c string, flag bool) []Fact {
	id := func(s string) ID { return ID{Account: "acme", Kind: KindHost, Name: s} }
	pol := ID{}
	if flag {
		pol = ID{Account: "acme", Kind: KindPolicy, Name: c}
	}
	var restricted []string
	if flag {
		restricted = []string{a, c}
	}
	return []Fact{
		Role{ID: id(a), PolicyID: pol, RestrictedTo: restricted},
		Role{ID: id(b), PolicyID: pol, RestrictedTo: restricted, PublicKeys: []string{a, b, c}},
		Resource{ID: id(a), Owner: id(b), PolicyID: pol},
		Resource{ID: id(a)},
		Membership{Role: id(a), Member: id(b), AdminOption: flag, Ownership: !flag, PolicyID: pol},
		Permission{Role: id(a), Privilege: b, Resource: id(c), PolicyID: pol},
		Annotation{Resource: id(a), Name: b, Value: c, PolicyID: pol},
	}
}

func checkFactJSON(t *testing.T, f Fact) {
	t.Helper()
	want, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := MarshalFact(f)
	if !bytes.Equal(got, want) {
		t.Fatalf("MarshalFact(%#v)\n got %s\nwant %s", f, got, want)
	}
}

func TestMarshalFactMatchesEncodingJSON(t *testing.T) {
	odd := []string{"", "plain", `q"uote\back`, "<html>&amp;", "tab\tnl\ncr\rbs\bff\f\x00\x1f\x7f",
		"caf\u00e9 \u2028 \u2029 \U0001F600", "bad\xffutf8\xc3", "conjur/seed-generation"}
	for _, a := range odd {
		for _, b := range odd {
			for _, flag := range []bool{false, true} {
				for _, f := range factsFromStrings(a, b, a+b, flag) {
					checkFactJSON(t, f)
				}
			}
		}
	}
}

func FuzzMarshalFact(f *testing.F) {
	f.Add("a", "b", "c", true)
	f.Add("<\u2028>", "\xff", "\"\\", false)
	f.Fuzz(func(t *testing.T, a, b, c string, flag bool) {
		for _, fact := range factsFromStrings(a, b, c, flag) {
			checkFactJSON(t, fact)
		}
	})
}
