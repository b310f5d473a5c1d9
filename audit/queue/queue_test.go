package queue

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sowerproject/sower/audit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// running opens a queue on dir and runs its writer until the test ends
// (or stop is called).
type running struct {
	*Queue
	done   chan struct{}
	result chan error
}

func start(t *testing.T, c Config) *running {
	t.Helper()
	q, err := Open(c)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{Queue: q, done: make(chan struct{}), result: make(chan error, 1)}
	go func() { r.result <- q.Run(r.done) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
		return
	default:
	}
	close(r.done)
	if err := <-r.result; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// waitSynced waits (bounded) until the disk holds sequence seq.
func waitSynced(t *testing.T, q *Queue, seq uint64) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := q.Changed()
		if q.Synced() >= seq {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("synced %d, want %d", q.Synced(), seq)
		}
	}
}

func read(i int) audit.Event {
	return audit.Event{Kind: audit.KindSecretRead, Action: "read", Outcome: audit.OutcomeSuccess,
		Identity: "acme:host:app", Resource: fmt.Sprintf("acme:variable:db/%d", i), Version: 1, Source: "127.0.0.1:1"}
}

func recordN(q *Queue, from, n int) {
	for i := from; i < from+n; i++ {
		q.Record(read(i))
	}
}

func TestEventsSurviveReopenInOrder(t *testing.T) {
	dir := t.TempDir()
	q := start(t, Config{Dir: dir, Node: "f1"})
	recordN(q.Queue, 0, 10)
	waitSynced(t, q.Queue, 10)
	q.stop(t)

	q2 := start(t, Config{Dir: dir, Node: "f1"})
	evs, last := q2.Peek(100, 1<<20)
	if len(evs) != 10 || last != 10 {
		t.Fatalf("after reopen: %d events up to %d, want 10 up to 10", len(evs), last)
	}
	for i, e := range evs {
		if want := fmt.Sprintf("f1/%d", i+1); e.ID != want || e.Node != "f1" || e.Resource != read(i).Resource {
			t.Fatalf("event %d = %+v, want id %s resource %s", i, e, want, read(i).Resource)
		}
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	// Sequences continue after the ones on disk: no ID is reused.
	q2.Record(read(10))
	waitSynced(t, q2.Queue, 11)
	if evs, _ := q2.Peek(100, 1<<20); evs[len(evs)-1].ID != "f1/11" {
		t.Fatalf("next id %s, want f1/11", evs[len(evs)-1].ID)
	}
}

// A second reader of the directory sees every synced event while the
// writer is still running: Synced means on disk, not in a buffer.
func TestSyncedIsOnDisk(t *testing.T) {
	dir := t.TempDir()
	q := start(t, Config{Dir: dir, Node: "f1"})
	recordN(q.Queue, 0, 500)
	waitSynced(t, q.Queue, 500)
	other, err := Open(Config{Dir: dir, Node: "f1"})
	if err != nil {
		t.Fatal(err)
	}
	if evs, _ := other.Peek(1000, 1<<30); len(evs) != 500 {
		t.Fatalf("the disk holds %d events, want 500", len(evs))
	}
}

func TestAckPersistsCursorAndDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	q := start(t, Config{Dir: dir, Node: "f1", SegmentBytes: 1024})
	for i := 0; i < 100; i += 10 { // groups of 10, so several segments
		recordN(q.Queue, i, 10)
		waitSynced(t, q.Queue, uint64(i+10))
	}
	segsBefore, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	evs, last := q.Peek(60, 1<<20)
	if len(evs) != 60 || last != 60 {
		t.Fatalf("peek: %d up to %d", len(evs), last)
	}
	q.Ack(last)
	if st := q.Stats(); st.Events != 40 || st.Acked != 60 || st.Cursor != 60 {
		t.Fatalf("stats after ack: %+v", st)
	}
	q.Record(read(100)) // a group after the ack saves the cursor
	waitSynced(t, q.Queue, 101)
	q.stop(t)
	segsAfter, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if len(segsAfter) >= len(segsBefore) {
		t.Fatalf("segments: %d before the ack, %d after; acknowledged ones should be deleted", len(segsBefore), len(segsAfter))
	}

	q2 := start(t, Config{Dir: dir, Node: "f1"})
	evs, _ = q2.Peek(1000, 1<<20)
	if len(evs) != 41 || evs[0].ID != "f1/61" || evs[40].ID != "f1/101" {
		t.Fatalf("after reopen: %d events %s..%s, want 41 f1/61..f1/101", len(evs), evs[0].ID, evs[len(evs)-1].ID)
	}
}

// Sequences keep growing after every event was acknowledged and its
// segments deleted.
func TestSequenceContinuesAfterEverythingAcked(t *testing.T) {
	dir := t.TempDir()
	q := start(t, Config{Dir: dir, Node: "f1", SegmentBytes: 1})
	recordN(q.Queue, 0, 3)
	waitSynced(t, q.Queue, 3)
	q.Ack(3)
	q.stop(t)
	q2 := start(t, Config{Dir: dir, Node: "f1"})
	q2.Record(read(3))
	waitSynced(t, q2.Queue, 4)
	evs, _ := q2.Peek(10, 1<<20)
	if len(evs) != 1 || evs[0].ID != "f1/4" {
		t.Fatalf("got %+v, want only f1/4", evs)
	}
}

func TestTornTailIsCut(t *testing.T) {
	for name, tear := range map[string]func(b []byte) []byte{
		"half a record":    func(b []byte) []byte { return b[:len(b)-7] },
		"garbage appended": func(b []byte) []byte { return append(b, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5) },
		"flipped byte":     func(b []byte) []byte { b[len(b)-3] ^= 0xff; return b },
		"zeroed tail":      func(b []byte) []byte { return append(b, make([]byte, 4096)...) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			q := start(t, Config{Dir: dir, Node: "f1"})
			recordN(q.Queue, 0, 5)
			waitSynced(t, q.Queue, 5)
			q.stop(t)
			segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
			if len(segs) != 1 {
				t.Fatalf("%d segments", len(segs))
			}
			b, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(segs[0], tear(b), 0o600); err != nil {
				t.Fatal(err)
			}
			q2 := start(t, Config{Dir: dir, Node: "f1"})
			evs, _ := q2.Peek(100, 1<<20)
			want := 5
			if name != "garbage appended" && name != "zeroed tail" {
				want = 4 // the last record is the torn one
			}
			if len(evs) != want {
				t.Fatalf("%d events after the tear, want %d", len(evs), want)
			}
			// What is written next is readable after the cut.
			q2.Record(read(99))
			waitSynced(t, q2.Queue, uint64(want+1))
			q2.stop(t)
			q3 := start(t, Config{Dir: dir, Node: "f1"})
			evs, _ = q3.Peek(100, 1<<20)
			if len(evs) != want+1 || evs[want].Resource != read(99).Resource {
				t.Fatalf("%d events after writing past the cut, want %d ending with the new one", len(evs), want+1)
			}
		})
	}
}

func TestFull(t *testing.T) {
	for name, tc := range map[string]struct {
		policy             Policy
		wantFirst          string
		wantDrop, wantRefd uint64
	}{
		"drop-oldest keeps the newest": {DropOldest, "f1/4", 3, 0},
		"refuse keeps the oldest":      {Refuse, "f1/1", 0, 3},
	} {
		t.Run(name, func(t *testing.T) {
			q := start(t, Config{Dir: t.TempDir(), Node: "f1", MaxEvents: 5, Full: tc.policy})
			recordN(q.Queue, 0, 8)
			st := q.Stats()
			if st.Events != 5 || !st.Full || st.Dropped != tc.wantDrop || st.Refused != tc.wantRefd {
				t.Fatalf("stats %+v, want 5 events, full, %d dropped, %d refused", st, tc.wantDrop, tc.wantRefd)
			}
			waitSynced(t, q.Queue, q.next-1)
			evs, _ := q.Peek(100, 1<<20)
			if len(evs) != 5 || evs[0].ID != tc.wantFirst {
				t.Fatalf("queued %d from %s, want 5 from %s", len(evs), evs[0].ID, tc.wantFirst)
			}
			// An acknowledgement makes room again.
			_, last := q.Peek(2, 1<<20)
			q.Ack(last)
			if q.Full() {
				t.Fatal("still full after an acknowledgement")
			}
		})
	}
}

func TestByteBound(t *testing.T) {
	q := start(t, Config{Dir: t.TempDir(), Node: "f1", MaxBytes: minMaxBytes, Full: Refuse})
	for i := 0; i < 10000 && !q.Full(); i++ {
		q.Record(read(i))
	}
	st := q.Stats()
	if !st.Full || st.Bytes > minMaxBytes {
		t.Fatalf("stats %+v: want full within %d bytes", st, minMaxBytes)
	}
}

func TestInvalidEventIsCountedNotStored(t *testing.T) {
	q := start(t, Config{Dir: t.TempDir(), Node: "f1"})
	q.Record(audit.Event{Kind: "nonsense", Outcome: audit.OutcomeSuccess})
	q.Record(audit.Event{Kind: audit.KindAuthn, Outcome: audit.OutcomeFailure, Identity: strings.Repeat("x", audit.MaxFieldBytes+1)})
	if st := q.Stats(); st.Invalid != 2 || st.Events != 0 {
		t.Fatalf("stats %+v, want 2 invalid, 0 queued", st)
	}
}

func TestFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	q := start(t, Config{Dir: dir, Node: "f1"})
	recordN(q.Queue, 0, 2)
	waitSynced(t, q.Queue, 2)
	q.Ack(1)
	q.Record(read(2))
	waitSynced(t, q.Queue, 3)
	q.stop(t)
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) < 2 {
		t.Fatalf("want a segment and the cursor, got %d files", len(ents))
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	for name, c := range map[string]Config{
		"no dir":       {Node: "f1"},
		"no node":      {Dir: t.TempDir()},
		"tiny bytes":   {Dir: t.TempDir(), Node: "f1", MaxBytes: 10},
		"negative":     {Dir: t.TempDir(), Node: "f1", MaxEvents: -1},
		"unknown rule": {Dir: t.TempDir(), Node: "f1", Full: "block"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Open(c); err == nil || !strings.HasPrefix(err.Error(), "audit queue:") {
				t.Fatalf("Open = %v, want an audit queue error", err)
			}
		})
	}
}

func FuzzReadSegment(f *testing.F) {
	var good []byte
	for i := uint64(1); i <= 3; i++ {
		good = appendRecord(good, i, []byte(`{"id":"f1/`+fmt.Sprint(i)+`"}`))
	}
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var n int
		var last uint64
		good, err := readSegment(bytes.NewReader(b), 0, func(seq uint64, data []byte) {
			if seq <= last {
				t.Fatalf("sequence %d after %d", seq, last)
			}
			last = seq
			n++
		})
		if good < 0 || good > int64(len(b)) {
			t.Fatalf("good offset %d outside [0, %d]", good, len(b))
		}
		if err == nil && good != int64(len(b)) {
			t.Fatalf("no error but only %d of %d bytes read", good, len(b))
		}
		// What is before the good offset reads again the same, whole.
		var m int
		again, err := readSegment(bytes.NewReader(b[:good]), 0, func(uint64, []byte) { m++ })
		if err != nil || again != good || m != n {
			t.Fatalf("the good prefix re-read: %d records to %d (%v), want %d to %d", m, again, err, n, good)
		}
	})
}

// The newest events are handed out as Record kept them, older ones (and
// any after a restart) decoded from their records: both must be the
// same events.
func TestPeekFromMemoryAndFromDiskAgree(t *testing.T) {
	dir := t.TempDir()
	q := start(t, Config{Dir: dir, Node: "f1"})
	n := keepDecoded + 10
	for i := range n {
		e := read(i)
		e.Reason, e.Count, e.Last = "a <reason> & \"quotes\"", int64(i), time.Unix(1765000000, int64(i)).In(time.FixedZone("x", 3600))
		q.Record(e)
	}
	waitSynced(t, q.Queue, uint64(n))
	mem, _ := q.Peek(n, 1<<30)
	q.stop(t)
	disk, _ := start(t, Config{Dir: dir, Node: "f1"}).Peek(n, 1<<30)
	if len(mem) != n || len(disk) != n {
		t.Fatalf("%d events from memory, %d from disk, want %d", len(mem), len(disk), n)
	}
	for i := range mem {
		a, b := mem[i], disk[i]
		if !a.At.Equal(b.At) || !a.Last.Equal(b.Last) {
			t.Fatalf("event %d: times %v/%v in memory, %v/%v from disk", i, a.At, a.Last, b.At, b.Last)
		}
		a.At, a.Last, b.At, b.Last = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if a != b {
			t.Fatalf("event %d:\nmemory %+v\ndisk   %+v", i, a, b)
		}
	}
}
