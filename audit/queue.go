package audit

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// QueueConfig configures a Queue. Node and Trail are required.
type QueueConfig struct {
	// Node names this node in every event's Node and ID.
	Node string
	// Trail is where the events are flushed to.
	Trail Trail
	// MaxPending bounds the events held in memory (default
	// DefaultMaxPending); beyond it new events are dropped and counted
	// (Dropped), never blocking the request that made them.
	MaxPending int
	// Batch bounds one Append (default 100).
	Batch int
	// FlushInterval is how often pending events are flushed (default
	// 500ms).
	FlushInterval time.Duration
	Logger        *slog.Logger
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// DefaultMaxPending is the default bound of a Queue.
const DefaultMaxPending = 50000

// ErrConfig is returned for a Queue without a required dependency.
var ErrConfig = errors.New("audit: bad recorder config")

// Queue is the Recorder of a quorum node (Leader or Standby): Record
// stamps the event with the node's name, a sequence number of this process
// and the time, and queues it in memory; Run flushes the queue to the
// Trail in batches. The queue is bounded: when the Trail is unreachable
// for long the newest events are dropped and counted, so that auditing
// never stops a request nor grows memory without bound.
type Queue struct {
	c       QueueConfig
	seq     atomic.Uint64
	boot    string
	dropped atomic.Int64
	stored  atomic.Int64

	mu      sync.Mutex
	pending []Event
	wake    chan struct{}
}

var _ Recorder = (*Queue)(nil)

// NewQueue returns the recorder; call Run to flush.
func NewQueue(c QueueConfig) (*Queue, error) {
	if c.Node == "" {
		return nil, errors.New("audit: QueueConfig.Node is required")
	}
	if c.Trail == nil {
		return nil, errors.New("audit: QueueConfig.Trail is required")
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 500 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	// The sequence restarts with the process: the boot time in the ID
	// keeps two runs' events apart even at the same instant.
	boot := strconv.FormatInt(c.Now().UnixNano(), 36)
	return &Queue{c: c, boot: boot, wake: make(chan struct{}, 1)}, nil
}

// NextID returns a new event ID of this node, for an event written by
// other means than Record (in the transaction of the fact it records).
func (q *Queue) NextID() string {
	return q.c.Node + "/" + q.boot + "-" + strconv.FormatUint(q.seq.Add(1), 10)
}

// Node is the node's name.
func (q *Queue) Node() string { return q.c.Node }

// Record queues e, filling its ID, Node and At when empty. It never blocks
// on the Trail.
func (q *Queue) Record(e Event) {
	if e.Node == "" {
		e.Node = q.c.Node
	}
	if e.ID == "" {
		e.ID = q.NextID()
	}
	if e.At.IsZero() {
		e.At = q.c.Now()
	}
	e.At = e.At.UTC()
	q.mu.Lock()
	if len(q.pending) >= q.c.MaxPending {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	q.pending = append(q.pending, e)
	full := len(q.pending) >= q.c.Batch
	q.mu.Unlock()
	if full {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// Dropped is how many events were dropped because the queue was full;
// Stored how many were appended to the Trail; Pending how many wait.
func (q *Queue) Dropped() int64 { return q.dropped.Load() }

// Stored is how many events this queue appended to the Trail.
func (q *Queue) Stored() int64 { return q.stored.Load() }

// Pending is how many events wait to be flushed.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Flush appends every pending event to the Trail, a batch at a time. An
// event the Trail refuses as invalid is logged and dropped (it would be
// refused again); on any other error the batch stays queued.
func (q *Queue) Flush(ctx context.Context) error {
	for {
		q.mu.Lock()
		n := min(len(q.pending), q.c.Batch)
		batch := q.pending[:n:n]
		q.mu.Unlock()
		if n == 0 {
			return nil
		}
		err := q.c.Trail.Append(ctx, batch)
		if errors.Is(err, ErrInvalid) {
			// Find and drop the bad ones; keep the rest.
			good := batch[:0:0]
			for _, e := range batch {
				if verr := e.Validate(); verr != nil {
					q.c.Logger.Warn("dropped an invalid audit event", "id", e.ID, "kind", e.Kind, "err", verr)
					q.dropped.Add(1)
					continue
				}
				good = append(good, e)
			}
			err = q.c.Trail.Append(ctx, good)
		}
		if err != nil {
			return err
		}
		q.stored.Add(int64(n))
		q.mu.Lock()
		q.pending = q.pending[n:]
		if len(q.pending) == 0 {
			q.pending = nil
		}
		q.mu.Unlock()
	}
}

// Run flushes every FlushInterval, or as soon as a batch is full, until
// ctx ends; then it flushes what is pending within a short deadline.
func (q *Queue) Run(ctx context.Context) error {
	t := time.NewTicker(q.c.FlushInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := q.Flush(fctx); err != nil {
				q.c.Logger.Warn("could not store the last audit events", "pending", q.Pending(), "err", err)
			}
			return nil
		case <-t.C:
		case <-q.wake:
		}
		err := q.Flush(ctx)
		if err != nil && !failing && ctx.Err() == nil {
			q.c.Logger.Warn("cannot store audit events; they are kept in memory (bounded) and retried", "pending", q.Pending(), "err", err)
		}
		failing = err != nil
	}
}
