package yamlevent

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
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

// cpuTime is the process's user and system CPU time: on a shared machine
// it says more about the work done than wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEvents18000Variables reads every event of the 18,000-variable
// policy: libyaml's parse plus the copy of each event into Go memory.
func BenchmarkEvents18000Variables(b *testing.B) {
	text := variablesPolicy(18000)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	start := cpuTime()
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
	b.ReportMetric((cpuTime()-start).Seconds()*1000/float64(b.N), "cpu-ms/op")
}
