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

// keepPublicKeys gives an updated user the keys it had as well as the ones
// the text declares: Conjur keeps each key as a public_key record, and an
// update (PATCH) deletes no record the text does not mention. Only a
// replace, or a !delete of the user, removes keys.
func keepPublicKeys(cur, next Fact) Fact {
	c, ok := cur.(Role)
	n, ok2 := next.(Role)
	if !ok || !ok2 || len(c.PublicKeys) == 0 {
		return next
	}
	n.PublicKeys = unionKeys(c.PublicKeys, n.PublicKeys)
	return n
}
