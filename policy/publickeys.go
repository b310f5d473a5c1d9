package policy

import (
	"slices"
	"strings"
)

// publicKeys reads a user's public_keys (one key or a list) as the Role
// fact keeps them: trimmed, without empties or repeats, sorted, which is
// the order Conjur's GET /public_keys answers them in.
func publicKeys(o *object) []string {
	var out []string
	for _, v := range items(o.get("public_key")) {
		if k := strings.TrimSpace(scalarText(v)); k != "" {
			out = append(out, k)
		}
	}
	return unionKeys(nil, out)
}

// unionKeys is the sorted union of two key lists: an append adds keys to a
// user and removes none.
func unionKeys(a, b []string) []string {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}
