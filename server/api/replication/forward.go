package replication

import (
	"context"
	"errors"
	"time"

	"github.com/sowerproject/sower/audit"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// AuditQueue is what the forwarder empties; *queue.Queue (audit/queue)
// implements it.
type AuditQueue interface {
	// Peek returns the oldest unacknowledged events (within the limits)
	// and the sequence of the last one.
	Peek(maxEvents, maxBytes int) ([]audit.Event, uint64)
	// Ack drops everything up to seq: the quorum stored it.
	Ack(seq uint64)
	// Changed is closed when there is more to Peek.
	Changed() <-chan struct{}
}

// ForwardAudit pushes q's events to the quorum node the feed streams
// from, oldest first, until ctx ends. A batch is acknowledged only once
// that node has stored it; anything else (the node down, a timeout, a
// refusal) keeps it queued and tries again after a pause, on whatever node
// the feed streams from by then. The trail stores an event once, so a
// batch re-sent after a lost answer makes no duplicate.
func (f *Feed) ForwardAudit(ctx context.Context, q AuditQueue) error {
	const minPause, maxPause = 100 * time.Millisecond, 5 * time.Second
	pause := minPause
	for {
		changed := q.Changed()
		// The JSON Peek measures is larger than the protobuf sent: three
		// quarters of the limit leaves room for the envelope.
		events, last := q.Peek(MaxPushEvents, MaxPushBytes*3/4)
		if len(events) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
			continue
		}
		err := f.push(ctx, events)
		if err == nil {
			q.Ack(last)
			pause = minPause
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		lvl := f.c.Logger.Debug
		if errors.Is(err, ErrPushRefused) {
			lvl = f.c.Logger.Error
		}
		lvl("audit events not forwarded yet; they stay queued", "events", len(events), "node", f.Current(), "retry_in", pause, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, maxPause)
	}
}

// push sends one batch to the node the feed streams from.
func (f *Feed) push(ctx context.Context, events []audit.Event) error {
	ep := f.Current()
	if ep == "" {
		return errors.New("replication: no quorum node reached yet")
	}
	conn, err := f.conn(ep)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return Push(pctx, sowerv1.NewReplicationServiceClient(conn), events)
}
