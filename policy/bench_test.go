package policy

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// variablesPolicy declares n variables and a group permitted to read them,
// the shape of cyberark/conjur#669 (18,000 variables took Conjur minutes).
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

// hostsPolicy declares layers layers of perLayer hosts each, every host
// granted its layer.
func hostsPolicy(layers, perLayer int) []byte {
	var b strings.Builder
	for l := range layers {
		fmt.Fprintf(&b, "- !layer l%04d\n", l)
		for h := range perLayer {
			fmt.Fprintf(&b, "- !host\n  id: l%04d/h%03d\n  annotations: {kubernetes/namespace: ns%d}\n", l, h, l%50)
		}
		fmt.Fprintf(&b, "- !grant\n  role: !layer l%04d\n  members:\n", l)
		for h := range perLayer {
			fmt.Fprintf(&b, "  - !host l%04d/h%03d\n", l, h)
		}
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

// peakHeap samples the live heap while f runs and returns the largest
// sample, in bytes.
func peakHeap(f func()) uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var (
		peak uint64
		mu   sync.Mutex
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	read := func() {
		metrics.Read(sample)
		mu.Lock()
		peak = max(peak, sample[0].Value.Uint64())
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				read()
			}
		}
	}()
	f()
	read()
	close(done)
	wg.Wait()
	return peak
}

// BenchmarkLoad18000Variables: parse, resolve and plan a policy declaring
// 18,000 variables into a fresh policy, and apply it to the graph.
func BenchmarkLoad18000Variables(b *testing.B) {
	text := variablesPolicy(18000)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		g := newTestGraph(b)
		load(b, g, "root", Append, "- !policy app\n")
		b.StartTimer()
		start := cpuTime()
		cs, err := g.Plan(LoadRequest{Policy: policyID("app"), Mode: Replace, Text: text})
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Apply(cs); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - start
		if n := len(cs.Created); n < 18000*4 {
			b.Fatalf("created %d facts", n)
		}
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkReplace100kHosts plans the replace of a policy holding 100,000
// hosts in 1,000 layers: "initial" into an empty policy, "unchanged" a
// second sync of the same text (which must plan no change), "one layer
// less" a replace that deletes a layer and its hosts.
func BenchmarkReplace100kHosts(b *testing.B) {
	text := hostsPolicy(1000, 100)
	smaller := hostsPolicy(999, 100)
	setup := func(b *testing.B, loaded bool) *Graph {
		g := newTestGraph(b)
		load(b, g, "root", Append, "- !policy apps\n")
		if loaded {
			load(b, g, "apps", Replace, string(text))
		}
		return g
	}
	run := func(b *testing.B, loaded bool, next []byte, check func(*ChangeSet) error) {
		b.SetBytes(int64(len(next)))
		b.ReportAllocs()
		var (
			peak uint64
			cpu  time.Duration
		)
		for b.Loop() {
			b.StopTimer()
			g := setup(b, loaded)
			runtime.GC()
			b.StartTimer()
			var cs *ChangeSet
			var err error
			start := cpuTime()
			peak = max(peak, peakHeap(func() {
				cs, err = g.Plan(LoadRequest{Policy: policyID("apps"), Mode: Replace, Text: next})
			}))
			cpu += cpuTime() - start
			if err != nil {
				b.Fatal(err)
			}
			if err := check(cs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	}
	b.Run("initial", func(b *testing.B) {
		run(b, false, text, func(cs *ChangeSet) error {
			if len(cs.NewRoles) != 100000 {
				return fmt.Errorf("%d new roles", len(cs.NewRoles))
			}
			return nil
		})
	})
	b.Run("unchanged", func(b *testing.B) {
		run(b, true, text, func(cs *ChangeSet) error {
			if !cs.Empty() {
				return fmt.Errorf("a second sync changes %d/%d/%d facts", len(cs.Created), len(cs.Updated), len(cs.Deleted))
			}
			return nil
		})
	})
	b.Run("one-layer-less", func(b *testing.B) {
		run(b, true, smaller, func(cs *ChangeSet) error {
			if len(cs.DeletedRoles) != 101 {
				return fmt.Errorf("%d roles deleted", len(cs.DeletedRoles))
			}
			return nil
		})
	})
}

// allowedGraph builds 100,110 roles in six levels (10, 100, 1,000, 5,000,
// 14,000 and 80,000 roles), each a member of one role of the level above
// and leaves also of a random third-level role, and 10,000 variables each
// readable by a random role of the top four levels.
func allowedGraph(b *testing.B) (g *Graph, leaves, vars []ID) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{10, 100, 1000, 5000, 14000, 80000}
	admin := NewID(acct, KindUser, "admin")
	var facts []Fact
	levels := make([][]ID, len(sizes))
	for l, n := range sizes {
		for i := range n {
			r := NewID(acct, KindGroup, fmt.Sprintf("level%d/g%d", l, i))
			if l == len(sizes)-1 {
				r = NewID(acct, KindHost, fmt.Sprintf("h%d", i))
			}
			levels[l] = append(levels[l], r)
			facts = append(facts, Role{ID: r}, Resource{ID: r, Owner: admin})
			if l > 0 {
				parent := levels[l-1][rng.IntN(len(levels[l-1]))]
				facts = append(facts, Membership{Role: parent, Member: r})
			}
			if l == len(sizes)-1 {
				facts = append(facts, Membership{Role: levels[2][rng.IntN(len(levels[2]))], Member: r})
			}
		}
	}
	for i := range 10000 {
		v := NewID(acct, KindVariable, fmt.Sprintf("v%d", i))
		level := levels[rng.IntN(4)]
		facts = append(facts, Resource{ID: v, Owner: admin},
			Permission{Role: level[rng.IntN(len(level))], Privilege: "read", Resource: v})
		vars = append(vars, v)
	}
	facts = append(facts, Role{ID: admin})
	return NewGraph(facts...), levels[len(levels)-1], vars
}

// BenchmarkAllowed checks a random leaf's read privilege on a random
// variable: "cached" once memberships are computed, "cold" with the
// memberships recomputed for every check (as after a membership change).
func BenchmarkAllowed(b *testing.B) {
	g, leaves, vars := allowedGraph(b)
	rng := rand.New(rand.NewPCG(3, 4))
	type check struct{ role, res ID }
	checks := make([]check, 4096)
	for i := range checks {
		checks[i] = check{leaves[rng.IntN(len(leaves))], vars[rng.IntN(len(vars))]}
	}
	b.Run("cached", func(b *testing.B) {
		for _, c := range checks {
			g.Allowed(c.role, "read", c.res)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c := checks[i%len(checks)]
			g.Allowed(c.role, "read", c.res)
			i++
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.mu.Lock()
			g.gen++
			g.mu.Unlock()
			c := checks[i%len(checks)]
			g.Allowed(c.role, "read", c.res)
			i++
		}
	})
}

// BenchmarkEffectivePolicy10kHosts regenerates the effective policy of a
// branch of 10,000 hosts in 100 layers (records, grants) and writes it as
// YAML, as `conjur policy fetch` does.
func BenchmarkEffectivePolicy10kHosts(b *testing.B) {
	g := newTestGraph(b)
	load(b, g, "root", Append, "- !policy apps\n")
	load(b, g, "apps", Append, string(hostsPolicy(100, 100)))
	q := EffectiveQuery{Policy: policyID("apps"), Depth: MaxEffectiveDepth, Limit: MaxEffectiveLimit}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		sts, err := g.EffectivePolicy(q)
		if err != nil {
			b.Fatal(err)
		}
		n = len(EffectiveYAML(sts))
	}
	b.SetBytes(int64(n))
}

// BenchmarkUnmarshalFact decodes the facts of 100 hosts as the store
// holds them (a Follower's first load decodes 575,000).
func BenchmarkUnmarshalFact(b *testing.B) {
	var keys []string
	var values [][]byte
	for i := range 100 {
		host := NewID("acme", KindHost, fmt.Sprintf("l0001/h%03d", i))
		layer := NewID("acme", KindLayer, "l0001")
		pol := NewID("acme", KindPolicy, "fleet")
		for _, f := range []Fact{
			Role{ID: host, PolicyID: pol},
			Resource{ID: host, Owner: pol, PolicyID: pol},
			Membership{Role: layer, Member: host, PolicyID: pol},
			Annotation{Resource: host, Name: "kubernetes/namespace", Value: "ns1", PolicyID: pol},
		} {
			v, _ := MarshalFact(f)
			keys, values = append(keys, f.Key()), append(values, v)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, k := range keys {
			if _, err := UnmarshalFact(k, values[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/fact")
}
