// Package queue is a Follower's durable, bounded audit queue: the events a
// Follower records wait here, on its own disk, until the quorum has
// stored them, so a Follower cut off from the quorum (or restarted, or
// killed) loses none it had written to disk.
//
// Events are appended to segment files (seg-<first sequence>.log, 0600,
// in a 0700 directory) by one writer: it writes what was recorded as soon
// as it runs (so an event is in the file, and survives kill -9, about as
// soon as it is recorded), and fsyncs in groups, at most once every
// SyncInterval (10 ms): an fsync costs the machine far more CPU than the
// write (about 0.15-0.5 ms here), so a busy Follower shares one between
// all the events of its interval. Record never waits for the disk; Synced
// says how far the fsynced disk has it. A reader (the forwarder) takes
// synced events with Peek, and once the quorum has stored them calls Ack;
// the acknowledged sequence is the cursor, kept in the file "cursor" at
// most once a second (and when the writer stops), and segments wholly
// below the saved cursor are deleted. A cursor behind the quorum only
// costs a re-send, which the trail stores once.
//
// The queue is bounded by events and bytes (of the encoded records not yet
// acknowledged). When a new event does not fit, the policy decides: with
// DropOldest (the default) the oldest unacknowledged events are dropped
// and counted; with Refuse the new event is refused and counted, and Full
// reports true so the caller can refuse the requests that would record
// more. Either way nothing that was on disk and not dropped is lost.
//
// On Open every segment is read back; a record that is not whole (a write
// cut by a crash) ends its file, which is truncated there. The queue is
// pure Go: it knows nothing of the transport that empties it.
package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sowerproject/sower/audit"
)

// Policy is what happens to a new event when the queue is full.
type Policy string

// Policies.
const (
	// DropOldest drops the oldest unacknowledged events to make room.
	DropOldest Policy = "drop-oldest"
	// Refuse keeps every queued event and refuses the new one; the caller
	// is expected to refuse requests while Full.
	Refuse Policy = "refuse"
)

// Defaults.
const (
	DefaultMaxEvents    = 100_000
	DefaultMaxBytes     = 64 << 20
	DefaultSegmentBytes = 4 << 20
	DefaultSyncInterval = 10 * time.Millisecond
	// cursorInterval is the least time between two saves of the cursor.
	cursorInterval = time.Second
	// keepDecoded is how many of the newest events keep their Event beside
	// their record, so that a forwarder keeping up does not decode what
	// Record just encoded; older ones (a forwarder catching up) are
	// decoded from their records.
	keepDecoded = 8192
	// minMaxBytes leaves room for at least a few of the largest events.
	minMaxBytes = 4 * (headerBytes + maxPayload)
)

// Config configures a Queue.
type Config struct {
	// Dir holds the segments and the cursor; created 0700. Required.
	Dir string
	// Node is the recording node's name: every event's Node, and the
	// prefix of its ID. Required.
	Node string
	// MaxEvents and MaxBytes bound what is queued and not acknowledged
	// (defaults DefaultMaxEvents, DefaultMaxBytes; MaxBytes at least
	// 4 × the largest record).
	MaxEvents int
	MaxBytes  int64
	// Full is the policy when a new event does not fit (default DropOldest).
	Full Policy
	// SegmentBytes is the size at which a new segment is started (default
	// DefaultSegmentBytes). The disk holds at most MaxBytes plus one
	// segment.
	SegmentBytes int64
	// SyncInterval is the least time between two fsyncs of the segment
	// (default DefaultSyncInterval): how long a recorded event may be
	// written but not yet synced.
	SyncInterval time.Duration
	Logger       *slog.Logger
	// Now is the clock events are stamped with (default time.Now).
	Now func() time.Time
}

// Errors of Open.
var (
	ErrDirRequired  = errors.New("audit queue: Dir is required")
	ErrNodeRequired = errors.New("audit queue: Node is required")
	ErrInvalidLimit = errors.New("audit queue: invalid limit")
)

// ParsePolicy reads a --audit-queue-full value.
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case DropOldest, Refuse:
		return Policy(s), nil
	case "":
		return DropOldest, nil
	}
	return "", fmt.Errorf("audit queue: full policy %q is neither %q nor %q", s, DropOldest, Refuse)
}

type rec struct {
	seq  uint64
	at   time.Time
	data []byte
	// ev is the event data encodes, for the newest keepDecoded events.
	ev *audit.Event
}

func (r rec) size() int64 { return recordSize(r.data) }

type segment struct {
	path        string
	first, last uint64
}

// Queue is the durable queue. Create it with Open, write it with Run.
type Queue struct {
	c  Config
	lg *slog.Logger

	mu        sync.Mutex
	next      uint64 // the next sequence
	live      []rec  // seq > head, oldest first; a suffix is pending
	liveBytes int64
	pending   []rec // not yet written
	synced    uint64
	head      uint64 // acknowledged or dropped through this sequence
	closed    bool
	writeErr  error
	changed   chan struct{} // closed (and replaced) when synced or head moves
	wake      chan struct{}
	stats     Stats

	// Owned by the writer (Run) once Open returns.
	segs       []segment
	f          *os.File
	fsize      int64 // bytes written to f
	syncedSize int64 // bytes of f fsynced
	unsynced   []rec // written to f since its last fsync
	lastSync   time.Time
	savedHead  uint64
	lastCursor time.Time
	wbuf       []byte
}

// Stats is what the queue reports to /health and metrics.
type Stats struct {
	// Events and Bytes are queued and not yet acknowledged.
	Events int
	Bytes  int64
	// MaxEvents, MaxBytes and Policy are the configured bounds.
	MaxEvents int
	MaxBytes  int64
	Policy    Policy
	// Full is true when the next event would not fit.
	Full bool
	// Recorded counts events accepted since Open; Acked those the quorum
	// stored; Dropped those dropped (DropOldest) and Refused those
	// refused (Refuse) because the queue was full; Invalid those that
	// failed audit.Event.Validate.
	Recorded, Acked, Dropped, Refused, Invalid uint64
	// Synced is the last sequence on disk; Cursor the last acknowledged
	// (or dropped).
	Synced, Cursor uint64
	// Oldest is when the oldest queued event happened (zero when empty).
	Oldest time.Time
	// WriteError is the last failed write, until a write succeeds.
	WriteError string
}

const cursorFile = "cursor"

// Open reads the queue in c.Dir back (truncating a torn tail) or creates it.
func Open(c Config) (*Queue, error) {
	if c.Dir == "" {
		return nil, ErrDirRequired
	}
	if c.Node == "" {
		return nil, ErrNodeRequired
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.MaxEvents < 1 {
		return nil, fmt.Errorf("%w: max events %d must be at least 1", ErrInvalidLimit, c.MaxEvents)
	}
	if c.MaxBytes < minMaxBytes {
		return nil, fmt.Errorf("%w: max bytes %d must be at least %d (4 of the largest events)", ErrInvalidLimit, c.MaxBytes, minMaxBytes)
	}
	if c.SegmentBytes < 1 {
		return nil, fmt.Errorf("%w: segment bytes %d must be positive", ErrInvalidLimit, c.SegmentBytes)
	}
	if c.SyncInterval < 0 {
		return nil, fmt.Errorf("%w: sync interval %s is negative", ErrInvalidLimit, c.SyncInterval)
	}
	p, err := ParsePolicy(string(c.Full))
	if err != nil {
		return nil, err
	}
	c.Full = p
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit queue: %w", err)
	}
	if err := os.Chmod(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit queue: %w", err)
	}
	q := &Queue{c: c, lg: c.Logger, changed: make(chan struct{}), wake: make(chan struct{}, 1)}
	q.head = readCursor(filepath.Join(c.Dir, cursorFile), q.lg)
	q.savedHead = q.head
	if err := q.load(); err != nil {
		return nil, err
	}
	q.synced = q.next - 1
	// Limits may have shrunk since the events were written.
	if q.c.Full == DropOldest {
		for len(q.live) > 0 && (len(q.live) > q.c.MaxEvents || q.liveBytes > q.c.MaxBytes) {
			q.dropOldestLocked()
		}
	}
	return q, nil
}

// load reads every segment back.
func (q *Queue) load() error {
	names, err := filepath.Glob(filepath.Join(q.c.Dir, "seg-*.log"))
	if err != nil {
		return fmt.Errorf("audit queue: %w", err)
	}
	type named struct {
		path  string
		first uint64
	}
	var files []named
	for _, p := range names {
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "seg-"), ".log"), 10, 64)
		if err != nil {
			q.lg.Warn("audit queue: ignoring a file that is not a segment", "file", p)
			continue
		}
		files = append(files, named{p, n})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].first < files[j].first })
	last := uint64(0)
	for _, fl := range files {
		f, err := os.OpenFile(fl.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("audit queue: %w", err)
		}
		seg := segment{path: fl.path}
		good, rerr := readSegment(f, last, func(seq uint64, data []byte) {
			if seg.first == 0 {
				seg.first = seq
			}
			seg.last, last = seq, seq
			if seq > q.head {
				var e struct {
					At time.Time `json:"at"`
				}
				_ = json.Unmarshal(data, &e)
				r := rec{seq: seq, at: e.At, data: data}
				q.live = append(q.live, r)
				q.liveBytes += r.size()
			}
		})
		if rerr != nil {
			q.lg.Warn("audit queue: a segment ends in a record that is not whole (a write cut by a crash); truncating it there",
				"file", fl.path, "offset", good, "err", rerr)
			if err := f.Truncate(good); err != nil {
				f.Close()
				return fmt.Errorf("audit queue: truncate %s: %w", fl.path, err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return fmt.Errorf("audit queue: %w", err)
			}
		}
		f.Close()
		if seg.first == 0 || seg.last <= q.head {
			if err := os.Remove(fl.path); err != nil {
				return fmt.Errorf("audit queue: %w", err)
			}
			continue
		}
		q.segs = append(q.segs, seg)
	}
	q.next = max(last, q.head) + 1
	return nil
}

func readCursor(path string, lg *slog.Logger) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			lg.Warn("audit queue: cannot read the cursor; every queued event is sent again (the trail stores each once)", "err", err)
		}
		return 0
	}
	if len(b) != 12 || crc32.Checksum(b[:8], castagnoli) != binary.BigEndian.Uint32(b[8:]) {
		lg.Warn("audit queue: the cursor file is damaged; every queued event is sent again (the trail stores each once)")
		return 0
	}
	return binary.BigEndian.Uint64(b[:8])
}

func writeCursor(dir string, head uint64) error {
	b := binary.BigEndian.AppendUint64(nil, head)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	tmp := filepath.Join(dir, cursorFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, cursorFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var _ audit.Recorder = (*Queue)(nil)

// Record stamps e with the node, a sequence and (if unset) the time, and
// queues it; it never waits for the disk. An event that fails Validate is
// counted as invalid and dropped; one that does not fit follows the
// policy.
func (q *Queue) Record(e audit.Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.stats.Refused++
		return
	}
	if e.At.IsZero() {
		e.At = q.c.Now()
	}
	e.At = e.At.UTC()
	e.Node = q.c.Node
	seq := q.next
	e.ID = q.c.Node + "/" + strconv.FormatUint(seq, 10)
	if err := e.Validate(); err != nil {
		q.stats.Invalid++
		q.lg.Warn("audit queue: an event was not recorded", "kind", e.Kind, "action", e.Action, "err", err)
		return
	}
	data, err := e.AppendJSON(make([]byte, 0, 256))
	if err != nil || len(data) > audit.MaxEventBytes {
		q.stats.Invalid++
		q.lg.Warn("audit queue: an event was not recorded: larger than the limit", "kind", e.Kind, "bytes", len(data), "limit", audit.MaxEventBytes)
		return
	}
	r := rec{seq: seq, at: e.At, data: data, ev: &e}
	for len(q.live)+1 > q.c.MaxEvents || q.liveBytes+r.size() > q.c.MaxBytes {
		if q.c.Full == Refuse || len(q.live) == 0 {
			q.stats.Refused++
			return
		}
		q.dropOldestLocked()
	}
	q.next++
	q.stats.Recorded++
	q.live = append(q.live, r)
	if n := len(q.live); n > keepDecoded {
		q.live[n-keepDecoded-1].ev = nil
	}
	q.liveBytes += r.size()
	r.ev = nil // the writer needs the record only
	q.pending = append(q.pending, r)
	q.poke()
}

// dropOldestLocked drops the oldest queued event.
func (q *Queue) dropOldestLocked() {
	r := q.live[0]
	q.live[0] = rec{}
	q.live = q.live[1:]
	q.liveBytes -= r.size()
	q.head = r.seq
	q.stats.Dropped++
	q.poke()
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Full reports whether the next event would not fit.
func (q *Queue) Full() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.fullLocked()
}

func (q *Queue) fullLocked() bool {
	return len(q.live) >= q.c.MaxEvents || q.liveBytes+headerBytes+maxPayload > q.c.MaxBytes
}

// Policy is the configured full policy.
func (q *Queue) Policy() Policy { return q.c.Full }

// Synced is the last sequence on disk: every event recorded up to it
// survives a crash.
func (q *Queue) Synced() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.synced
}

// Changed returns a channel closed when more events are synced or the
// cursor moves.
func (q *Queue) Changed() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.changed
}

func (q *Queue) changedLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Peek returns up to maxEvents synced, unacknowledged events, oldest
// first, whose encoded size stays within maxBytes (at least one event is
// returned when any is queued), and the sequence of the last one.
func (q *Queue) Peek(maxEvents int, maxBytes int) ([]audit.Event, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []audit.Event
	var last uint64
	size := 0
	for _, r := range q.live {
		if r.seq > q.synced || len(out) >= maxEvents || len(out) > 0 && size+len(r.data) > maxBytes {
			break
		}
		if r.ev != nil {
			size += len(r.data)
			out = append(out, *r.ev)
			last = r.seq
			continue
		}
		var e audit.Event
		if err := json.Unmarshal(r.data, &e); err != nil {
			// Written by Record and checksummed: cannot happen short of a bug.
			q.lg.Error("audit queue: a queued event does not decode", "seq", r.seq, "err", err)
			last = r.seq
			continue
		}
		size += len(r.data)
		out = append(out, e)
		last = r.seq
	}
	return out, last
}

// Ack records that every event up to seq is stored by the quorum.
func (q *Queue) Ack(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if seq <= q.head {
		return
	}
	n := 0
	for n < len(q.live) && q.live[n].seq <= seq {
		q.liveBytes -= q.live[n].size()
		q.live[n] = rec{}
		n++
	}
	q.live = q.live[n:]
	q.stats.Acked += uint64(n)
	q.head = seq
	q.changedLocked()
	q.poke()
}

// Stats reports the queue's state.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	s.Events, s.Bytes = len(q.live), q.liveBytes
	s.MaxEvents, s.MaxBytes, s.Policy = q.c.MaxEvents, q.c.MaxBytes, q.c.Full
	s.Full = q.fullLocked()
	s.Synced, s.Cursor = q.synced, q.head
	if len(q.live) > 0 {
		s.Oldest = q.live[0].at
	}
	if q.writeErr != nil {
		s.WriteError = q.writeErr.Error()
	}
	return s
}

// Run writes recorded events to disk until done is closed, then writes
// and syncs what is left, saves the cursor and returns. It is the only
// writer; call it once.
func (q *Queue) Run(done <-chan struct{}) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		stop := false
		select {
		case <-done:
			stop = true
		case <-q.wake:
		case <-timer.C:
		}
		if stop {
			// Nothing recorded from now on is left unwritten.
			q.mu.Lock()
			q.closed = true
			q.mu.Unlock()
		}
		next, err := q.flush(time.Now(), stop)
		q.mu.Lock()
		q.writeErr = err
		q.mu.Unlock()
		if err != nil {
			q.lg.Warn("audit queue: write failed; events stay in memory and the write is retried", "dir", q.c.Dir, "err", err)
			if stop {
				return q.closeFile(err)
			}
			next = time.Second
		}
		if stop {
			return q.closeFile(nil)
		}
		if next > 0 {
			timer.Reset(next)
		}
	}
}

func (q *Queue) closeFile(err error) error {
	if q.f != nil {
		err = errors.Join(err, q.f.Close())
		q.f = nil
	}
	return err
}

// flush writes the pending events, fsyncs once SyncInterval has passed
// since the last fsync, and saves the cursor (deleting the segments below
// it) once a second; final does both now. It returns how long until a
// sync or a save it put off is due (0: none is).
func (q *Queue) flush(now time.Time, final bool) (time.Duration, error) {
	q.mu.Lock()
	batch := q.pending
	q.pending = nil
	q.mu.Unlock()
	if len(batch) > 0 {
		if err := q.write(batch); err != nil {
			q.mu.Lock()
			q.pending = append(batch, q.pending...)
			q.mu.Unlock()
			return 0, err
		}
	}
	var next time.Duration
	if len(q.unsynced) > 0 {
		if wait := q.lastSync.Add(q.c.SyncInterval).Sub(now); wait > 0 && !final {
			next = wait
		} else if err := q.sync(); err != nil {
			return 0, err
		}
	}
	q.mu.Lock()
	head := q.head
	q.mu.Unlock()
	if head == q.savedHead {
		return next, nil
	}
	if wait := q.lastCursor.Add(cursorInterval).Sub(now); wait > 0 && !final {
		if next == 0 || wait < next {
			next = wait
		}
		return next, nil
	}
	if err := writeCursor(q.c.Dir, head); err != nil {
		return 0, fmt.Errorf("audit queue: save cursor: %w", err)
	}
	q.savedHead, q.lastCursor = head, now
	keep := q.segs[:0]
	for i, s := range q.segs {
		if s.last <= head && (i < len(q.segs)-1 || q.f == nil) {
			if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				q.lg.Warn("audit queue: cannot delete an acknowledged segment", "file", s.path, "err", err)
				keep = append(keep, s)
			}
			continue
		}
		keep = append(keep, s)
	}
	q.segs = keep
	return next, nil
}

// sync fsyncs the current segment and moves Synced to the last event
// written to it. On failure what was written since the last fsync may
// not be on disk: it is cut off and written again by the next flush.
func (q *Queue) sync() error {
	q.lastSync = time.Now()
	if err := q.f.Sync(); err != nil {
		q.mu.Lock()
		q.pending = append(q.unsynced, q.pending...)
		q.mu.Unlock()
		q.unsynced = nil
		q.fsize = q.syncedSize
		q.cutBack()
		seg := &q.segs[len(q.segs)-1]
		seg.last = max(q.Synced(), seg.first-1)
		return fmt.Errorf("audit queue: sync: %w", err)
	}
	q.syncedSize = q.fsize
	last := q.unsynced[len(q.unsynced)-1].seq
	clear(q.unsynced)
	q.unsynced = q.unsynced[:0]
	q.mu.Lock()
	q.synced = last
	q.changedLocked()
	q.mu.Unlock()
	return nil
}

// cutBack cuts the current segment back to q.fsize, so that later records
// follow whole ones; if that fails, the segment is closed and the next
// write starts a new one (the reader stops this one at the tear).
func (q *Queue) cutBack() {
	if err := q.f.Truncate(q.fsize); err == nil {
		if _, err = q.f.Seek(q.fsize, io.SeekStart); err == nil {
			return
		}
	}
	q.f.Close()
	q.f = nil
}

// write appends batch to the current segment (starting one if needed,
// after syncing the one it ends). On failure the segment is cut back to
// its size before the write.
func (q *Queue) write(batch []rec) error {
	if q.f == nil || q.fsize >= q.c.SegmentBytes {
		if q.f != nil {
			if len(q.unsynced) > 0 {
				if err := q.sync(); err != nil {
					return err
				}
			}
			if err := q.f.Close(); err != nil {
				return fmt.Errorf("audit queue: %w", err)
			}
			q.f = nil
		}
		p := filepath.Join(q.c.Dir, fmt.Sprintf("seg-%020d.log", batch[0].seq))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("audit queue: new segment: %w", err)
		}
		if err := syncDir(q.c.Dir); err != nil {
			f.Close()
			os.Remove(p)
			return fmt.Errorf("audit queue: %w", err)
		}
		q.f, q.fsize, q.syncedSize = f, 0, 0
		q.segs = append(q.segs, segment{path: p, first: batch[0].seq})
	}
	buf := q.wbuf[:0]
	for _, r := range batch {
		buf = appendRecord(buf, r.seq, r.data)
	}
	if cap(buf) <= 1<<20 {
		q.wbuf = buf
	}
	if _, err := q.f.Write(buf); err != nil {
		// Cut a torn write off so later records follow whole ones; if that
		// fails too, the next write starts a new segment (the reader stops
		// this one at the tear).
		q.cutBack()
		return fmt.Errorf("audit queue: write: %w", err)
	}
	q.fsize += int64(len(buf))
	q.unsynced = append(q.unsynced, batch...)
	q.segs[len(q.segs)-1].last = batch[len(batch)-1].seq
	return nil
}
