package yamlevent

import (
	"fmt"
	"strings"
	"testing"
)

// variablesPolicy is policy/bench_test.go's 18,000-variable policy shape: n
// variables with annotations and one permit listing all of them.
func variablesPolicy(n int) []byte {
	var b strings.Builder
	b.WriteString("- !group consumers\n")
	for i := range n {
		fmt.Fprintf(&b, "- &v%d !variable\n  id: secrets/v%05d\n  annotations: {owner-team: payments}\n", i, i)
	}
	b.WriteString("- !permit\n  role: !group consumers\n  privileges: [read, execute]\n  resources:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - *v%d\n", i)
	}
	return []byte(b.String())
}

// BenchmarkEvents18000Variables reads every event of the 18,000-variable
// policy: libyaml's parse plus the copy of each event into Go memory.
func BenchmarkEvents18000Variables(b *testing.B) {
	text := variablesPolicy(18000)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		p := NewParser(text)
		n := 0
		for {
			ev, err := p.Next()
			if err != nil {
				b.Fatal(err)
			}
			n++
			if ev.Type == StreamEnd {
				break
			}
		}
		p.Close()
		if n < 18000*8 {
			b.Fatalf("%d events", n)
		}
	}
}
