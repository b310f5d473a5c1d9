package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"

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
	// Logger receives etcd's own log lines at Warn and above. Nil discards.
	Logger *slog.Logger
}

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
	return &Etcd{e: e, client: retryReads(v3client.New(e.Server)), closing: closing}, nil
}

// Revision is the member's current etcd revision (its store's, without a
// round trip): what a write answered before this call is at or below.
func (e *Etcd) Revision() int64 { return e.e.Server.KV().Rev() }
