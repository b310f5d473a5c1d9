package etcdstore

import (
	"fmt"
	"strings"

	"github.com/sowerproject/sower/policy"
)

// factOfKey returns a fact with the identity its storage key (policy's
// Fact.Key) encodes and no other values: what a graph needs to delete it.
// The watch reads deletions this way instead of asking etcd for the
// deleted value (etcd's prev_kv), which saves a read per deleted key.
func factOfKey(key string) (policy.Fact, error) {
	parts := strings.Split(key, "/")
	bad := func() (policy.Fact, error) { return nil, fmt.Errorf("%w: fact key %q", ErrCorruptPolicy, key) }
	ids := make([]policy.ID, 0, 2)
	id := func(s string) bool {
		v, err := policy.ParseID(unescapeSegment(s))
		if err != nil {
			return false
		}
		ids = append(ids, v)
		return true
	}
	switch {
	case parts[0] == "role" && len(parts) == 2 && id(parts[1]):
		return policy.Role{ID: ids[0]}, nil
	case parts[0] == "resource" && len(parts) == 2 && id(parts[1]):
		return policy.Resource{ID: ids[0]}, nil
	case parts[0] == "membership" && len(parts) == 4 && id(parts[1]) && id(parts[2]) && (parts[3] == "grant" || parts[3] == "owner"):
		return policy.Membership{Role: ids[0], Member: ids[1], Ownership: parts[3] == "owner"}, nil
	case parts[0] == "permission" && len(parts) == 4 && id(parts[1]) && id(parts[3]):
		return policy.Permission{Resource: ids[0], Privilege: unescapeSegment(parts[2]), Role: ids[1]}, nil
	case parts[0] == "annotation" && len(parts) == 3 && id(parts[1]):
		return policy.Annotation{Resource: ids[0], Name: unescapeSegment(parts[2])}, nil
	}
	return bad()
}

// unescapeSegment undoes the escaping of '%' and '/' in a key component.
func unescapeSegment(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	return strings.NewReplacer("%2F", "/", "%25", "%").Replace(s)
}
