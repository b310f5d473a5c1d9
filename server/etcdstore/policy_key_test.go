package etcdstore

import (
	"testing"

	"github.com/sowerproject/sower/policy"
)

// Every kind of fact, with ids holding the characters keys escape, comes
// back from its key with the same key.
func TestFactOfKeyRoundTrips(t *testing.T) {
	t.Parallel()
	host := policy.NewID("acme", "host", "app/web%01:a")
	layer := policy.NewID("acme", "layer", "app")
	secret := policy.NewID("acme", "variable", "db/pass%2Fword")
	tests := map[string]policy.Fact{
		"role":       policy.Role{ID: host, RestrictedTo: []string{"10.0.0.0/8"}},
		"resource":   policy.Resource{ID: secret, Owner: layer},
		"grant":      policy.Membership{Role: layer, Member: host},
		"ownership":  policy.Membership{Role: host, Member: layer, Ownership: true, AdminOption: true},
		"permission": policy.Permission{Role: layer, Privilege: "exe/cute%", Resource: secret},
		"annotation": policy.Annotation{Resource: secret, Name: "conjur/kind", Value: "x"},
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := factOfKey(f.Key())
			if err != nil {
				t.Fatal(err)
			}
			if got.Key() != f.Key() {
				t.Fatalf("factOfKey(%q) has key %q", f.Key(), got.Key())
			}
		})
	}
	for _, bad := range []string{"", "role", "role/x", "membership/acme:a:b/acme:c:d/other", "annotation/acme:a:b", "nope/acme:a:b"} {
		if _, err := factOfKey(bad); err == nil {
			t.Errorf("factOfKey(%q) accepted a malformed key", bad)
		}
	}
}

func FuzzFactOfKey(f *testing.F) {
	f.Add("membership/acme:layer:app/acme:host:app%2Fweb/grant")
	f.Add("permission/acme:variable:x/read/acme:group:g")
	f.Fuzz(func(t *testing.T, key string) {
		fact, err := factOfKey(key)
		if err != nil {
			return
		}
		if again, err := factOfKey(fact.Key()); err != nil || again.Key() != fact.Key() {
			t.Fatalf("%q parses to a fact whose key %q does not round-trip (%v)", key, fact.Key(), err)
		}
	})
}
