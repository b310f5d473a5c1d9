package queue

import (
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuNow is the process's user+system CPU time.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecordForward is a Follower's audit under a read load: 64
// recorders at about 6,000 events/s in all, the writer, and a forwarder
// that takes synced events, spends a round trip and acknowledges them.
// cpu-µs/event is the process's CPU per event (the figure to compare on a
// shared machine):
//
//	go test ./audit/queue -run '^$' -bench RecordForward -benchtime 12000x
func BenchmarkRecordForward(b *testing.B) {
	q, err := Open(Config{Dir: b.TempDir(), Node: "follower-1"})
	if err != nil {
		b.Fatal(err)
	}
	done, res := make(chan struct{}), make(chan error, 1)
	go func() { res <- q.Run(done) }()
	fwdDone := make(chan struct{})
	var fwd sync.WaitGroup
	fwd.Add(1)
	go func() {
		defer fwd.Done()
		for {
			ch := q.Changed()
			evs, last := q.Peek(1000, 3<<20)
			if len(evs) == 0 {
				select {
				case <-ch:
					continue
				case <-fwdDone:
					return
				}
			}
			time.Sleep(2 * time.Millisecond) // the push's round trip
			q.Ack(last)
		}
	}()
	const recorders, rate = 64, 6000
	per := b.N / recorders
	cpu0 := cpuNow()
	b.ResetTimer()
	var wg sync.WaitGroup
	for r := range recorders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * recorders / rate)
			defer tick.Stop()
			for i := range per {
				<-tick.C
				q.Record(read(r*per + i))
			}
		}()
	}
	wg.Wait()
	for q.Stats().Events > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cpu := cpuNow() - cpu0
	close(fwdDone)
	fwd.Wait()
	close(done)
	if err := <-res; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(per*recorders), "cpu-µs/event")
}
