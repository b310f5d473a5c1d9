package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// PrivateEtcdConfig is a single-member etcd that only its own process
// talks to: a Follower's local copy of the replicated state.
type PrivateEtcdConfig struct {
	// Dir is etcd's data directory, created 0700 if missing.
	Dir string
	// MaxTxnOps and MaxRequestBytes bound one transaction. A replica
	// applies a whole resynchronisation as one transaction, so they are
	// far above a quorum member's. Zero takes 1,000,000 operations and
	// 512 MiB.
	MaxTxnOps       uint
	MaxRequestBytes uint
	// Rebuildable says the data is a cache its owner can rebuild from
	// elsewhere (a Follower's copy: the feed sends a new snapshot). etcd
	// then never fsyncs (UnsafeNoFsync): on a Follower every applied
	// revision would otherwise cost an fsync, and twenty Followers on one
	// disk slow the Leader's own writes. The price is that a copy the
	// process did not close cleanly (kill -9, a crash, a power loss) may
	// be torn, so Close marks a clean stop (Dir + ".clean", written after
	// every file is synced) and the next start without that mark throws
	// the copy away and starts empty (Discarded reports it).
	Rebuildable bool
	// Logger receives etcd's own log lines at Warn and above. Nil discards.
	Logger *slog.Logger
}

// cleanMark is the file, next to a Rebuildable etcd's directory, that
// says it was closed cleanly.
func cleanMark(dir string) string { return filepath.Clean(dir) + ".clean" }

// privateWarnApply is how long a private etcd's request may take before
// etcd logs it.
const privateWarnApply = 10 * time.Second

// privateBatchInterval is how often a Rebuildable private etcd commits
// its backend's batch (etcd's default: 100 ms).
const privateBatchInterval = time.Second

// privateMemberName is the private member's name; it never meets another.
const privateMemberName = "replica"

// StartPrivateEtcd starts an embedded etcd member with no client or peer
// listener: it is reachable only in process (Client), is a member of no
// quorum, and so cannot be reached, joined or read from the network. It
// waits until the member is ready, ctx is done, or etcd fails, and closes
// it on every error path.
func StartPrivateEtcd(ctx context.Context, c PrivateEtcdConfig) (*Etcd, error) {
	if c.Dir == "" {
		return nil, errors.New("cluster: a private etcd needs a data directory")
	}
	discarded := false
	if c.Rebuildable {
		var err error
		if discarded, err = takeCleanMark(c.Dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: private etcd data dir: %w", err)
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = 1_000_000
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 512 << 20
	}
	closing := new(atomic.Bool)
	cfg := embed.NewConfig()
	cfg.Name = privateMemberName
	cfg.Dir = c.Dir
	// No listener at all: the advertised peer URL only names the member
	// in its own one-member cluster (etcd derives the member id from it);
	// nothing listens there.
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = nil, nil
	cfg.ListenClientHttpUrls = nil
	cfg.ListenPeerUrls = nil
	cfg.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: "127.0.0.1:1"}}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.MaxTxnOps = c.MaxTxnOps
	cfg.MaxRequestBytes = c.MaxRequestBytes
	cfg.SnapshotCount = snapshotCount
	cfg.SnapshotCatchUpEntries = snapshotCatchUpEntries
	// The replica's history is only needed by its own watches (the
	// policy graph's, the secret cache's); keep the last 10,000 revisions.
	cfg.AutoCompactionMode = embed.CompactorModeRevision
	cfg.AutoCompactionRetention = "10000"
	cfg.Metrics = "basic"
	// Its requests are the replica's own: a snapshot page is a 10,000-key
	// transaction that takes longer than etcd's 100 ms warning, and the
	// warning prints the whole request (a megabyte of text and a tenth of
	// a Follower's cold start in formatting).
	cfg.WarningApplyDuration = privateWarnApply
	// A member of one elects itself after the election timeout: etcd's
	// default (100 ms ticks, 1 s) made it ready in 0.5-1 s, a tenth of a
	// Follower's cold start. It has no peer to send heartbeats to, so
	// the tick costs only itself, but that is a wakeup of the process
	// (and its Go scheduler) every tick, what an idle Follower spends
	// most of its CPU on, times every Follower on a node: 50 ms ticks
	// (not 20) and the shortest election etcd allows (five ticks) elect
	// it within 50-250 ms.
	cfg.TickMs, cfg.ElectionMs = 50, 250
	// Its backend commits its batch every interval, pending writes or
	// not, another wakeup; nothing is fsynced on a Rebuildable copy and
	// reads see uncommitted writes, so a longer interval costs nothing
	// but the size of one commit.
	if c.Rebuildable {
		cfg.BackendBatchInterval = privateBatchInterval
	}
	cfg.UnsafeNoFsync = c.Rebuildable
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapToSlog(c.Logger, closing))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: start the private etcd in %s: %w", c.Dir, err)
	}
	stop := func() { closing.Store(true); e.Close() }
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stop()
		return nil, fmt.Errorf("cluster: private etcd failed while starting: %w", err)
	case <-e.Server.StopNotify():
		stop()
		return nil, ErrEtcdStopped
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("cluster: waiting for the private etcd: %w", ctx.Err())
	}
	seen := &revisionSeen{}
	out := &Etcd{e: e, client: retryReads(v3client.New(e.Server), seen), seen: seen, closing: closing, discarded: discarded, rebuildable: c.Rebuildable}
	if c.Rebuildable {
		out.afterClose = func() error { return putCleanMark(c.Dir) }
	}
	return out, nil
}

// Discarded reports whether a Rebuildable etcd threw its previous data
// away at start because it had not been closed cleanly.
func (e *Etcd) Discarded() bool { return e.discarded }

// takeCleanMark prepares a Rebuildable etcd's directory: with data and no
// clean mark, the data goes (reported as discarded); the mark is removed,
// durably, before etcd writes again, so a crash from now on is seen at the
// next start.
func takeCleanMark(dir string) (discarded bool, err error) {
	mark := cleanMark(dir)
	_, markErr := os.Stat(mark)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("cluster: private etcd data dir: %w", err)
	}
	if len(entries) > 0 && errors.Is(markErr, os.ErrNotExist) {
		if err := os.RemoveAll(dir); err != nil {
			return false, fmt.Errorf("cluster: discard the private etcd in %s, which was not closed cleanly: %w", dir, err)
		}
		discarded = true
	}
	if err := os.Remove(mark); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("cluster: private etcd clean mark: %w", err)
	}
	return discarded, syncDir(filepath.Dir(mark))
}

// putCleanMark syncs every file of a closed etcd (it never fsynced them)
// and then writes the clean mark.
func putCleanMark(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return syncPath(p)
	})
	if err != nil {
		return fmt.Errorf("cluster: sync the private etcd in %s: %w", dir, err)
	}
	mark := cleanMark(dir)
	if err := os.WriteFile(mark, nil, 0o600); err != nil {
		return fmt.Errorf("cluster: private etcd clean mark: %w", err)
	}
	if err := syncPath(mark); err != nil {
		return err
	}
	return syncDir(filepath.Dir(mark))
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	if err := syncPath(dir); err != nil {
		return fmt.Errorf("cluster: sync %s: %w", dir, err)
	}
	return nil
}

// Revision is the member's current etcd revision (its store's, without a
// round trip): what a write answered before this call is at or below.
func (e *Etcd) Revision() int64 { return e.e.Server.KV().Rev() }

// SeenRevision is the highest revision an answer or a watch event of the
// member's Client carried: at least the revision of anything the node
// wrote or read through it, without Revision's wait for the backend's
// read lock (held through each backend commit and its fsync). Before the
// client has seen any answer it is Revision.
func (e *Etcd) SeenRevision() int64 {
	if r := e.seen.v.Load(); r > 0 {
		return r
	}
	rev := e.Revision()
	e.seen.observe(rev)
	return rev
}

// ErrNotRebuildable is returned by BulkPut on an etcd whose data is not a
// rebuildable cache.
var ErrNotRebuildable = errors.New("cluster: bulk writes outside raft are only for a Rebuildable private etcd")

// BulkPut writes keys and values straight into the member's key-value
// store as one revision, outside raft: no log entry, no WAL record, no
// transaction trace, the larger part of what etcd spends on a write (a
// Follower's cold start wrote 675,000 keys through transactions in 4 s of
// CPU, most of it there). Watches see the revision as any other, and it
// returns that revision.
//
// It is only for the bulk load of a Rebuildable member (a Follower's first
// copy, which nothing serves from until it is whole): the writes are
// durable only through a clean Close, which a Rebuildable member needs
// anyway (its data is thrown away otherwise), and they must not race
// writes through the client to the same keys. It is WriteDirect without
// deletes, with its refusals.
func (e *Etcd) BulkPut(keys []string, values [][]byte) (int64, error) {
	return e.WriteDirect(nil, keys, values)
}
