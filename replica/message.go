package replica

import "errors"

// KV is one key and its value.
type KV struct {
	Key   string
	Value []byte
}

// Change is what one source revision did to the replicated keys. A
// Follower applies it whole or not at all.
type Change struct {
	Revision int64
	Puts     []KV
	Deletes  []string
}

func (c Change) empty() bool { return len(c.Puts) == 0 && len(c.Deletes) == 0 }

// Message is one message of the feed. Exactly one of its parts is set:
//
//   - SnapshotStart (the revision R of the snapshot that follows), then
//     one or more Snapshot pages, then SnapshotEnd: the whole replicated
//     state at R, after which changes from R+1 follow;
//   - Change: one source revision;
//   - Progress: the source is at this revision and nothing replicated
//     changed up to it.
//
// Head is the serving node's own revision when it sent the message (how
// far behind the Follower is).
type Message struct {
	SnapshotStart int64
	Snapshot      []KV
	SnapshotEnd   bool
	Change        *Change
	Progress      int64
	Head          int64
}

// Errors of the package.
var (
	// ErrSlow is returned by Serve when a Follower did not keep up with
	// the fan-out; it resumes from its cursor on its next stream.
	ErrSlow = errors.New("replica: the follower fell too far behind the feed; reconnect to resume")
	// ErrBehind is returned by Serve when the Follower is ahead of this
	// node (it replicated from a node further ahead) and this node did not
	// catch up in time; another node can serve it.
	ErrBehind = errors.New("replica: this node is behind the follower's revision")
	// ErrClosed is returned when the hub has stopped.
	ErrClosed = errors.New("replica: the feed is closed")
	// ErrOutOfOrder is returned by the Replica when a feed sends a
	// message that does not follow what came before (a protocol error).
	ErrOutOfOrder = errors.New("replica: feed message out of order")
)
