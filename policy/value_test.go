package policy

import (
	"fmt"
	"slices"
	"testing"
)

// TestHashValueSet checks a hashValue against a map, below and beyond the
// size at which it indexes its keys: keys stay in first-set order, setting
// a key again replaces its value.
func TestHashValueSet(t *testing.T) {
	for _, n := range []int{1, hashIndexed, hashIndexed + 1, 3 * hashIndexed} {
		var (
			h     hashValue
			model = map[string]any{}
			order []string
		)
		for i := range 2 * n {
			k := fmt.Sprintf("k%d", (i*7)%n)
			if _, ok := model[k]; !ok {
				order = append(order, k)
			}
			model[k] = i
			h.set(k, i)
		}
		if !slices.Equal(h.keys, order) {
			t.Fatalf("n=%d: keys %q, want %q", n, h.keys, order)
		}
		for i, k := range h.keys {
			if h.values[i] != model[k] || h.find(k) != i {
				t.Fatalf("n=%d: %s = %v at %d, want %v", n, k, h.values[i], h.find(k), model[k])
			}
		}
		if h.find("missing") != -1 {
			t.Fatalf("n=%d: found a missing key", n)
		}
	}
}
