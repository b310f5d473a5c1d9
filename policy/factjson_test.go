package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
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

// checkFactDecode holds decodeFactJSON to encoding/json on value: when it
// takes value, encoding/json must decode it to the same fact.
func checkFactDecode(t *testing.T, kind string, value []byte) (taken bool) {
	t.Helper()
	got, ok := decodeFactJSON(kind, value)
	if !ok {
		return false
	}
	if !slices.Contains([]string{keyRole, keyResource, keyMembership, keyPermission, keyAnnotation}, kind) {
		t.Fatalf("decodeFactJSON took %q under the unknown kind %q", value, kind)
	}
	want, err := unmarshalFactReflect(kind, kind+"/…", value)
	if err != nil {
		t.Fatalf("decodeFactJSON took %s (%#v), encoding/json refuses it: %v", value, got, err)
	}
	if !Equal(got, want) {
		t.Fatalf("decodeFactJSON(%s)\n got %#v\nwant %#v", value, got, want)
	}
	return true
}

func factKind(f Fact) string {
	k, _, _ := strings.Cut(f.Key(), "/")
	return k
}

func TestDecodeFactMatchesEncodingJSON(t *testing.T) {
	odd := []string{"", "plain", `q"uote\back`, "<html>&amp;", "tab\tnl\ncr\rbs\bff\f\x00\x1f\x7f",
		"caf\u00e9 \u2028 \u2029 \U0001F600", "caf\u00e9 \U0001F600", "bad\xffutf8\xc3", "conjur/seed-generation", "a:b:c"}
	for _, a := range odd {
		for _, b := range odd {
			for _, flag := range []bool{false, true} {
				for _, f := range factsFromStrings(a, b, a+b, flag) {
					v, _ := MarshalFact(f)
					checkFactDecode(t, factKind(f), v)
				}
			}
		}
	}
	// What the store writes for plain names is taken, not left to
	// encoding/json.
	for _, f := range factsFromStrings("app/web-01", "read", "caf\u00e9", true) {
		v, _ := MarshalFact(f)
		if !checkFactDecode(t, factKind(f), v) {
			t.Errorf("decodeFactJSON left %s to encoding/json", v)
		}
	}
	// Valid JSON in another shape is left to encoding/json.
	for kind, v := range map[string]string{
		keyRole:       `{"policy":"a:policy:p","id":"a:host:h"}`,
		keyResource:   `{"id":"a:host:h", "owner":"a:user:u"}`,
		keyMembership: `{"role":"a:group:g","member":"a:host:h","admin_option":false,"ownership":false,"policy":""}`,
		keyPermission: `{"role":"a:group:g","privilege":"r\u0065ad","resource":"a:variable:v"}`,
		keyAnnotation: `{"resource":"a:host:h","name":"n","value":"v","extra":1}`,
	} {
		if _, ok := decodeFactJSON(kind, []byte(v)); ok {
			t.Errorf("decodeFactJSON took %s", v)
		}
	}
}

func TestUnmarshalFactRefusesBadValues(t *testing.T) {
	for name, tc := range map[string]struct{ key, value string }{
		"bad id":        {"role/a:host:h", `{"id":"a:host"}`},
		"wrong key":     {"role/a:host:h", `{"id":"a:host:other"}`},
		"truncated":     {"role/a:host:h", `{"id":"a:host:h"`},
		"unknown kind":  {"rule/a:host:h", `{"id":"a:host:h"}`},
		"trailing data": {"role/a:host:h", `{"id":"a:host:h"}x`},
	} {
		t.Run(name, func(t *testing.T) {
			if f, err := UnmarshalFact(tc.key, []byte(tc.value)); !errors.Is(err, ErrInvalidFact) {
				t.Fatalf("UnmarshalFact(%q, %s) = %#v, %v; want ErrInvalidFact", tc.key, tc.value, f, err)
			}
		})
	}
}

func FuzzDecodeFact(f *testing.F) {
	for _, fact := range factsFromStrings("app/web-01", "read", "caf\u00e9", true) {
		v, _ := MarshalFact(fact)
		f.Add(factKind(fact), v)
	}
	f.Add(keyRole, []byte(`{"id":"a:host:h","restricted_to":["10.0.0.0/8",""]}`))
	f.Fuzz(func(t *testing.T, kind string, value []byte) {
		checkFactDecode(t, kind, value)
	})
}
